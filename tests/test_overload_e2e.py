"""End to end: a real Moonlight client asks for HEVC at 1920x1080@60, which this host's software
HEVC encoder cannot sustain (libx265 manages ~35-40 fps on two cores).

Either the host streams H.264 instead and says why (the plan logs the codec downgrade), or it
streams HEVC at the rate it can, dropping the frames it cannot take. Either way host latency
stays within one convert+encode time: p99 <= 1.5 x the host's own convert+encode p99
(`convert_encode` in the admin status) + one frame interval, over every frame the host sent;
the median of what the client reports is held to the same bound.
Before frames were pulled, the queues in front of the slow encoder stayed full and the client
saw p50 137 ms / p99 323 ms.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gs_host import Host, drive, finish_drive, start_drive

FRAME_INTERVAL_MS = 1000 / 60
SECONDS = 10


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    yield h
    h.kill()


def _last_stats(host: Host, proc) -> dict | None:  # type: ignore[no-untyped-def]
    """The session's stats as the admin socket reports them, sampled until the stream ends."""
    last = None
    while proc.poll() is None:
        sessions = host.status()["sessions"]
        if sessions:
            last = sessions[0]
        time.sleep(0.5)
    return last


def test_hevc_1080p60_beyond_the_encoder_keeps_host_latency_bounded(
    host: Host, tmp_path: Path
) -> None:
    assert drive(tmp_path, "--pin", "4321", "--pair-only")["paired"] is True
    proc = start_drive(
        tmp_path, "--pin", "4321", "--seconds", str(SECONDS), "--mode", "1920x1080x60",
        "--codec", "hevc,h264",  # as Moonlight's own clients: HEVC first, H.264 if not offered
    )  # fmt: skip
    stats = _last_stats(host, proc)
    result = finish_drive(proc)
    log = host.log.read_text()
    plan = re.search(r"plan\.resolved .*", log)
    assert plan is not None, log[-3000:]
    codec = re.search(r"\bcodec=(\w+)", plan.group(0))
    assert codec is not None, plan.group(0)
    # A live stream whichever the codec (the client's own decoding competes for the same two
    # cores, so count what the host sent).
    assert stats is not None and stats["counters"]["frames"] >= 10 * SECONDS, stats
    assert "convert_encode" in stats["stages"], stats
    bound = 1.5 * stats["stages"]["convert_encode"]["p99"] + FRAME_INTERVAL_MS
    if codec.group(1) == "h264":
        # The host chose what it can sustain and said why.
        assert "hevc" in plan.group(0).split("downgrades=", 1)[1].lower(), plan.group(0)
    else:
        assert codec.group(1) == "hevc", plan.group(0)
        # Frames the encoder could not take were dropped, not queued, and the status line says so.
        assert stats["counters"].get("dropped_stale", 0) > 0, stats["counters"]
        assert "encoder-bound: " in log, log[-3000:]
    # Host latency over every frame sent, as the host measures it (capture -> last datagram)...
    host_latency = stats["stages"]["host_latency"]
    assert host_latency["p99"] <= bound, (host_latency, bound, stats["stages"], stats["counters"])
    # ...and as the client saw it. A client that cannot decode 1080p in time here asks for an
    # IDR every ~20 frames and mostly decodes IDRs (the slowest frames to encode), so its
    # sample leans to them: its median, not its tail, is held to the bound.
    if result["decoded"]:
        assert result["host_latency_ms"]["p50"] <= bound, (result, bound, stats["stages"])
