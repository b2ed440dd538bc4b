"""What a program may hand the host as a frame, and how it lands in a ring slot.

Accepted: numpy arrays H x W x 3 uint8 (RGB), H x W x 4 uint8 (BGRA, the ring's own SDR
layout: a plain copy), H x W x 4 float16 (scRGB RGBA, 1.0 = SDR white: the ring's own HDR
layout), a PyAV `VideoFrame` (converted to BGRA), anything with `__dlpack__` or
`__array_interface__`, and GPU arrays (`__cuda_array_interface__` / a CUDA DLPack device),
copied to host memory first. Anything else, or the wrong size for the session's mode, raises a
ValueError that says what was expected; the session is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_CPU_DLPACK = 1  # kDLCPU


@dataclass(frozen=True)
class Mode:
    """The mode a client negotiated: render at this size and rate (HDR: float16 scRGB)."""

    width: int
    height: int
    fps: int
    hdr: bool

    def expected(self) -> str:
        return (
            f"{self.height}x{self.width}x3 uint8 RGB, {self.height}x{self.width}x4 uint8 BGRA or "
            f"{self.height}x{self.width}x4 float16 RGBA"
        )


def _from_gpu(frame: Any) -> np.ndarray:
    """A GPU array copied to host memory through whatever its library offers."""
    for attr in ("get", "cpu", "copy_to_host"):  # CuPy, PyTorch, Numba
        method = getattr(frame, attr, None)
        if callable(method):
            moved = method()
            return np.asarray(moved.numpy() if hasattr(moved, "numpy") else moved)
    raise ValueError(
        f"{type(frame).__name__} lives on a GPU and offers no copy to host memory "
        "(.get(), .cpu() or .copy_to_host()); copy it to a numpy array first"
    )


def as_array(frame: Any) -> np.ndarray:
    """The frame as a numpy array (no copy where the layout allows); ValueError if it is not a
    kind of frame this host reads."""
    if isinstance(frame, np.ndarray):
        return frame
    if hasattr(frame, "to_ndarray") and hasattr(frame, "format"):  # PyAV VideoFrame
        return frame.to_ndarray(format="bgra")
    if hasattr(frame, "__cuda_array_interface__"):
        return _from_gpu(frame)
    if hasattr(frame, "__dlpack__"):
        device = frame.__dlpack_device__()[0] if hasattr(frame, "__dlpack_device__") else 1
        if device != _CPU_DLPACK:
            return _from_gpu(frame)
        return np.from_dlpack(frame)
    if hasattr(frame, "__array_interface__") or hasattr(frame, "__array__"):
        return np.asarray(frame)
    raise ValueError(
        f"a frame must be a numpy array, a PyAV VideoFrame or a DLPack/CUDA array, "
        f"not {type(frame).__name__}"
    )


def check_layout(pixels: np.ndarray) -> None:
    """ValueError unless `pixels` is one of the layouts a frame may have (any size)."""
    ok = pixels.ndim == 3 and (
        (pixels.dtype == np.uint8 and pixels.shape[2] in (3, 4))
        or (pixels.dtype == np.float16 and pixels.shape[2] == 4)
    )
    if not ok:
        raise ValueError(
            f"a frame must be HxWx3 uint8 RGB, HxWx4 uint8 BGRA or HxWx4 float16 RGBA; got "
            f"shape {pixels.shape} dtype {pixels.dtype}"
        )


def check_frame(pixels: np.ndarray, mode: Mode) -> None:
    """ValueError unless `pixels` fits a session at `mode`."""
    check_layout(pixels)
    if pixels.shape[:2] != (mode.height, mode.width):
        raise ValueError(
            f"the client streams {mode.width}x{mode.height}: expected {mode.expected()}; got "
            f"shape {pixels.shape} dtype {pixels.dtype}"
        )


# uint8 -> float16 bits (SDR white = 1.0), for SDR content on an HDR stream.
_U8_TO_F16 = (np.arange(256) / 255).astype(np.float16).view(np.uint16)


def write_into(pixels: np.ndarray, dst: np.ndarray) -> None:
    """Convert a checked frame into a ring slot: (H, W, 4) uint8 BGRA or float16 RGBA.

    The ring's own layouts are plain copies; RGB costs one pass per channel (numpy is far
    slower on a reversed 3-wide innermost axis). Content of the other dynamic range costs a
    conversion pass in float32: render for `mode.hdr` to avoid it.
    """
    if dst.dtype == pixels.dtype and pixels.shape[2] == 4:
        dst[...] = pixels  # BGRA into an SDR ring, float16 RGBA into an HDR one
        return
    if dst.dtype == np.uint8:
        alpha = 255
        if pixels.dtype == np.float16:  # HDR content on an SDR stream: clip at SDR white
            scaled = pixels[..., :3].astype(np.float32)
            np.clip(scaled, 0.0, 1.0, out=scaled)
            scaled *= 255.0
            scaled += 0.5
            pixels = scaled.astype(np.uint8)  # now RGB
        for ch in range(3):  # BGRA from RGB
            dst[..., ch] = pixels[..., 2 - ch]
        dst[..., 3] = alpha
        return
    bits = dst.view(np.uint16)  # SDR content on an HDR stream: table lookup per channel
    for ch in range(3):  # RGBA from RGB, or from BGRA
        bits[..., ch] = _U8_TO_F16[pixels[..., ch if pixels.shape[2] == 3 else 2 - ch]]
    dst[..., 3] = 1.0
