"""Offer what the box sustains, end to end: a real host, its real per-machine throughput file.

Each host gets its own XDG_CACHE_HOME, so it either measures this machine afresh (native) or
reads numbers the test seeded into the file the host really reads (GameStream).
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from gs_host import BASE_PORT, Host, drive
from punktfunk.encode.throughput import CACHE_NAME, machine_fingerprint, sustains
from punktfunk.gamestream.nvhttp import CODEC_AV1, CODEC_H264, CODEC_HEVC
from test_native_stream import PIN, NativeHost


def _plan_lines(log: str) -> list[str]:
    return re.findall(r"^.*plan\.resolved.*$", log, re.MULTILINE)


def test_native_hevc_at_1080p60_gets_what_this_box_sustains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    host = NativeHost(tmp_path)
    try:
        args = ("--pin", PIN, "--mode", "1920x1080@60", "--seconds", "4")
        code, result = host.probe(*args, "--video-codec", "hevc,h264")
        assert code == 0, result
        fps = json.loads((cache / "punktfunk" / CACHE_NAME).read_text())["fps"]
        hevc, h264 = fps["libx265 1920x1080"], fps.get("libx264 1920x1080", 0.0)
        expected = "h264" if not sustains(hevc, 60) and sustains(h264, 60) else "hevc"
        print(f"measured: libx265 {hevc:.1f} fps, libx264 {h264:.1f} fps -> {expected}")
        assert result["codec"] == expected, result
        plan = _plan_lines(host.text())[-1]
        assert f"codec={expected}" in plan, plan
        if expected == "h264":
            reason = f"hevc encodes ~{hevc:.0f} fps at 1920x1080, under 60 Hz: h264"
            assert reason in plan, plan
            # The per-session status line (every 2 s) names the codec and why.
            status = [line for line in host.text().splitlines() if " fps, " in line]
            assert any(f"h264 1920x1080@60 ({reason}" in line for line in status), status

        # A client that lists HEVC alone insists: it gets HEVC, with a warning if it is slow.
        code, result = host.probe(*args, "--video-codec", "hevc")
        assert code == 0 and result["codec"] == "hevc", result
        plan = _plan_lines(host.text())[-1]
        assert "codec=hevc" in plan, plan
        if not sustains(hevc, 60):
            assert "the client accepts no other codec: kept" in plan, plan
            assert "plan.codec_unsustainable" in host.text()
    finally:
        assert host.stop() == 0


def _seed(cache: Path, fps: dict[str, float]) -> None:
    path = cache / "punktfunk" / CACHE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_fingerprint(), "fps": fps}))


def _codec_mask() -> int:
    url = f"http://127.0.0.1:{BASE_PORT}/serverinfo?uniqueid=0123456789ABCDEF"
    with urllib.request.urlopen(url, timeout=10) as reply:
        xml = reply.read().decode()
    return int(re.search(r"<ServerCodecModeSupport>(\d+)<", xml).group(1))


@pytest.mark.parametrize("fast", [False, True], ids=["slow-hevc-av1", "fast-hevc-av1"])
def test_serverinfo_offers_hevc_and_av1_only_when_1080p60_is_sustainable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    cache = tmp_path / "cache"
    rate = 500.0 if fast else 20.0
    _seed(cache, {"libx265 1920x1080": rate, "libsvtav1 1920x1080": rate})
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    host = Host(tmp_path, "--display", "pattern")
    try:
        mask = _codec_mask()
    finally:
        host.kill()
    assert mask & CODEC_H264
    assert bool(mask & CODEC_HEVC) is fast and bool(mask & CODEC_AV1) is fast, hex(mask)


def _moonlight_offering_hevc_and_h264(tmp_path: Path, mode: str) -> tuple[dict, str]:
    """A 3 s Moonlight stream at `mode` from a client that decodes both; its result, host log."""
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    try:
        result = drive(
            tmp_path, "--pin", "4321", "--seconds", "3", "--mode", mode, "--codec", "hevc,h264"
        )
        return result, host.log.read_text()
    finally:
        host.kill()


def test_moonlight_offering_hevc_and_h264_gets_h264_when_hevc_cannot_hold_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moonlight-common-c picks its codec from the RTSP DESCRIBE reply, after /launch named
    the mode: the host leaves HEVC out there, so the client asks for (and decodes) H.264."""
    cache = tmp_path / "cache"
    _seed(cache, {"libx265 640x480": 12.0})  # under 30 Hz plus headroom
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    result, log = _moonlight_offering_hevc_and_h264(tmp_path, "640x480x30")
    assert result["video_format"] == 0x0001, result  # VIDEO_FORMAT_H264
    assert result["shape"] == [480, 640, 3] and result["frames"] >= 10, result
    assert "rtsp.codecs_withheld" in log and "withheld=hevc" in log, log[-3000:]
    plan = _plan_lines(log)[-1]
    assert "codec=h264" in plan and "hevc not offered at DESCRIBE: cannot hold 640x480@30" in plan


def test_moonlight_at_1080p60_streams_what_this_box_sustains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case, measured for real: a Moonlight client that decodes HEVC and H.264 asks
    for 1080p60; it streams HEVC only if libx265 holds that here, else H.264."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    result, log = _moonlight_offering_hevc_and_h264(tmp_path, "1920x1080x60")
    hevc = json.loads((cache / "punktfunk" / CACHE_NAME).read_text())["fps"]["libx265 1920x1080"]
    expected, codec = (0x0100, "hevc") if sustains(hevc, 60) else (0x0001, "h264")
    print(f"measured: libx265 {hevc:.1f} fps -> {codec}")
    assert result["video_format"] == expected, result
    assert result["shape"] == [1080, 1920, 3] and result["decoded"] >= 10, result
    plan = _plan_lines(log)[-1]
    assert f"codec={codec}" in plan, log[-3000:]
    if codec == "h264":
        assert "hevc not offered at DESCRIBE: cannot hold 1920x1080@60" in plan, plan
