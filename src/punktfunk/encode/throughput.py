"""How many frames per second each encoder really sustains here, per (encoder, width, height).

The open/encode probe (caps.py) proves an encoder works; this measures how fast it is, so that
a host offers and picks only codecs that hold the client's rate (libx265 at 1080p on two cores
does ~40 fps: offered at 60 Hz it would queue frames and add latency instead). Each number is
measured at the exact mode asked for, with the session's encoder options and thread count, on
a scrolling desktop-like picture (flat areas, sharp UI edges, fine texture and a little noise:
an all-grey frame would encode far faster than anything a user streams). The first frame (the
IDR and the encoder's warm-up) is not timed; then up to MEASURE_FRAMES frames or
MEASURE_BUDGET_S of encoding, whichever ends first.

Results are cached in memory and in a per-machine JSON file (`default_cache_path()`), keyed by
a fingerprint of the CPU, core count and libavcodec version, so the cost (well under a second
per mode) is paid once per machine, not per host start. Numbers measured while the machine was
busy stay pessimistic until the file is removed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from ..log import event
from ..ownfiles import create_exclusive, token
from ..proto.frame import HDR10_DEFAULT
from .backends import BackendSpec, StreamSettings, open_codec

_log = logging.getLogger("punktfunk.encode.throughput")

CACHE_NAME = "encoder-throughput.json"
HEADROOM = 1.1  # the encoder shares the CPU with capture, convert and send: 10 % to spare
MEASURE_FRAMES = 12
MEASURE_BUDGET_S = 0.8
MIN_TIMED_FRAMES = 3
SCROLL_PX = 8  # per frame: motion the encoder has to search for, as in a scrolling page
BITS_PER_PIXEL = 0.08  # typical streaming bitrate per pixel per frame (20 Mbit/s at 1080p60)
MAX_ENTRIES = 64  # sizes kept per machine: a client cycling modes cannot grow the file forever


def sustains(fps: float, rate_hz: int) -> bool:
    """Whether an encoder measured at `fps` holds a stream of `rate_hz` frames per second."""
    return fps >= rate_hz * HEADROOM


def default_cache_path() -> Path:
    """$XDG_CACHE_HOME/punktfunk when set; else system-wide for root, ~/.cache for a user."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base and os.geteuid() == 0:
        return Path("/var/cache/punktfunk") / CACHE_NAME
    return Path(base or Path.home() / ".cache") / "punktfunk" / CACHE_NAME


def machine_fingerprint() -> str:
    """What the numbers depend on: another CPU, core count or FFmpeg measures anew."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libavcodec = av.library_versions.get("libavcodec", ())
    return f"{model}|{os.cpu_count()}|libavcodec {'.'.join(map(str, libavcodec))}"


def cache_key(encoder: str, width: int, height: int) -> str:
    return f"{encoder} {width}x{height}"


def _canvas(plane_index: int, rows: int, stride: int) -> np.ndarray:
    """A plane of the desktop-like picture, wide enough to scroll through every frame."""
    x = np.arange(stride + SCROLL_PX * (MEASURE_FRAMES + 1), dtype=np.int32)[None, :]
    y = np.arange(rows, dtype=np.int32)[:, None]
    if plane_index > 0:  # chroma: soft coloured tiles
        return (112 + (x // 32 + y // 32) % 32).astype(np.uint8)
    gradient = 40 + x * 160 // max(x.shape[1], 1)
    panels = ((x // 24) * 7 + (y // 24) * 13) % 5 == 0
    text = ((x % 6) < 2) & ((y % 12) < 8) & ((y // 96) % 2 == 0)
    noise = np.random.default_rng(1).integers(-3, 4, (rows, x.shape[1]), dtype=np.int32)
    return np.clip(np.where(panels, 220, gradient) - text * 120 + noise, 0, 255).astype(np.uint8)


def _frames(spec: BackendSpec, width: int, height: int) -> list[av.VideoFrame]:
    """The timed sequence: the canvas scrolled SCROLL_PX further each frame."""
    frames = [
        av.VideoFrame(width, height, spec.sdr_format.value) for _ in range(MEASURE_FRAMES + 1)
    ]
    for p, plane in enumerate(frames[0].planes):
        canvas = _canvas(p, plane.height, plane.line_size)
        for i, frame in enumerate(frames):
            shifted = canvas[:, i * SCROLL_PX : i * SCROLL_PX + plane.line_size]
            frame.planes[p].update(np.ascontiguousarray(shifted).tobytes())
    for i, frame in enumerate(frames):
        frame.pts = i
    return frames


def measure(spec: BackendSpec, width: int, height: int, device: str | None = None) -> float:
    """Frames per second `spec` encodes at width x height here (8-bit SDR, session options)."""
    kbps = max(1_000, int(width * height * 60 * BITS_PER_PIXEL / 1000))
    settings = StreamSettings(width, height, 60, kbps, False, HDR10_DEFAULT)
    cc = open_codec(spec, settings, device)
    frames = _frames(spec, width, height)
    cc.encode(frames[0])  # the IDR and warm-up: not what a running stream pays per frame
    start = time.perf_counter()
    timed = 0
    for frame in frames[1:]:
        cc.encode(frame)
        timed += 1
        if timed >= MIN_TIMED_FRAMES and time.perf_counter() - start > MEASURE_BUDGET_S:
            break
    cc.encode(None)  # an encoder that buffers internally finishes the timed frames here
    elapsed = time.perf_counter() - start
    return timed / elapsed if elapsed > 0 else float("inf")


class ThroughputCache:
    """Measured fps per (encoder, width, height): in memory, backed by the per-machine file."""

    def __init__(
        self,
        path: Path | None = None,
        measure_fn: Callable[[BackendSpec, int, int, str | None], float] = measure,
    ) -> None:
        self.path = path or default_cache_path()
        self._measure = measure_fn
        self._lock = threading.Lock()
        self._fingerprint = machine_fingerprint()
        self._fps: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            event(_log, "encode.throughput.cache_unreadable", logging.WARNING, path=self.path,
                  reason=exc)  # fmt: skip
            return {}
        if not isinstance(data, dict) or data.get("machine") != self._fingerprint:
            return {}  # another machine's (or FFmpeg's) numbers: measure anew
        fps = data.get("fps")
        if not isinstance(fps, dict):
            return {}
        return {str(k): float(v) for k, v in fps.items() if isinstance(v, int | float) and v > 0}

    def _save(self) -> None:
        payload = json.dumps({"machine": self._fingerprint, "fps": self._fps}, indent=1)
        tmp = self.path.with_name(f".{self.path.name}.{token()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Created O_EXCL|O_NOFOLLOW 0600: a name planted in the cache dir is never written
            # through.
            with os.fdopen(create_exclusive(tmp), "w") as f:
                f.write(payload)
            tmp.replace(self.path)  # atomic: a concurrent host reads the old or the new file
        except OSError as exc:
            event(_log, "encode.throughput.cache_unwritable", logging.WARNING, path=self.path,
                  reason=exc)  # fmt: skip

    def fps(self, spec: BackendSpec, width: int, height: int, device: str | None = None) -> float:
        """Measured fps of `spec` at width x height; measured (and stored) on first use."""
        key = cache_key(spec.encoder, width, height)
        with self._lock:  # one measurement at a time: two at once would halve both
            if key in self._fps:
                return self._fps[key]
            start = time.perf_counter()
            try:
                fps = self._measure(spec, width, height, device)
            except (av.FFmpegError, OSError, ValueError) as exc:
                # The open probe passed, so this is transient: no number, no filtering.
                event(_log, "encode.throughput.failed", logging.WARNING, encoder=spec.encoder,
                      size=f"{width}x{height}", reason=exc)  # fmt: skip
                return float("inf")
            self._fps[key] = fps
            while len(self._fps) > MAX_ENTRIES:  # the oldest measurement goes first
                del self._fps[next(iter(self._fps))]
            self._save()
        event(_log, "encode.throughput", encoder=spec.encoder, size=f"{width}x{height}",
              fps=round(fps, 1), ms=round((time.perf_counter() - start) * 1e3))  # fmt: skip
        return fps
