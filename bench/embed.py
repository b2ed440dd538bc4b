"""Embedding benchmark: what `push` costs the program, and the host latency of an embedded app
next to the display-capture path, in the same run.

Prints one JSON object:
  push_no_client      push() of a 1080p BGRA and a 720p RGB frame while nobody streams:
                      p50/p99 in microseconds (the program's loop is never held up),
  cases[MODE]         per mode (720p60, 1080p60 by default), an in-process native client
                      (NativeReceiver, H.264) streams for --seconds each of
      app             the embedded app: a program thread pushes a moving frame at the mode's
                      rate; host latency = push -> last datagram of that frame out,
                      plus push p99 with the client attached (one copy into the ring),
      display         the Desktop of the same host on the pattern display (the vdisplay
                      driver process renders, the host captures its ring): render -> last
                      datagram out,
                      each with fps decoded by the client and host latency p50/p99 (ms), as
                      the host stamps every frame for the client.
Numbers on a shared machine move with its load: compare within a run, not across runs.

    .venv/bin/python bench/embed.py
    .venv/bin/python bench/embed.py --modes 1280x720 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import punktfunk
from punktfunk.native.client.dial import pair
from punktfunk.native.client.probe import ClientStore, client_hello
from punktfunk.native.client.receiver import NativeReceiver
from punktfunk.native.wire.messages import Mode

PIN = "2468"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(samples: list[float], scale: float = 1.0) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
    return {"p50": round(ordered[len(ordered) // 2] * scale, 3), "p99": round(p99 * scale, 3)}


def _push_cost(source: punktfunk.PushSource, frame: np.ndarray, count: int) -> list[float]:
    costs = []
    for _ in range(count):
        t = time.perf_counter_ns()
        source.push(frame)
        costs.append(time.perf_counter_ns() - t)
    return costs


class Pusher:
    """The program: a moving bar at the session's mode, pushed at its rate."""

    def __init__(self, source: punktfunk.PushSource) -> None:
        self.source = source
        self.costs: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        frame: np.ndarray | None = None
        n = 0
        while not self.stop.is_set():
            mode = self.source.mode
            if mode is None:
                time.sleep(0.002)
                continue
            if frame is None or frame.shape[:2] != (mode.height, mode.width):
                frame = np.zeros((mode.height, mode.width, 4), np.uint8)
                frame[..., 0] = np.linspace(0, 200, mode.width, dtype=np.uint8)[None, :]
            x = (n * 16) % (mode.width - 64)
            frame[:, x : x + 64, 1] ^= 0xFF
            t = time.perf_counter_ns()
            self.source.push(frame)
            self.costs.append(time.perf_counter_ns() - t)
            frame[:, x : x + 64, 1] ^= 0xFF
            n += 1
            time.sleep(max(0.0, 1 / mode.fps - (time.perf_counter_ns() - t) / 1e9))


def _stream(host: punktfunk.Host, store: ClientStore, fp: bytes, mode: Mode, launch: str,
            seconds: float) -> dict[str, object]:  # fmt: skip
    hello = replace(client_hello(mode, "bench", bitrate_kbps=8000), launch=launch)
    receiver = NativeReceiver(("127.0.0.1", host.native_port or 0), store.identity, fp, hello)
    receiver.run(seconds)
    st = receiver.stats
    span = (st.last_decoded or 0) - (st.first_decoded or 0)
    skip = len(st.host_latency_ms) // 5  # the first second: encoder warm-up, first IDR
    return {
        "fps": round(st.frames_decoded / span, 1) if span > 0 else 0.0,
        "frames": st.frames_decoded,
        "host_latency_ms": _pct(st.host_latency_ms[skip:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="1280x720,1920x1080")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pf-bench-embed-"))
    (tmp / "none.env").write_text("")
    os.environ["PUNKTFUNK_CONFIG"] = str(tmp / "none.env")
    report: dict[str, object] = {"load_avg": os.getloadavg()[0], "cases": {}}
    with punktfunk.Host(name="bench", gamestream=False, pin=PIN, state_dir=tmp / "state",
                        display="pattern", mdns=False, bind_address="127.0.0.1",
                        native_port=_free_port(), monitor_linger_ms=0) as host:  # fmt: skip
        source = host.app("Bench")
        assert isinstance(source, punktfunk.PushSource)
        report["push_no_client_us"] = {
            "1080p_bgra": _pct(_push_cost(source, np.zeros((1080, 1920, 4), np.uint8), 2000), 1e-3),
            "720p_rgb": _pct(_push_cost(source, np.zeros((720, 1280, 3), np.uint8), 2000), 1e-3),
        }
        store = ClientStore(tmp / "client")
        fp = pair(("127.0.0.1", host.native_port or 0), store.identity, PIN, "bench")
        for text in args.modes.split(","):
            w, h = (int(v) for v in text.split("x"))
            mode = Mode(w, h, 60)
            pusher = Pusher(source)
            app = _stream(host, store, fp, mode, "Bench", args.seconds)
            pusher.stop.set()
            pusher.thread.join()
            app["push_with_client_us"] = _pct(pusher.costs[len(pusher.costs) // 5 :], 1e-3)
            time.sleep(1.0)
            display = _stream(host, store, fp, mode, "", args.seconds)
            report["cases"][f"{w}x{h}@60"] = {"app": app, "display": display}  # type: ignore[index]
            time.sleep(1.0)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
