"""Capture-path benchmark: the IDD-push ring between two processes, as the host uses it.

A producer process (the driver's side: `RingWriter`, eventfd wake-up) publishes frames at a
fixed rate, stamping each with the time just before its `latest` store; the consumer (the
host's side: select on the eventfd, `RingReader.take_latest`, copy into an OUT-ring frame,
release) records publish-to-available latency, the slot -> OUT copy throughput and the whole
per-frame consumer cost. The baseline, measured in the same run, is a plain numpy copy of the
same shared-memory slot into a private array. `sources` adds the per-frame cost of the display
sources at 1080p (`capture_sources.py`: wlr-screencopy next to X11 MIT-SHM). Prints one JSON
object.

    .venv/bin/python bench/capture.py [--seconds 3] [--rate 120]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import select
import statistics
import time
from multiprocessing.synchronize import Event

import numpy as np

import capture_sources
from punktfunk.capture.outring import OutRing
from punktfunk.proto.frame import FrameToken, PixelFormat, shm_name
from punktfunk.vdisplay.base import DisplayMode
from punktfunk.vdisplay.driver.backends.pattern import PatternSource
from punktfunk.vdisplay.ring import FrameRing, RingReader, RingWriter

MODES = ((1920, 1080), (3840, 2160))


def _producer(name: str, notify_fd: int, rate: float, stop: Event) -> None:
    ring = FrameRing.open(name)
    writer = RingWriter(ring, notify_fd)
    period = 1.0 / rate
    next_at = time.monotonic()
    seq = 0
    while not stop.is_set():
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        slot = writer.try_acquire()
        if slot is None:
            continue
        seq += 1
        writer.publish(slot, FrameToken(ring.generation, seq, slot), time.monotonic_ns())
    ring.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _numpy_copy_gbps(src: np.ndarray, reps: int) -> float:
    """Plain `np.copyto` of `src` into a private, already touched array."""
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return src.nbytes / statistics.median(times) / 1e9


def _ring_run(width: int, height: int, seconds: float, rate: float) -> dict[str, object]:
    name = shm_name(4000 + os.getpid() % 1000, width)
    ring = FrameRing.create(name, width, height, PixelFormat.BGRA8, generation=1)
    ring.pixels[0].fill(1)  # pages of every slot are populated (MAP_POPULATE) and written once
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    stop = multiprocessing.get_context("fork").Event()
    producer = multiprocessing.get_context("fork").Process(
        target=_producer, args=(name, efd, rate, stop)
    )
    reader, out = RingReader(ring), OutRing()
    latencies_us: list[float] = []
    copy_s: list[float] = []
    frame_s: list[float] = []
    producer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([efd], [], [], 0.1)[0]:
                os.eventfd_read(efd)
            started = time.perf_counter()
            taken = reader.take_latest()
            if taken is None:
                continue
            available = time.monotonic_ns()
            dst = out.slot(width, height, PixelFormat.BGRA8)
            t0 = time.perf_counter()
            np.copyto(dst, taken.pixels)
            copy_s.append(time.perf_counter() - t0)
            out.commit()
            reader.release(taken)
            frame_s.append(time.perf_counter() - started)
            latencies_us.append((available - taken.capture_ns) / 1000)
    finally:
        stop.set()
        producer.join(10)
        os.close(efd)
        dropped = reader.dropped
    baseline = _numpy_copy_gbps(ring.pixels[0], 30)
    ring.close()
    frame_bytes = width * height * 4
    return {
        "mode": f"{width}x{height}",
        "frames": len(latencies_us),
        "dropped": dropped,
        "publish_to_available_us": {
            "p50": round(_percentile(latencies_us, 0.50), 1),
            "p99": round(_percentile(latencies_us, 0.99), 1),
        },
        "ring_to_out_copy": {
            "p50_ms": round(statistics.median(copy_s) * 1000, 3),
            "gbps": round(frame_bytes / statistics.median(copy_s) / 1e9, 2),
        },
        "consumer_per_frame_p50_ms": round(statistics.median(frame_s) * 1000, 3),
        "numpy_copy_baseline_gbps": round(baseline, 2),
    }


def _pattern_render_ms(width: int, height: int, frames: int = 120) -> float:
    source = PatternSource(0, DisplayMode(width, height, 60), False)
    slots = [np.empty((height, width, 4), np.uint8) for _ in range(3)]
    for i in range(3):
        source.render(i, slots[i])
    times = []
    for n in range(frames):
        t0 = time.perf_counter()
        source.render(n % 3, slots[n % 3])
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per mode")
    parser.add_argument("--rate", type=float, default=120.0, help="frames/s published")
    args = parser.parse_args()
    results = [_ring_run(w, h, args.seconds, args.rate) for w, h in MODES]
    print(
        json.dumps(
            {
                "bench": "capture",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "publish_rate_hz": args.rate,
                "results": results,
                "pattern_render_1080p_ms_p50": _pattern_render_ms(1920, 1080),
                "sources": capture_sources.run(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
