"""Encoder benchmark: punktfunk's encode path against plain PyAV on the same frames, same run.

For each mode (720p60, 1080p60, 2160p60) and each (backend, codec) the probe finds working, it
times, per frame of desktop-like content:
  convert_ms / encode_ms   our Converter and the encoder call (from PyAVEncoder.timings),
  total_ms                 the whole submit+poll through our wrapper (pipeline depth 1),
  baseline_encode_ms       plain PyAV doing the same job: wrap the BGRA buffer, one
                           VideoFrame.reformat (same swscale colour settings and threads),
                           CodecContext.encode with the same codec options (for HDR rows:
                           swscale's plain FP16 -> 10-bit cast, see Baseline),
  convert_numpy_ms         the numpy Y'CbCr path on the same frames (the swscale comparison),
and reports overhead = total_ms.p50 / baseline_encode_ms.p50, output Mbit/s, and fps: the
throughput with pipeline depth 2 (conversion overlapped with encoding). Ours and the baseline
alternate in blocks on the same frames so machine noise hits both alike.

    python bench/encode.py --json            # JSON list, one row per (backend, codec, mode)
    python bench/encode.py --modes 1080p --codecs h264 --hdr
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from punktfunk.capture.base import CapturedFrame
from punktfunk.encode.backends import BackendSpec, StreamSettings, spec_for
from punktfunk.encode.base import Codec, EncoderBackend
from punktfunk.encode.caps import probe_machine
from punktfunk.encode.convert import Converter, Method
from punktfunk.encode.pyav import EncoderParams, PyAVEncoder
from punktfunk.encode.scene import DesktopScene
from punktfunk.proto.frame import HDR10_DEFAULT, PixelFormat
from punktfunk.vdisplay.base import DisplayMode

MODES = {
    "720p": (DisplayMode(1280, 720, 60), 10_000),
    "1080p": (DisplayMode(1920, 1080, 60), 20_000),
    "2160p": (DisplayMode(3840, 2160, 60), 50_000),
}
RING = 6  # distinct pre-rendered frames, cycled (each differs from the last: scroll + motion)
BLOCK = 8  # frames per alternation between ours and the baseline


def stats(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
    }


def render(mode: DisplayMode, fmt: PixelFormat) -> list[CapturedFrame]:
    scene = DesktopScene(mode.width, mode.height, fmt)
    hdr = fmt is not PixelFormat.BGRA8
    return [CapturedFrame(scene.render(i, scene.buffer()), fmt, i, 0, hdr) for i in range(RING)]


class Baseline:
    """Plain PyAV: the same options and colour settings, no punktfunk code on the frame path."""

    def __init__(
        self, spec: BackendSpec, settings: StreamSettings, fmt: PixelFormat, threads: int
    ) -> None:
        out = spec.hdr_format if settings.hdr else spec.sdr_format
        cc = av.CodecContext.create(spec.encoder, "w")
        cc.width, cc.height, cc.pix_fmt = settings.width, settings.height, out.value
        cc.framerate, cc.time_base = Fraction(settings.fps), Fraction(1, settings.fps)
        cc.bit_rate = settings.bps
        cc.thread_type, cc.thread_count = "SLICE", threads
        cc.options = dict(spec.configure(settings).options)
        cc.open()
        self.cc, self.out, self.threads, self.pts = cc, out.value, threads, 0
        self.src = "bgra" if fmt is PixelFormat.BGRA8 else "rgbaf16le"
        if settings.hdr:
            # Plain FFmpeg has no usable scRGB -> PQ path: swscale's colour-managed conversion
            # clips linear input at 1.0 and took ~1.7 s per 1080p frame here. The baseline is
            # its plain format conversion (no transfer function): the cost floor, wrong colours.
            self.colour = {"dst_colorspace": Colorspace.BT2020, "dst_color_range": ColorRange.MPEG}
        else:
            self.colour = {
                "src_colorspace": Colorspace.ITU709,
                "dst_colorspace": Colorspace.ITU709,
                "src_color_range": ColorRange.JPEG,
                "dst_color_range": ColorRange.MPEG,
            }

    def encode(self, pixels: np.ndarray) -> int:
        frame = av.VideoFrame.from_numpy_buffer(pixels, format=self.src)
        yuv = frame.reformat(format=self.out, threads=self.threads, **self.colour)
        yuv.pts = self.pts
        self.pts += 1
        return sum(p.size for p in self.cc.encode(yuv))

    def flush(self) -> None:
        self.cc.encode(None)


def bench_row(
    backend: EncoderBackend,
    codec: Codec,
    mode: DisplayMode,
    kbps: int,
    frames: list[CapturedFrame],
    count: int,
    threads: int,
) -> dict[str, object]:
    spec = spec_for(backend, codec)
    hdr = frames[0].hdr and codec.carries_hdr10
    load_before = os.getloadavg()[0]
    ours = PyAVEncoder(spec, EncoderParams(bitrate_kbps=kbps, fps=mode.refresh_hz, threads=threads))
    settings = StreamSettings(
        mode.width, mode.height, mode.refresh_hz, kbps, hdr, HDR10_DEFAULT, threads
    )
    base = Baseline(spec, settings, frames[0].pixel_format, threads)
    total: list[float] = []
    baseline: list[float] = []
    out_bytes = 0

    def run_ours(indices: range) -> None:
        nonlocal out_bytes
        for i in indices:
            start = time.perf_counter()
            ours.submit(frames[i % RING])
            out_bytes += sum(u.size for u in ours.poll())
            total.append((time.perf_counter() - start) * 1e3)

    def run_baseline(indices: range) -> None:
        for i in indices:
            start = time.perf_counter()
            base.encode(frames[i % RING].pixels)
            baseline.append((time.perf_counter() - start) * 1e3)

    for n, block in enumerate(range(0, count, BLOCK)):
        indices = range(block, min(block + BLOCK, count))
        first, second = (run_ours, run_baseline) if n % 2 == 0 else (run_baseline, run_ours)
        first(indices)
        second(indices)
    out_bytes += sum(u.size for u in ours.flush())
    ours.close()
    base.flush()
    convert_ms = [c for c, _ in ours.timings]
    encode_ms = [e for _, e in ours.timings]

    out = spec.hdr_format if hdr else spec.sdr_format
    numpy_conv = Converter(
        mode.width, mode.height, frames[0].pixel_format, frames[0].hdr, out, method=Method.NUMPY
    )
    numpy_ms = []
    for i in range(min(count, 12)):
        start = time.perf_counter()
        numpy_conv.convert(frames[i % RING].pixels)
        numpy_ms.append((time.perf_counter() - start) * 1e3)

    piped = PyAVEncoder(
        spec,
        EncoderParams(bitrate_kbps=kbps, fps=mode.refresh_hz, pipeline_depth=2, threads=threads),
    )
    start = time.perf_counter()
    for i in range(count):
        piped.submit(frames[i % RING])
        piped.poll()
    piped.flush()
    piped.close()
    fps = count / (time.perf_counter() - start)

    t, b = stats(total), stats(baseline)
    return {
        "backend": str(backend),
        "codec": str(codec),
        "mode": str(mode),
        "hdr": hdr,
        "frames": count,
        "bitrate_kbps": kbps,
        "convert_ms": stats(convert_ms),
        "encode_ms": stats(encode_ms),
        "total_ms": t,
        "baseline_encode_ms": b,
        "overhead": round(t["p50"] / b["p50"], 3),
        "convert_numpy_ms": stats(numpy_ms),
        "fps": round(fps, 1),
        "fps_serial": round(1000 / float(np.mean(total)), 1),
        "mbps": round(out_bytes * 8 / (count / mode.refresh_hz) / 1e6, 2),
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--modes", default="720p,1080p,2160p", help="of " + ",".join(MODES))
    parser.add_argument("--codecs", default="h264,hevc,av1")
    parser.add_argument("--frames", type=int, default=120, help="per row (2160p: a third)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hdr", action="store_true", help="also FP16 HDR10 rows (HEVC, AV1)")
    args = parser.parse_args()
    codecs = [Codec(c) for c in args.codecs.split(",")]
    rows = []
    for name in args.modes.split(","):
        mode, kbps = MODES[name]
        count = args.frames if mode.width < 3840 else max(24, args.frames // 3)
        working = probe_machine(mode, codecs).require_working().encoders
        formats = [PixelFormat.BGRA8] + ([PixelFormat.FP16_RGBA] if args.hdr else [])
        for fmt in formats:
            frames = render(mode, fmt)
            for probed in working:
                if fmt is PixelFormat.FP16_RGBA and probed.max_bit_depth < 10:
                    continue
                row = bench_row(
                    probed.backend, probed.codec, mode, kbps, frames, count, args.threads
                )
                rows.append(row)
                if not args.json:
                    print(
                        f"{row['backend']:>8} {row['codec']:>4} {row['mode']:>13} "
                        f"{'HDR10' if row['hdr'] else 'SDR':>5}  convert {row['convert_ms']}  "
                        f"encode {row['encode_ms']}  total {row['total_ms']}  "
                        f"baseline {row['baseline_encode_ms']}  x{row['overhead']}  "
                        f"{row['fps']} fps  {row['mbps']} Mbit/s  "
                        f"numpy-convert {row['convert_numpy_ms']}",
                        flush=True,
                    )
            del frames
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
