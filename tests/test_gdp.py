"""GDP (what `gdppay` writes) read byte for byte, and the PipeWire capturer's reader on it.

`data/gdp_caps_change.bin` is real GStreamer 1.22 output, two runs concatenated (Debian 12):
  gst-launch-1.0 -q videotestsrc num-buffers=2 pattern=solid-color foreground-color=0xff00ff00 \
    ! video/x-raw,format=BGRx,width=4,height=2,framerate=30/1 ! gdppay ! fdsink fd=1
  gst-launch-1.0 -q videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xffff0000 \
    ! video/x-raw,format=BGRx,width=2,height=2,framerate=30/1 ! gdppay ! fdsink fd=1
so it holds a size change mid-stream, as a renegotiated PipeWire stream does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.capture import pipewire
from punktfunk.capture.base import OutputFormat
from punktfunk.capture.recovery import CaptureLost
from punktfunk.wayland.gdp import (
    HEADER_SIZE,
    GdpError,
    PayloadType,
    VideoCaps,
    parse_caps,
    parse_header,
)

FIXTURE = Path(__file__).parent / "data" / "gdp_caps_change.bin"
GREEN, RED = [0, 255, 0, 255], [0, 0, 255, 255]  # BGRx as videotestsrc fills it


@pytest.fixture
def pipewire_fd() -> Iterator[int]:
    """Stands for the portal's PipeWire fd (the child gets it; `cat` ignores it)."""
    fd = os.open("/dev/null", os.O_RDONLY)
    yield fd
    os.close(fd)


def _packets(data: bytes) -> list[tuple[PayloadType, bytes, int | None]]:
    out, offset = [], 0
    while offset < len(data):
        header = parse_header(data[offset : offset + HEADER_SIZE])
        payload = data[offset + HEADER_SIZE : offset + HEADER_SIZE + header.length]
        out.append((header.kind, payload, header.timestamp_ns))
        offset += HEADER_SIZE + header.length
    assert offset == len(data)
    return out


def test_gdppay_output_reads_as_events_caps_and_frames_with_the_size_change() -> None:
    packets = _packets(FIXTURE.read_bytes())
    kinds = [kind for kind, _, _ in packets]
    E, C, B = PayloadType.EVENT, PayloadType.CAPS, PayloadType.BUFFER
    assert kinds == [E, C, E, B, B, E, C, E, B]
    assert parse_caps(packets[1][1]) == VideoCaps("BGRx", 4, 2)
    assert parse_caps(packets[6][1]) == VideoCaps("BGRx", 2, 2)
    assert [ts for kind, _, ts in packets if kind is B] == [0, 33333333, 0]
    assert (
        packets[3][1] == bytes(GREEN) * 8
        and len(packets[3][1]) == VideoCaps("BGRx", 4, 2).frame_bytes
    )
    assert packets[8][1] == bytes(RED) * 4
    assert packets[0][1].startswith(b"GstEventStreamStart, stream-id=(string)")


def test_broken_headers_and_caps_are_refused_with_the_reason() -> None:
    good = FIXTURE.read_bytes()[:HEADER_SIZE]
    with pytest.raises(GdpError, match="62 bytes"):
        parse_header(good[:40])
    with pytest.raises(GdpError, match=r"version 0\.10"):
        parse_header(b"\x00\x0a" + good[2:])
    huge = good[:6] + struct.pack(">I", 1 << 30) + good[10:]
    with pytest.raises(GdpError, match="payload of"):
        parse_header(huge)
    with pytest.raises(GdpError, match="raw video"):
        parse_caps(b"audio/x-raw, format=(string)S16LE, rate=(int)48000\0")
    with pytest.raises(GdpError, match="format and a size"):
        parse_caps(b"video/x-raw, format=(string)BGRx\0")


def test_the_reader_follows_a_size_change_keeps_only_the_newest_and_reports_the_end(
    monkeypatch: pytest.MonkeyPatch, pipewire_fd: int
) -> None:
    """The capturer's child replaced by `cat` of real gdppay output (no PipeWire needed)."""
    monkeypatch.setattr(pipewire, "gst_command", lambda node, fd=None: ["cat", str(FIXTURE)])
    capturer = pipewire.PipeWireCapturer(pipewire_fd, 7, OutputFormat(gpu=False, hdr=False))
    try:
        seen = []
        with pytest.raises(CaptureLost, match=r"PipeWire node 7: GStreamer ended \(exit 0\)"):
            while True:
                frame = capturer.next_frame(2.0)
                assert frame is not None, "a frame or the end, within 2 s"
                seen.append(frame)
        assert 1 <= len(seen) <= 3  # latest wins: a frame not taken in time is skipped
        last = seen[-1]
        assert last.pixels.shape == (2, 2, 4)
        assert np.array_equal(last.pixels.reshape(-1, 4), np.array([RED] * 4, np.uint8))
        assert [f.seq for f in seen] == list(range(1, len(seen) + 1))
        repeat = capturer.repeat_last()
        assert repeat is not None and np.array_equal(repeat.pixels, last.pixels)
    finally:
        capturer.close()


def test_a_child_that_writes_garbage_ends_the_capture_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pipewire_fd: int
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x07" * 200)
    monkeypatch.setattr(pipewire, "gst_command", lambda node, fd=None: ["cat", str(junk)])
    capturer = pipewire.PipeWireCapturer(pipewire_fd, 9, OutputFormat(gpu=False, hdr=False))
    try:
        with pytest.raises(
            CaptureLost, match=r"unreadable stream from GStreamer: GDP version 7\.7"
        ):
            capturer.next_frame(5.0)
    finally:
        capturer.close()
