"""Per-frame cost of the display sources at 1080p, measured in one run on this machine:
wlr-screencopy of a headless sway output (display=wlroots) next to the X11 MIT-SHM grab of an
Xvfb screen (the xorg-dummy/xvfb fallback and attach path). Used by `bench/capture.py`.

Each forced frame is a full copy into a BGRA slot (screencopy: a plain `copy` request, so the
compositor renders and copies even without damage; X11: `XShmGetImage` + copy), timed from
request to pixels in the slot. Screencopy answers at the output's next frame, so its time
includes waiting for the 60 Hz refresh (up to 16.7 ms); `shm_to_slot_copy_p50_ms` is our own
share of it and `compositor_cpu_ms_per_frame` sway's (render + copy, from /proc).
`static_frames_per_s` is what a static desktop costs with damage-driven capture (screencopy
`copy_with_damage`): the frames delivered in a second of nothing changing.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from punktfunk.vdisplay.base import DisplayMode

WIDTH, HEIGHT = 1920, 1080


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "frames": len(times),
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000, 3),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds process `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _count_frames(capture: object, dst: np.ndarray, seconds: float) -> int:
    """Frames screencopy delivers within `seconds`."""
    count = 0
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if capture.wait(left) and capture.take(dst) is not None:  # type: ignore[attr-defined]
            count += 1
    return count


def screencopy(frames: int = 60) -> dict[str, object]:
    if shutil.which("sway") is None:
        return {"skipped": "sway is not installed"}
    from punktfunk.wayland.screencopy import ScreencopyOutput
    from punktfunk.wayland.sway import Sway

    state = Path(tempfile.mkdtemp(prefix="pf-b-", dir="/tmp"))
    sway = Sway(state)
    try:
        output = sway.create_output(0, DisplayMode(WIDTH, HEIGHT, 60))
        capture = ScreencopyOutput(sway.wayland_socket, output.name, (WIDTH, HEIGHT))
        dst = np.empty((HEIGHT, WIDTH, 4), np.uint8)
        times, copies = [], []
        cpu_before = _cpu_s(sway.process.pid)
        try:
            for _ in range(frames):
                started = time.perf_counter()
                capture.refresh_all()
                if not capture.wait(2.0):
                    continue
                copied = time.perf_counter()
                if capture.take(dst) is not None:
                    times.append(time.perf_counter() - started)
                    copies.append(time.perf_counter() - copied)
            compositor_ms = (_cpu_s(sway.process.pid) - cpu_before) * 1000 / max(1, len(times))
            _count_frames(capture, dst, 0.5)  # what the forced copies left in flight
            static = _count_frames(capture, dst, 1.0)
        finally:
            capture.close()
        renderer = "gles2" if list(Path("/dev").glob("dri/renderD*")) else "pixman"
        return {
            **_summary(times),
            "shm_to_slot_copy_p50_ms": round(statistics.median(copies) * 1000, 3),
            "compositor_cpu_ms_per_frame": round(compositor_ms, 2),
            "static_frames_per_s": static,
            "renderer": renderer,
        }
    finally:
        sway.stop()
        shutil.rmtree(state, ignore_errors=True)


def x11_mitshm(frames: int = 60) -> dict[str, object]:
    if shutil.which("Xvfb") is None:
        return {"skipped": "Xvfb is not installed"}
    from punktfunk.vdisplay.xlib.core import XDisplay
    from punktfunk.vdisplay.xlib.shm import ShmImage
    from punktfunk.vdisplay.xserver import make_workdir, start_server

    server = start_server(
        "Xvfb",
        lambda n: ["Xvfb", f":{n}", "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
        make_workdir("xvfb"),
    )
    try:
        with XDisplay(server.display) as display:
            image = ShmImage(display, WIDTH, HEIGHT)
            dst = np.empty((HEIGHT, WIDTH, 4), np.uint8)
            times = []
            try:
                for _ in range(frames):
                    started = time.perf_counter()
                    if image.grab():
                        np.copyto(dst, image.pixels)
                        times.append(time.perf_counter() - started)
            finally:
                image.close()
        return _summary(times)
    finally:
        server.stop()


def run() -> dict[str, object]:
    return {"screencopy_1080p": screencopy(), "x11_mitshm_1080p": x11_mitshm()}
