"""What the portal path (`attach:portal`) costs per frame at 1080p, next to the direct
wlr-screencopy capturer (`attach:wayland:OUTPUT`) on the same desktop in the same run.

The desktop is the portal tests' stack (`tests/portal_stack.py`: a headless sway with a real
xdg-desktop-portal, PipeWire and WirePlumber, and the tests' own ScreenCast backend, since
Debian 12's xdg-desktop-portal-wlr cannot share a screen without a GPU). A terminal printing
without pause keeps the output changing, so both capturers see a new frame at every refresh.
Each capturer is driven as the session pipeline drives it (`next_frame` into the OUT ring) for
`--seconds`; reported: frames/s delivered, next_frame p50/p99 (wait included), and CPU per
frame of the host process and, for the portal path, of its GStreamer child. The backend's own
cost (its screencopy and pipewiresink) stands for the compositor's and is not counted.

Usage: .venv/bin/python bench/capture_portal.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from portal_stack import PortalDesktop, missing_parts  # noqa: E402
from punktfunk.capture.base import OutputFormat  # noqa: E402
from punktfunk.vdisplay.base import DisplayMode  # noqa: E402


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drive(capturer: object, seconds: float, child: int | None) -> dict[str, object]:
    first = None
    while first is None:
        first = capturer.next_frame(5.0)  # type: ignore[attr-defined]
    times: list[float] = []
    child_before = _cpu_s(child) if child else 0.0
    own_before, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        if capturer.next_frame(1.0) is not None:  # type: ignore[attr-defined]
            times.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    frames = max(1, len(times))
    times.sort()
    result: dict[str, object] = {
        "fps": round(len(times) / wall, 1),
        "next_frame_p50_ms": round(statistics.median(times) * 1000, 2),
        "next_frame_p99_ms": round(times[round(0.99 * (len(times) - 1))] * 1000, 2),
        "host_cpu_ms_per_frame": round((time.process_time() - own_before) * 1000 / frames, 2),
    }
    if child:
        result["gstreamer_cpu_ms_per_frame"] = round(
            (_cpu_s(child) - child_before) * 1000 / frames, 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if missing_parts():
        print(json.dumps({"skipped": f"missing {', '.join(missing_parts())}"}))
        return
    from punktfunk.capture.pipewire import PipeWireCapturer
    from punktfunk.capture.wayland import WaylandCapturer
    from punktfunk.wayland.portal import ScreenCast

    desktop = PortalDesktop(DisplayMode(1920, 1080, 30))
    busy = subprocess.Popen(
        ["foot", "sh", "-c", "while :; do date +%N; done"],
        env=desktop.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    fmt = OutputFormat(gpu=False, hdr=False)
    try:
        time.sleep(2.0)
        os.environ.update(desktop.env)
        direct = WaylandCapturer(
            desktop.sway.wayland_socket, desktop.output.name, fmt, refresh_hz=30
        )
        try:
            screencopy = _drive(direct, args.seconds, None)
        finally:
            direct.close()
        start = time.perf_counter()
        cast = ScreenCast(desktop.dir / "token")
        grant_ms = (time.perf_counter() - start) * 1000
        try:
            portal = PipeWireCapturer(cast.pipewire_fd, cast.stream.node_id, fmt)
            try:
                pipewire = _drive(portal, args.seconds, portal._proc.pid)
            finally:
                portal.close()
        finally:
            cast.close()
        print(json.dumps({
            "mode": "1920x1080@30",
            "seconds": args.seconds,
            "portal_grant_ms": round(grant_ms, 1),
            "screencopy_direct": screencopy,
            "portal_pipewire": pipewire,
        }))  # fmt: skip
    finally:
        busy.kill()
        busy.wait()
        desktop.close()


if __name__ == "__main__":
    main()
