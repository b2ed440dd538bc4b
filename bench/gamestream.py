"""GameStream end to end: a real Moonlight client streams the pattern display; how fast, at what
host CPU cost, with what host latency.

Starts `punktfunk serve --gamestream` on the pattern display (private state dir and ports),
pairs the Moonlight driver (moonlight-common-c, tests/moonlight_driver.py) and streams
1280x720@60 software H.264 for --seconds. It reports the client's decoded fps and decoded
fraction, the host latency the client read from each frame header and the host's own per-stage
figures, and the CPU the host used (host process + display driver, in cores) over the steady
part of the stream. The baseline, measured in the same run: plain PyAV encoding the same
pattern frames with the same x264 settings, paced at the same frame rate, in cores; the ratio
says what the rest of the host (capture, FEC, crypto, pacing, audio) costs on top.

    python bench/gamestream.py [--seconds 20] [--mode 1280x720x60] [--console off|idle|open]

--console open keeps the web console's event stream open and scrapes /metrics every second
for the whole stream (what a browser on Home plus Prometheus cost the host); off runs the host
without the console; idle (the default) runs it with nobody connected.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from punktfunk.encode.backends import StreamSettings, spec_for
from punktfunk.encode.base import Codec, EncoderBackend
from punktfunk.proto.frame import HDR10_DEFAULT, PixelFormat
from punktfunk.vdisplay.base import DisplayMode
from punktfunk.vdisplay.driver.backends.pattern import PatternSource

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "moonlight_driver.py"
sys.path.insert(0, str(ROOT / "tests"))
from gs_host import descendants, wait_port  # noqa: E402 - the e2e tests' host helpers

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
BASE_PORT = 47989 + 3000
WARMUP_S = 3.0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


def _driver(config_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(DRIVER), "--port", str(BASE_PORT), "--config-dir",
            str(config_dir), "--pin", "4321", *args]  # fmt: skip


CONSOLE_PORT = BASE_PORT + 50


def _watch_console(tmp: Path, env: dict[str, str], stop: threading.Event) -> dict[str, int]:
    """A browser on Home and a Prometheus scraper: SSE held open, /metrics once a second."""
    from console_client import ConsoleClient

    token = subprocess.run([str(PUNKTFUNK), "token", "create", "--scope", "read"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    client = ConsoleClient(CONSOLE_PORT, tmp / "state" / "identity" / "host.crt", token=token)
    seen = {"events": 0, "scrapes": 0}

    def events() -> None:
        conn = client.connection(timeout=5)
        conn.request("GET", "/api/events", headers=client.headers("GET"))
        resp = conn.getresponse()
        while not stop.is_set():
            try:
                if resp.fp.readline().startswith(b"event:"):
                    seen["events"] += 1
            except TimeoutError:
                continue
        conn.close()

    reader = threading.Thread(target=events, daemon=True)
    reader.start()
    while not stop.wait(1.0):
        if client.request("GET", "/metrics").status == 200:
            seen["scrapes"] += 1
    reader.join(timeout=10)
    return seen


def stream(seconds: float, mode: str, console: str = "idle") -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="pf-bench-gs-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    env.update(PUNKTFUNK_STATE_DIR=str(tmp / "state"), PUNKTFUNK_CONFIG=str(tmp / "none.env"))
    (tmp / "none.env").write_text("")
    host = subprocess.Popen(
        [str(PUNKTFUNK), "serve", "--gamestream", "--no-mdns", "--display", "pattern",
         "--gamestream-port", str(BASE_PORT), "--bind-address", "127.0.0.1", "--pin", "4321",
         "--monitor-linger-ms", "0", "--log-level", "warning",
         *(("--no-console",) if console == "off" else ("--console-port", str(CONSOLE_PORT)))],
        env=env, stdout=(tmp / "host.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_port(BASE_PORT)
        subprocess.run(_driver(tmp / "client", "--pair-only"), check=True, capture_output=True)
        client = subprocess.Popen(
            _driver(tmp / "client", "--seconds", str(seconds), "--mode", mode),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop, seen = threading.Event(), {}
        watcher = None
        if console == "open":
            watcher = threading.Thread(target=lambda: seen.update(_watch_console(tmp, env, stop)))
            watcher.start()
        time.sleep(WARMUP_S)
        pids = [host.pid, *descendants(host.pid)]
        cpu0, t0 = _cpu_seconds(pids), time.monotonic()
        time.sleep(max(1.0, seconds - WARMUP_S - 2.0))
        cpu1, t1 = _cpu_seconds(pids), time.monotonic()
        out, err = client.communicate(timeout=seconds + 60)
        stop.set()
        if watcher is not None:
            watcher.join(timeout=20)
        if client.returncode != 0:
            raise RuntimeError(f"the Moonlight client failed: {err[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        host.send_signal(signal.SIGINT)
        host.wait(timeout=30)
    return {
        "client_fps": result["fps"],
        "frames_decoded": result["decoded"],
        "frames_sent": result["sent"],
        "decoded_fraction": result["decoded_fraction"],
        "host_latency_ms": result["host_latency_ms"],
        "host_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 3),
        "host_processes": len(pids),
        "console": {"mode": console, **seen},
    }


def baseline(seconds: float, mode: DisplayMode, kbps: int) -> dict[str, object]:
    """Plain PyAV on the pattern's frames, paced at the frame rate: CPU cores used."""
    spec = importlib.util.spec_from_file_location("bench_encode", ROOT / "bench" / "encode.py")
    assert spec is not None and spec.loader is not None
    bench_encode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_encode)
    settings = StreamSettings(mode.width, mode.height, mode.refresh_hz, kbps, False, HDR10_DEFAULT)
    encoder = bench_encode.Baseline(
        spec_for(EncoderBackend.SOFTWARE, Codec.H264), settings, PixelFormat.BGRA8, 2
    )
    source = PatternSource(0, mode, hdr=False)
    frames = [np.empty((mode.height, mode.width, 4), np.uint8) for _ in range(3)]
    period = 1 / mode.refresh_hz
    encode_ms: list[float] = []
    cpu0, t0 = time.process_time(), time.monotonic()
    next_at, n = t0, 0
    while time.monotonic() - t0 < seconds:
        frame = frames[n % 3]
        source.render(n % 3, frame)
        start = time.perf_counter()
        encoder.encode(frame)
        encode_ms.append((time.perf_counter() - start) * 1e3)
        n += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    cores = (time.process_time() - cpu0) / (time.monotonic() - t0)
    encoder.flush()
    return {
        "cpu_cores": round(cores, 3),
        "fps": round(n / (time.monotonic() - t0), 1),
        "encode_ms": bench_encode.stats(encode_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--mode", default="1280x720x60")
    parser.add_argument("--console", choices=("off", "idle", "open"), default="idle")
    args = parser.parse_args()
    width, height, fps = (int(v) for v in args.mode.split("x"))
    ours = stream(args.seconds, args.mode, args.console)
    # The driver asks for 10 Mbit/s; the baseline encodes at the same rate.
    base = baseline(min(10.0, args.seconds), DisplayMode(width, height, fps), 10_000)
    report = {
        "bench": "gamestream",
        "mode": args.mode,
        "codec": "h264 (software)",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "host": ours,
        "baseline_plain_pyav": base,
        "host_cpu_over_baseline": round(ours["host_cpu_cores"] / max(1e-6, base["cpu_cores"]), 2),
        "targets": {"client_fps": ">= 59", "host_cpu_cores": "< 0.9"},
        "loadavg": [round(v, 2) for v in os.getloadavg()[:2]],
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
