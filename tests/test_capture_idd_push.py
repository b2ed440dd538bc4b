"""IDD-push capture from real driver monitors: frames, pixels, HDR, OUT ring, stale frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from punktfunk.capture.base import CaptureBackend, Capturer, OutputFormat
from punktfunk.capture.idd_push import IddPushCapturer
from punktfunk.capture.open import open_capture
from punktfunk.proto.frame import HDR10_DEFAULT, FrameToken, PixelFormat
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import VirtualDisplayManager
from punktfunk.vdisplay.ring import FrameRing, RingWriter
from punktfunk.vdisplay.stamp import decode_stamp
from punktfunk.vdisplay.xlib.core import XDisplay
from punktfunk.vdisplay.xlib.shm import ShmImage
from test_vdisplay_support import created_rings, make_driver, wait_until

__all__ = ["created_rings", "make_driver"]
SDR = OutputFormat(gpu=False, hdr=False)


def _session(driver, backend, mode, hdr=False):
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), backend)
    lease = manager.acquire(MonitorRequest(mode, hdr, "viewer"))
    capturer = open_capture(lease, OutputFormat(False, hdr), CaptureBackend.IDD_PUSH)
    return manager, lease, capturer


def _close(manager, lease, capturer) -> None:
    capturer.close()
    lease.close()
    manager.close()


def test_pattern_frames_carry_counter_and_time_and_arrive_in_order(make_driver) -> None:
    driver = make_driver()
    manager, lease, capturer = _session(driver, DisplayBackend.PATTERN, DisplayMode(1280, 720, 60))
    try:
        assert isinstance(capturer, IddPushCapturer) and isinstance(capturer, Capturer)
        frames, stamps = [], []
        for _ in range(30):  # decode each at once: OUT slots are reused every third frame
            frame = capturer.next_frame(5)
            assert frame is not None
            frames.append(frame)
            stamps.append(decode_stamp(frame.pixels))
        assert all(s is not None for s in stamps)
        counters = [s.counter for s in stamps]
        assert counters == sorted(counters) and len(set(counters)) == 30
        assert [f.seq for f in frames] == sorted(f.seq for f in frames)
        assert all(s.capture_ns == f.capture_ns for s, f in zip(stamps, frames, strict=True))
        assert frames[-1].pixels.shape == (720, 1280, 4)
        assert frames[-1].pixel_format is PixelFormat.BGRA8 and capturer.hdr_meta() is None
        capturer.set_active(False)  # paused: nothing is taken (the driver drops on full)
        assert capturer.next_frame(0.2) is None
        capturer.set_active(True)
        resumed = capturer.next_frame(5)
        assert resumed is not None and decode_stamp(resumed.pixels).counter > counters[-1]
    finally:
        _close(manager, lease, capturer)


def test_pattern_hdr_is_fp16_with_hdr10_metadata(make_driver) -> None:
    driver = make_driver()
    manager, lease, capturer = _session(
        driver, DisplayBackend.PATTERN, DisplayMode(1920, 1080, 60), hdr=True
    )
    try:
        assert lease.output.hdr
        frame = capturer.next_frame(5)
        assert frame is not None and frame.hdr and frame.pixel_format is PixelFormat.FP16_RGBA
        assert frame.pixels.dtype == np.float16 and float(frame.pixels.max()) > 1.0
        assert capturer.hdr_meta() == HDR10_DEFAULT
        assert decode_stamp(frame.pixels) is not None
    finally:
        _close(manager, lease, capturer)


def test_out_ring_keeps_two_frames_in_flight_and_repeat_uses_a_fresh_slot(make_driver) -> None:
    driver = make_driver()
    manager, lease, capturer = _session(driver, DisplayBackend.PATTERN, DisplayMode(640, 480, 60))
    try:
        assert capturer.pipeline_depth == 2
        a, b = capturer.next_frame(5), capturer.next_frame(5)
        a_copy = a.pixels.copy()
        c = capturer.next_frame(5)  # written while a and b are still "in flight"
        assert np.array_equal(a.pixels, a_copy)
        repeat = capturer.repeat_last()
        assert repeat.seq == c.seq and np.array_equal(repeat.pixels, c.pixels)
        assert not np.shares_memory(repeat.pixels, c.pixels)
        assert not np.shares_memory(repeat.pixels, b.pixels)
    finally:
        _close(manager, lease, capturer)


def _play_publisher(rings: list[str], done: list[str]) -> None:
    """Stand in for the driver's publisher: two stale-generation frames, then a good one, each
    published only after the capturer has looked at the ring again."""
    while not rings:
        time.sleep(0.001)
    ring = FrameRing.open(rings[0])
    writer = RingWriter(ring)

    def publish(generation: int, seq: int, fill: int) -> None:
        slot = writer.try_acquire()
        ring.pixels[slot].fill(fill)
        writer.publish(slot, FrameToken(generation, seq, slot), seq)
        # The capturer stamps its heartbeat just before it reads `latest`: a stamp newer than
        # this publish means it has read this token, however slow the machine is.
        seen = ring.header.consumer_heartbeat
        while ring.header.consumer_heartbeat == seen:
            time.sleep(0.001)
        time.sleep(0.01)

    # Frames produced for other rings of this monitor (an earlier or a later mode).
    publish(ring.generation ^ 0x400000, 1, 200)
    publish(ring.generation ^ 0x200000, 2, 201)
    publish(ring.generation, 3, 7)
    done.append(ring.name)
    ring.close()


def test_stale_generation_frames_are_never_delivered(make_driver, created_rings) -> None:
    driver = make_driver(DisplayBackend.PATTERN, "--no-publish")
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), DisplayBackend.PATTERN)
    lease = manager.acquire(MonitorRequest(DisplayMode(640, 480, 60), False, "v"))
    done: list[str] = []
    player = threading.Thread(target=_play_publisher, args=(created_rings, done))
    player.start()
    try:
        capturer = IddPushCapturer(lease, SDR, first_frame_timeout=10)
        try:
            frame = capturer.next_frame(0)
            assert frame is not None and frame.seq == 3 and int(frame.pixels.max()) == 7
            assert capturer.stale_rejected == 2
            assert capturer.next_frame(0.2) is None
        finally:
            capturer.close()
        player.join(10)
        assert done
    finally:
        lease.close()
        manager.close()


@pytest.mark.parametrize("backend", [DisplayBackend.XVFB, DisplayBackend.XORG_DUMMY])
def test_a_known_image_arrives_bit_exact_through_the_ring(make_driver, backend) -> None:
    driver = make_driver(backend)
    manager, lease, capturer = _session(driver, backend, DisplayMode(1280, 720, 60))
    try:
        assert isinstance(capturer, IddPushCapturer)
        image = np.random.default_rng(11).integers(0, 256, (720, 1280, 4), dtype=np.uint8)
        with XDisplay(lease.output.display_name) as app:
            canvas = ShmImage(app, 1280, 720)
            canvas.pixels[...] = image
            canvas.put()
            canvas.close()
        got: list[np.ndarray] = []

        def arrived() -> bool:
            frame = capturer.next_frame(0.2)
            if frame is not None:
                got.append(frame.pixels)
            return bool(got) and np.array_equal(got[-1][..., :3], image[..., :3])

        # Depth 24: the three colour channels are the image; X leaves the pad byte undefined.
        assert wait_until(arrived, 5, 0), "the drawn image never arrived intact"
    finally:
        _close(manager, lease, capturer)
