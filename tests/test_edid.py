"""EDID: Debian's `edid-decode --check` passes with no failures for every mode the bounds allow;
preferred timing = the requested mode; serial from the client identity; both checksums."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from punktfunk.proto.control import (
    MAX_HEIGHT,
    MAX_REFRESH_HZ,
    MAX_WIDTH,
    MIN_HEIGHT,
    MIN_REFRESH_HZ,
    MIN_WIDTH,
)
from punktfunk.vdisplay.driver.edid import (
    EDID_SIZE,
    EdidRequest,
    build_edid,
    edid_has_hdr,
    fits_dtd,
    serial_for,
)
from punktfunk.vdisplay.timing import cvt_rb2

EDID_DECODE = shutil.which("edid-decode")
# CI installs it (scripts/setup.sh); there a missing edid-decode fails instead of skipping.
needs_edid_decode = pytest.mark.skipif(
    EDID_DECODE is None and not os.environ.get("CI"),
    reason="edid-decode is not installed (apt-get install edid-decode)",
)


def _modes() -> list[tuple[int, int, int]]:
    """The bounds' corners and edges, common modes, and a reproducible random spread."""
    widths = (MIN_WIDTH, MIN_WIDTH + 2, 4094, 4096, MAX_WIDTH)
    heights = (MIN_HEIGHT, MIN_HEIGHT + 2, 4094, 4096, MAX_HEIGHT)
    rates = (MIN_REFRESH_HZ, 30, 59, 60, 120, 144, 165, 240, 360, MAX_REFRESH_HZ)
    modes = [(w, h, r) for w in widths for h in heights for r in rates]
    modes += [(1920, 1080, 60), (2560, 1440, 165), (3840, 2160, 120), (3440, 1440, 100)]
    rng = random.Random(4)
    modes += [
        (
            rng.randrange(MIN_WIDTH, MAX_WIDTH + 1, 2),
            rng.randrange(MIN_HEIGHT, MAX_HEIGHT + 1, 2),
            rng.randint(MIN_REFRESH_HZ, MAX_REFRESH_HZ),
        )
        for _ in range(150)
    ]
    return modes


def _check(edid: bytes) -> str:
    out = subprocess.run([EDID_DECODE, "--check"], input=edid, capture_output=True, timeout=30)
    text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    assert out.returncode == 0 and "Failures" not in text, text
    assert "EDID conformity: PASS" in text, text
    return text


@needs_edid_decode
def test_every_mode_in_bounds_passes_edid_decode_check() -> None:
    for i, (w, h, r) in enumerate(_modes()):
        edid = build_edid(EdidRequest(w, h, r, hdr=i % 2 == 0, serial=i * 7919 + 1))
        _check(edid)


@needs_edid_decode
@pytest.mark.parametrize("hdr", [False, True])
def test_preferred_timing_is_the_requested_mode(hdr: bool) -> None:
    text = _check(build_edid(EdidRequest(1920, 1080, 120, hdr, serial=42)))
    dtd = next(line for line in text.splitlines() if "DTD 1:" in line)
    refresh = float(re.search(r"([\d.]+) Hz", dtd).group(1))  # type: ignore[union-attr]
    assert "1920x1080" in dtd and abs(refresh - 120) < 0.05, dtd
    assert ("SMPTE ST2084" in text) is hdr
    assert "Traditional gamma - SDR luminance range" in text
    assert "HDR Static Metadata Data Block" in text
    assert ("BT2020RGB" in text) is hdr


@needs_edid_decode
def test_a_mode_too_big_for_a_detailed_timing_is_preferred_through_displayid_type_vii() -> None:
    assert not fits_dtd(cvt_rb2(7680, 4320, 60))
    text = _check(build_edid(EdidRequest(7680, 4320, 60, True, serial=9)))
    assert "DisplayID Type VII Video Timing Data Block" in text
    assert "7680x4320" in text.split("Type VII")[1]
    assert "Video Format Preference Data Block" in text


def test_structure_and_checksums() -> None:
    edid = build_edid(EdidRequest(2560, 1440, 144, True, serial=0xDEADBEEF))
    assert len(edid) == EDID_SIZE
    assert edid[:8] == b"\x00\xff\xff\xff\xff\xff\xff\x00"
    assert sum(edid[:128]) % 256 == 0 and sum(edid[128:]) % 256 == 0
    assert edid[126] == 1 and edid[128] == 0x02  # one CTA-861 extension
    assert int.from_bytes(edid[12:16], "little") == 0xDEADBEEF
    assert edid_has_hdr(edid)
    assert not edid_has_hdr(build_edid(EdidRequest(2560, 1440, 144, False, serial=1)))
    # The first detailed timing carries the mode: 2560 active pixels, 1440 lines.
    dtd = edid[54:72]
    assert dtd[2] | (dtd[4] >> 4) << 8 == 2560 and dtd[5] | (dtd[7] >> 4) << 8 == 1440


def test_serial_is_derived_from_the_client_identity() -> None:
    assert serial_for("laptop-7") == serial_for("laptop-7")
    assert serial_for("laptop-7") != serial_for("phone-2")
    a = build_edid(EdidRequest(1920, 1080, 60, False, serial_for("laptop-7")))
    b = build_edid(EdidRequest(1920, 1080, 60, False, serial_for("laptop-7")))
    assert a == b


@needs_edid_decode
def test_cli_writes_an_edid_that_passes(tmp_path: Path) -> None:
    out = tmp_path / "mon.edid"
    punktfunk = Path(sys.executable).parent / "punktfunk"
    run = subprocess.run(
        [
            str(punktfunk),
            "vdisplay",
            "--state-dir",
            str(tmp_path / "state"),
            "edid",
            "--mode",
            "1920x1080@120",
            "--hdr",
            "--serial",
            "1234",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    data = out.read_bytes()
    assert len(data) == EDID_SIZE and int.from_bytes(data[12:16], "little") == 1234
    assert "SMPTE ST2084" in _check(data)


def test_cli_refuses_a_mode_outside_the_bounds(tmp_path: Path) -> None:
    punktfunk = Path(sys.executable).parent / "punktfunk"
    run = subprocess.run(
        [
            str(punktfunk),
            "vdisplay",
            "--state-dir",
            str(tmp_path),
            "edid",
            "--mode",
            "318x200@60",
            "-o",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "outside" in run.stderr
