"""`python -m build` makes an sdist and a wheel that hold the whole package (issue #15, item 6).

Built once, offline (--no-isolation: setuptools and wheel come from the test extra), the wheel
from the sdist as pip does, so a file missing from the sdist fails here rather than on a user's
`pipx install`. Every file of the package in the tree (C sources, package data such as the web
console's assets) must be in the sdist, and every one but the C sources in the wheel, beside the
compiled FEC kernels.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "punktfunk"


def _package_files() -> set[str]:
    return {
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".so", ".pyc")
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (sdist,) = out.glob("punktfunk-*.tar.gz")
    (wheel,) = out.glob("punktfunk-*.whl")
    return sdist, wheel


def test_sdist_holds_every_package_file_and_the_build_recipe(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = {f"src/{name}" for name in _package_files()} - names
    assert not missing, sorted(missing)
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE-MIT", "LICENSE-APACHE"):
        assert name in names


def test_wheel_holds_the_package_the_kernels_and_the_command(built: tuple[Path, Path]) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "punktfunk = punktfunk.cli:main" in whl.read(entry_points).decode()
    missing = {name for name in _package_files() if not name.endswith(".c")} - names
    assert not missing, sorted(missing)
    for kernel in ("_gf8", "_gf16"):
        assert any(n.startswith(f"punktfunk/fec/{kernel}.") and n.endswith(".so") for n in names)


def test_deb_and_container_recipes_are_well_formed() -> None:
    """The .deb and container recipes are too slow (and need an index) to build in CI; here:
    their scripts parse, and every file the Dockerfile copies exists."""
    scripts = [ROOT / "packaging" / "deb" / n for n in ("build.sh", "postinst", "prerm", "postrm")]
    scripts.append(ROOT / "packaging" / "docker" / "entrypoint.sh")
    for script in scripts:
        shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0 and script.stat().st_mode & 0o111, (script, done.stderr)
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line
    control = (ROOT / "packaging" / "deb" / "control.in").read_text()
    assert "@VERSION@" in control and "python3-venv" in control
