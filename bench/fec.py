"""FEC throughput: encode and decode MB/s of the native kernel and the numpy fallback.

Prints one JSON object. Shapes are the video blocks that matter: (D, P) = (16, 4), (50, 10) and
(212, 43) with 1392-byte shards. Encode MB/s counts data bytes protected per second through
punktfunk.fec.video_parity; decode MB/s counts data bytes returned per second by video_recover
with P data shards lost (the most work a block can need). Each figure is the median of several
timed repetitions.

GF(2^16) Leopard-RS (scheme 1, what a Rust host sends) is timed on its own shapes: (220, 33), a
300 KB 1080p60 keyframe at 15 %, (1000, 100) and (4096, 410), the largest block a Rust host
forms; its figures are milliseconds per block (median) next to MB/s, decode with P data shards
lost. Run it pinned to one core, as the targets are per core:

    PYTHONPATH=src taskset -c 0 python bench/fec.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from punktfunk import fec

SHAPES = ((16, 4), (50, 10), (212, 43))
SHARD_BYTES = 1392
# What nanors (AVX2) does on one core of the reference machine; the native kernel must match.
ENCODE_TARGETS_MBPS = {"212x43": 200.0, "50x10": 1500.0}
GF16_SHAPES = ((220, 33), (1000, 100), (4096, 410))
# A keyframe block must be rebuilt well inside a 16.7 ms frame interval at 60 fps.
GF16_DECODE_TARGET_MS = {"220x33": 5.0}


def cpu_info() -> dict[str, object]:
    """Model and the SIMD flags that decide which kernel path runs."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "model name":
                    model = value.strip()
    except OSError:
        pass
    info: dict[str, object] = {"model": model}
    info.update({flag: flag in flags for flag in ("ssse3", "avx2", "avx512bw", "gfni")})
    native = "native" in fec.available_backends()
    info["native_isa"] = getattr(fec.get_backend("native"), "isa", None) if native else None
    if hasattr(os, "sched_getaffinity"):
        info["affinity"] = sorted(os.sched_getaffinity(0))
    return info


def median_rate(run: Callable[[], object], data_bytes: int, reps: int, rep_seconds: float) -> float:
    """Median MB/s over `reps` repetitions, each long enough to swamp timer resolution."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(rep_seconds / once))
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(loops):
            run()
        elapsed = time.perf_counter() - start
        rates.append(data_bytes * loops / elapsed / 1e6)
    return round(statistics.median(rates), 1)


def bench_shape(data_count: int, parity_count: int, backend: str, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(data_count * 1000 + parity_count)
    data = [rng.integers(0, 256, SHARD_BYTES, dtype=np.uint8).tobytes() for _ in range(data_count)]
    parity = fec.video_parity(data, parity_count, backend=backend)
    slots: list[bytes | None] = [*data, *parity]
    for index in rng.choice(data_count, parity_count, replace=False):
        slots[index] = None
    if fec.video_recover(slots, data_count, backend=backend) != data:
        raise AssertionError(f"{backend} failed to recover a {data_count}+{parity_count} block")
    data_bytes = data_count * SHARD_BYTES
    rep_seconds = 0.05 if backend == "numpy" else 0.02
    return {
        "encode_MBps": median_rate(
            lambda: fec.video_parity(data, parity_count, backend=backend),
            data_bytes,
            reps,
            rep_seconds,
        ),
        "decode_MBps": median_rate(
            lambda: fec.video_recover(slots, data_count, backend=backend),
            data_bytes,
            reps,
            rep_seconds,
        ),
    }


def median_ms(run: Callable[[], object], reps: int) -> float:
    """Median milliseconds of one call over `reps` calls (after one warm-up call)."""
    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 3)


def bench_gf16(data_count: int, parity_count: int, backend: str, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(data_count * 1000 + parity_count)
    data = [rng.integers(0, 256, SHARD_BYTES, dtype=np.uint8).tobytes() for _ in range(data_count)]
    parity = fec.gf16_parity(data, parity_count, backend=backend)
    slots: list[bytes | None] = [*data, *parity]
    for index in rng.choice(data_count, parity_count, replace=False):
        slots[index] = None
    if fec.gf16_recover(slots, data_count, backend=backend) != data:
        raise AssertionError(f"{backend} failed a GF16 {data_count}+{parity_count} block")
    encode_ms = median_ms(lambda: fec.gf16_parity(data, parity_count, backend=backend), reps)
    decode_ms = median_ms(lambda: fec.gf16_recover(slots, data_count, backend=backend), reps)
    megabytes = data_count * SHARD_BYTES / 1e6
    return {
        "encode_ms": encode_ms,
        "decode_ms": decode_ms,
        "encode_MBps": round(megabytes / encode_ms * 1e3, 1),
        "decode_MBps": round(megabytes / decode_ms * 1e3, 1),
    }


def gf16_backends() -> list[str]:
    try:
        fec.gf16_parity([b"\0\0"], 1, backend="native")
    except ImportError:
        return ["numpy"]
    return ["native", "numpy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=11, help="timed repetitions per figure")
    args = parser.parse_args()

    backends = [name for name in ("native", "numpy") if name in fec.available_backends()]
    results: dict[str, dict[str, dict[str, float] | None]] = {}
    for data_count, parity_count in SHAPES:
        shape = f"{data_count}x{parity_count}"
        results[shape] = {"native": None, "numpy": None}
        for backend in backends:
            reps = args.reps if backend != "numpy" else max(3, args.reps // 2)
            results[shape][backend] = bench_shape(data_count, parity_count, backend, reps)

    targets = {}
    for shape, minimum in ENCODE_TARGETS_MBPS.items():
        native = results[shape]["native"]
        measured = native["encode_MBps"] if native else None
        targets[shape] = {
            "native_encode_min_MBps": minimum,
            "native_encode_MBps": measured,
            "met": measured is not None and measured >= minimum,
        }

    gf16: dict[str, dict[str, dict[str, float] | None]] = {}
    for data_count, parity_count in GF16_SHAPES:
        shape = f"{data_count}x{parity_count}"
        gf16[shape] = {"native": None, "numpy": None}
        for backend in gf16_backends():
            reps = args.reps if backend != "numpy" else max(3, args.reps // 2)
            gf16[shape][backend] = bench_gf16(data_count, parity_count, backend, reps)
    for shape, limit in GF16_DECODE_TARGET_MS.items():
        native = gf16[shape]["native"]
        measured = native["decode_ms"] if native else None
        targets[f"gf16_{shape}"] = {
            "native_decode_max_ms": limit,
            "native_decode_ms": measured,
            "met": measured is not None and measured <= limit,
        }

    report = {
        "shard_bytes": SHARD_BYTES,
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "results": results,
        "gf16": gf16,
        "targets": targets,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
