"""Native media sink throughput: what the host's punktfunk/2 video path sustains on one core.

Prints one JSON object. `sink` runs access units through the real send path of a session:
`VideoPipeline._send` (microburst pacing at the pipeline's default rate) over
`NativeVideoSink` (30-byte header, GF(2^8) FEC at --fec percent, AES-128-GCM or
ChaCha20-Poly1305 sealing, UDP GSO batches). `raw` sends the very same sealed packets with one
`sendto` each, in the same run, as the baseline. Packets go to a bound loopback socket that
nobody reads (the receiver's drops cost the sender nothing). Mbit/s counts wire bytes.
Wall rates of the sink are capped by the pacing rate (800 Mbit/s by default, and sleeps
overshoot); rates per CPU-second of the sending thread are what one core sustains, and the
targets (issue 7) are checked on those: sink >= 60 % of raw packets and >= 150 Mbit/s.
Run it pinned to one core:

    taskset -c 0 .venv/bin/python bench/native.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import time

from punktfunk.encode.base import EncodedFrame, FrameType
from punktfunk.native.host.sink import BatchSender, NativeVideoSink
from punktfunk.native.wire.registry import MediaSuite
from punktfunk.native.wire.seal import MediaKeys, MediaSealer, Role
from punktfunk.session.pipeline import DEFAULT_RATE_BPS, VideoPipeline

TARGET_RATIO = 0.60
TARGET_MBPS = 150.0


def _sockets() -> tuple[socket.socket, tuple[str, int], socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    return tx, rx.getsockname(), rx


def _frames(count: int, size: int) -> list[EncodedFrame]:
    rng = random.Random(1)
    blobs = [rng.randbytes(size) for _ in range(8)]
    return [
        EncodedFrame(blobs[i % 8], FrameType.P, i, i, time.monotonic_ns(), time.monotonic_ns())
        for i in range(count)
    ]


def run_sink(args: argparse.Namespace, suite: MediaSuite) -> tuple[dict[str, float], list[bytes]]:
    tx, addr, rx = _sockets()
    keys = MediaKeys.derive(os.urandom(32), suite)
    sent: list[bytes] = []
    sender = BatchSender(tx, gso=not args.no_gso)
    sink = NativeVideoSink(
        MediaSealer(keys, Role.HOST), sender, lambda: addr, lambda ns: ns // 1000,
        fec_percent=args.fec,
    )  # fmt: skip
    # The pipeline's own send step (pacing included); capture and encode are not measured.
    rate = args.rate_mbps * 1_000_000
    pipeline = VideoPipeline(None, None, sink, fps=60, depth=2, rate_bps=rate)  # type: ignore[arg-type]
    frames = _frames(args.frames, args.frame_bytes)
    keep = sink.packetize
    sink.packetize = lambda f, lat: sent.extend(out := keep(f, lat)) or out  # type: ignore[method-assign]
    pipeline._send(frames[0])  # warm-up: FEC tables, AEAD objects
    sent.clear()
    start, cpu = time.perf_counter(), time.thread_time()
    for frame in frames[1:]:
        pipeline._send(frame)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    wire = sum(len(p) for p in sent)
    tx.close()
    rx.close()
    return {
        "packets_per_s": round(len(sent) / elapsed),
        "mbps": round(wire * 8 / elapsed / 1e6, 1),
        # Pacing sleeps leave the core idle: per CPU-second is what one core sustains.
        "packets_per_cpu_s": round(len(sent) / cpu),
        "mbps_per_cpu_s": round(wire * 8 / cpu / 1e6, 1),
        "frames_per_s": round((len(frames) - 1) / elapsed, 1),
        "gso": sender.gso,
        "send_drops": sender.dropped,
    }, sent


def run_raw(packets: list[bytes]) -> dict[str, float]:
    tx, addr, rx = _sockets()
    sendto = tx.sendto
    start, cpu = time.perf_counter(), time.thread_time()
    for packet in packets:
        with contextlib.suppress(BlockingIOError):
            sendto(packet, addr)
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    tx.close()
    rx.close()
    wire = sum(len(p) for p in packets)
    return {
        "packets_per_s": round(len(packets) / elapsed),
        "mbps": round(wire * 8 / elapsed / 1e6, 1),
        "packets_per_cpu_s": round(len(packets) / cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--frame-bytes", type=int, default=60_000, help="access unit size")
    parser.add_argument("--fec", type=int, default=10, help="FEC percent")
    parser.add_argument("--no-gso", action="store_true", help="one sendto per packet")
    parser.add_argument(
        "--rate-mbps", type=int, default=DEFAULT_RATE_BPS // 1_000_000,
        help="microburst pacing rate (default: the pipeline's)",
    )  # fmt: skip
    args = parser.parse_args()
    out: dict[str, object] = {
        "frame_bytes": args.frame_bytes,
        "fec_percent": args.fec,
        "pacing_mbps": args.rate_mbps,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    for suite in (MediaSuite.AES_128_GCM, MediaSuite.CHACHA20_POLY1305):
        sink, packets = run_sink(args, suite)
        raw = run_raw(packets)
        ratio = sink["packets_per_cpu_s"] / raw["packets_per_cpu_s"]
        out[suite.name.lower()] = {
            "sink": sink,
            "raw_sendto": raw,
            "ratio_of_raw_per_cpu_s": round(ratio, 3),
            "ratio_of_raw_wall": round(sink["packets_per_s"] / raw["packets_per_s"], 3),
            "meets_targets": ratio >= TARGET_RATIO and sink["mbps_per_cpu_s"] >= TARGET_MBPS,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
