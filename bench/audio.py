"""Audio capture latency and continuity: PulseCapturer next to raw parec, in the same run.

Prints one JSON object. A writer plays silence into a session sink in 5 ms chunks, with a
20 ms 1 kHz burst every 250 ms. Two readers watch the sink's monitor at once: our
PulseCapturer (what a session uses) and, as the baseline, `parec --latency-msec=5` reading raw
bytes. For each burst:

- end_to_end_ms: from the moment the burst's first chunk was handed to the writer to the
  moment the reader returned the chunk where it starts;
- capture_ms: end_to_end_ms minus the writer's own playback-buffer latency at that moment
  (the server's estimate): the latency the capture path adds.

Also chunks per second, chunks dropped by the capturer (backlog bound), and bursts never
detected. Uses the sound server at --server, else the default one, else starts a private
PulseAudio for the run:

    .venv/bin/python bench/audio.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from punktfunk.audio.base import CHUNK_MS
from punktfunk.audio.pasimple import PulseError, SimpleStream
from punktfunk.audio.pulse import CHANNEL_MAPS, PulseCapturer, PulseServer

FRAMES = 48_000 * CHUNK_MS // 1000
BURST_EVERY, BURST_CHUNKS = 50, 4  # every 250 ms, 20 ms long
THRESHOLD = 4000
MATCH_WINDOW_S = 0.2


def private_server(runtime: Path) -> tuple[subprocess.Popen[bytes], PulseServer]:
    socket = runtime / "native"
    env = {**os.environ, "HOME": str(runtime), "PULSE_RUNTIME_PATH": str(runtime)}
    argv = ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n",
            "--disallow-exit", "--use-pid-file=false",
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return proc, PulseServer.connect(f"unix:{socket}")
        except PulseError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("could not start a private pulseaudio")


class Edges:
    """Rising edges of loudness seen by one reader, as monotonic times."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._loud = False

    def feed(self, pcm: bytes) -> None:
        loud = bool(np.abs(np.frombuffer(pcm, "<i2")).max() > THRESHOLD)
        if loud and not self._loud:
            self.times.append(time.monotonic())
        self._loud = loud


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    arr = np.array(values)
    return {k: round(float(v), 2) for k, v in
            (("p50", np.percentile(arr, 50)), ("p99", np.percentile(arr, 99)),
             ("max", arr.max()))}  # fmt: skip


def latencies(bursts: list[tuple[float, float]], edges: list[float]) -> dict[str, object]:
    end_to_end, capture, missed = [], [], 0
    for written, buffered in bursts:
        hits = [t for t in edges if written <= t <= written + MATCH_WINDOW_S]
        if not hits:
            missed += 1
            continue
        end_to_end.append((hits[0] - written) * 1000)
        capture.append((hits[0] - written - buffered) * 1000)
    return {"end_to_end_ms": stats(end_to_end), "capture_ms": stats(capture),
            "bursts": len(bursts), "missed_bursts": missed}  # fmt: skip


def run(server: PulseServer, seconds: float) -> dict[str, object]:
    capturer = PulseCapturer(server, f"bench{os.getpid()}", 2)
    stop = threading.Event()
    ours, base = Edges(), Edges()
    bursts: list[tuple[float, float]] = []
    parec_bytes = [0]

    def read_capturer() -> None:
        while not stop.is_set():
            chunk = capturer.read(0.1)
            if chunk is not None:
                ours.feed(chunk.pcm)

    parec = subprocess.Popen(
        ["parec", f"--server={server.address}", f"--device={capturer.sink_name}.monitor",
         "--raw", "--format=s16le", "--rate=48000", "--channels=2", "--latency-msec=5"],
        stdout=subprocess.PIPE, bufsize=0,
    )  # fmt: skip

    def read_parec() -> None:
        assert parec.stdout is not None
        while data := parec.stdout.read(FRAMES * 4):
            parec_bytes[0] += len(data)
            base.feed(data)

    def write() -> None:
        writer = SimpleStream(record=False, device=capturer.sink_name,
                              channel_map=CHANNEL_MAPS[2], latency_ms=10,
                              server=server.address, name="bench-writer")  # fmt: skip
        t = np.arange(FRAMES * BURST_CHUNKS) / 48_000
        burst = np.repeat((np.sin(2 * np.pi * 1000 * t) * 16000).astype("<i2"), 2).tobytes()
        silence = bytes(FRAMES * 4)
        n = 0
        while not stop.is_set():
            if n % BURST_EVERY == 0 and n:
                bursts.append((time.monotonic(), writer.latency_us() / 1e6))
                writer.write(burst)
                n += BURST_CHUNKS
            else:
                writer.write(silence)
                n += 1
        writer.close()

    threads = [threading.Thread(target=f) for f in (read_capturer, read_parec, write)]
    time.sleep(0.2)
    for thread in threads:
        thread.start()
    start = time.monotonic()
    first_chunks, first_dropped = capturer.chunks, capturer.dropped
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    chunks = capturer.chunks - first_chunks
    dropped = capturer.dropped - first_dropped
    stop.set()
    parec.terminate()
    for thread in threads:
        thread.join(5)
    capturer.close()
    settled = [b for b in bursts if b[0] < start + elapsed - MATCH_WINDOW_S]
    return {
        "capturer": {**latencies(settled, ours.times), "chunks_per_s": round(chunks / elapsed, 1),
                     "expected_per_s": 1000 / CHUNK_MS, "dropped_chunks": dropped},
        "baseline_parec": {**latencies(settled, base.times),
                           "chunks_per_s": round(parec_bytes[0] / (FRAMES * 4) / elapsed, 1)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--server", help="sound server address (default: the usual lookup)")
    args = parser.parse_args()
    daemon = None
    with tempfile.TemporaryDirectory(prefix="pf-bench-audio-") as tmp:
        try:
            server = PulseServer.connect(args.server)
        except PulseError:
            if args.server:
                raise
            daemon, server = private_server(Path(tmp))
        try:
            report: dict[str, object] = {"seconds": args.seconds, "server": server.name,
                                         "private_server": daemon is not None}  # fmt: skip
            report.update(run(server, args.seconds))
            report["loadavg"] = [round(x, 2) for x in os.getloadavg()]
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(10)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
