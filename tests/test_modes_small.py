"""Every mode a Moonlight client offers is accepted, down to 360p and laptop sizes like 1366x768.

Before, 640x360 was refused ("outside 640x480..7680x4320", Moonlight error 400 at stage 4).
The bounds now keep only what protects something: the maximum (memory), even sizes (4:2:0
video), and a minimum below every client mode and above hardware encoders' smallest frame.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gs_host import Host, drive
from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.proto.control import MIN_HEIGHT, MIN_WIDTH, mode_error
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.driver.backends.xscreen import COMMON_SIZES
from punktfunk.vdisplay.driver.edid import EdidRequest, build_edid
from punktfunk.vdisplay.manager import VirtualDisplayManager
from punktfunk.vdisplay.timing import cvt_rb2
from punktfunk.vdisplay.xlib import randr
from punktfunk.vdisplay.xlib.core import XDisplay
from punktfunk.viewer.app import MIN_MODE
from test_vdisplay_support import make_driver, require_backend  # noqa: F401 (fixture)

# Moonlight's resolution list (360p, 480p, 720p, 1080p, 1440p, 4K) and common laptop panels.
SDR = OutputFormat(gpu=False, hdr=False)
MOONLIGHT_SIZES = [(640, 360), (854, 480), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160)]
ODD_PANELS = [(1366, 768), (1600, 900), (1280, 800), (1440, 900)]


@pytest.mark.parametrize(("width", "height"), MOONLIGHT_SIZES + ODD_PANELS)
@pytest.mark.parametrize("hz", [30, 60, 120])
def test_every_moonlight_mode_is_inside_the_bounds(width: int, height: int, hz: int) -> None:
    assert mode_error(width, height, hz) is None


def test_the_bounds_still_refuse_what_they_protect_against() -> None:
    assert "outside" in (mode_error(MIN_WIDTH - 2, MIN_HEIGHT, 60) or "")
    assert "outside" in (mode_error(MIN_WIDTH, MIN_HEIGHT - 2, 60) or "")
    assert "outside" in (mode_error(7682, 4320, 60) or "")  # memory: frame ring, framebuffers
    assert "odd" in (mode_error(1365, 768, 60) or "")  # 4:2:0 needs even sizes
    assert MIN_MODE == (MIN_WIDTH, MIN_HEIGHT)  # the viewer never asks for less


def test_x_servers_offer_moonlights_small_modes() -> None:
    assert {(640, 360), (854, 480), (1366, 768)} <= set(COMMON_SIZES)


@pytest.mark.skipif(shutil.which("edid-decode") is None, reason="edid-decode is not installed")
@pytest.mark.parametrize(("width", "height"), [(640, 360), (854, 480), (1366, 768)])
@pytest.mark.parametrize("hz", [24, 60, 144])
def test_small_and_odd_sizes_give_a_valid_edid_and_modeline(width: int, height: int, hz: int):
    timing = cvt_rb2(width, height, hz)
    assert width < timing.h_sync_start < timing.h_sync_end <= timing.h_total
    assert height < timing.v_sync_start < timing.v_sync_end <= timing.v_total
    assert abs(timing.refresh_hz - hz) / hz < 0.001
    edid = build_edid(EdidRequest(width, height, hz, False, serial=7))
    out = subprocess.run(["edid-decode", "--check"], input=edid, capture_output=True, timeout=30)
    text = out.stdout.decode(errors="replace")
    assert out.returncode == 0 and "EDID conformity: PASS" in text, text
    assert f"{width}x{height}" in text


@pytest.mark.parametrize("backend", [DisplayBackend.XVFB, DisplayBackend.XORG_DUMMY])
def test_an_x_monitor_comes_up_at_360p_and_1366x768(make_driver, backend) -> None:  # noqa: F811
    require_backend(backend)
    driver = make_driver(backend)
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), backend)
    try:
        for width, height in ((640, 360), (1366, 768)):
            lease = manager.acquire(MonitorRequest(DisplayMode(width, height, 60), False, "m"))
            capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
            try:
                frame = capturer.next_frame(10)
                assert frame is not None and frame.pixels.shape[:2] == (height, width)
                with XDisplay(lease.output.display_name) as probe:
                    current = randr.current_mode(probe)
                    assert (current.width, current.height) == (width, height)
            finally:
                capturer.close()
                lease.close()
    finally:
        manager.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    yield h
    h.kill()


def test_moonlight_streams_360p_and_1366x768_at_exactly_that_size(
    host: Host, tmp_path: Path
) -> None:
    assert drive(tmp_path, "--pin", "4321", "--pair-only").get("paired") is True
    for width, height in ((640, 360), (1366, 768)):
        result = drive(tmp_path, "--seconds", "3", "--mode", f"{width}x{height}x60")
        assert result["shape"] == [height, width, 3], result
        assert result["decoded"] > 20 and result["frames"] > 20, result
        assert host.wait_no_sessions() == []
