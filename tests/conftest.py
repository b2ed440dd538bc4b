"""Shared fixtures: a clean settings environment and the installed `punktfunk` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"


@pytest.fixture
def host_env(tmp_path: Path) -> Path:
    """An empty host.env in a temp dir (write lines into it per test)."""
    path = tmp_path / "host.env"
    path.write_text("")
    return path


@pytest.fixture
def run_cli(tmp_path: Path, host_env: Path):
    """Run the installed console script with no inherited PUNKTFUNK_* settings."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        clean["PUNKTFUNK_CONFIG"] = str(host_env)
        clean["PUNKTFUNK_STATE_DIR"] = str(tmp_path / "state")
        clean.update(env or {})
        return subprocess.run(
            [str(PUNKTFUNK), *args], capture_output=True, text=True, env=clean, timeout=60
        )

    return run
