"""Re-target an open encoder's rate control (bitrate, VBV maximum and buffer) with no re-open.

FFmpeg's libx264 wrapper compares the AVCodecContext's `bit_rate`, `rc_max_rate` and
`rc_buffer_size` with what x264 runs at before every frame and calls `x264_encoder_reconfig`
when they differ (libx264.c `reconfig_encoder`); nvenc does the same with its dynamic bitrate.
So a bitrate change needs no IDR, as long as all three fields move together: with only
`bit_rate` moved, the VBV stays sized for the old ceiling and frames keep bursting to it.

PyAV writes `bit_rate` on an open context but not the other two (its `max_bit_rate` is read
only, `options` apply at open). They are plain AVOptions of the context (`maxrate`, `bufsize`),
so `av_opt_set_int` from the libavutil PyAV itself loaded writes them. The context pointer is
the first field of PyAV's `CodecContext` (after the object header and Cython's vtable
pointer); it is only used once it proves to be one: readable, and its class is the one
`avcodec_get_class()` names. Anything else (another layout, another FFmpeg) makes `knobs()`
None and the caller re-opens the encoder instead, as before.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import cache

import av

from ..log import event

_log = logging.getLogger("punktfunk.encode.liverate")

_WORD = ctypes.sizeof(ctypes.c_void_p)
_PTR_OFFSET = 3 * _WORD  # ob_refcnt, ob_type, __pyx_vtab, then `AVCodecContext *ptr`


def _loaded(stem: str) -> str | None:
    """The path of the shared library `stem` this process has mapped (PyAV's own copy)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(maxsplit=1)[-1]
                if os.path.basename(path).startswith(stem) and ".so" in path:
                    return path
    except OSError:
        pass
    return None


class _Libs:
    def __init__(self, avutil: ctypes.CDLL, avcodec: ctypes.CDLL) -> None:
        avutil.av_opt_set_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                                          ctypes.c_int]  # fmt: skip
        avutil.av_opt_set_int.restype = ctypes.c_int
        avutil.av_opt_get_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_int64)]  # fmt: skip
        avutil.av_opt_get_int.restype = ctypes.c_int
        avcodec.avcodec_get_class.restype = ctypes.c_void_p
        self.set_int, self.get_int = avutil.av_opt_set_int, avutil.av_opt_get_int
        self.codec_class: int | None = avcodec.avcodec_get_class()


@cache
def _libs() -> _Libs | None:
    avutil, avcodec = _loaded("libavutil"), _loaded("libavcodec")
    if avutil is None or avcodec is None:
        return None
    try:
        return _Libs(ctypes.CDLL(avutil), ctypes.CDLL(avcodec))
    except (OSError, AttributeError):
        return None


def _readable(address: int, size: int) -> bool:
    """Whether `size` bytes at `address` can be read, asked of the kernel (a bad address is
    EFAULT from write(2), never a crash)."""
    if address <= 0 or address % _WORD:
        return False
    read_fd, write_fd = os.pipe()
    try:
        return ctypes.CDLL(None).write(write_fd, ctypes.c_void_p(address), size) == size
    finally:
        os.close(read_fd)
        os.close(write_fd)


class RateKnobs:
    """The rate-control fields of one open codec context."""

    def __init__(self, libs: _Libs, ptr: int) -> None:
        self._libs, self._ptr = libs, ptr

    def get(self, name: str) -> int | None:
        value = ctypes.c_int64()
        ok = self._libs.get_int(self._ptr, name.encode(), 0, ctypes.byref(value)) == 0
        return value.value if ok else None

    def set(self, maxrate_bps: int, bufsize_bits: int) -> bool:
        """Write the VBV maximum and buffer; the wrapper applies them with the next frame."""
        set_int, ptr = self._libs.set_int, self._ptr
        return (
            set_int(ptr, b"maxrate", maxrate_bps, 0) == 0
            and set_int(ptr, b"bufsize", bufsize_bits, 0) == 0
        )


def knobs(cc: av.CodecContext) -> RateKnobs | None:
    """The open context's rate-control fields, or None where they cannot be reached safely.
    The caller keeps `cc` alive as long as it uses the result."""
    libs = _libs()
    if libs is None or not libs.codec_class or not _readable(id(cc) + _PTR_OFFSET, _WORD):
        return None
    ptr = ctypes.c_void_p.from_address(id(cc) + _PTR_OFFSET).value
    if ptr is None or not _readable(ptr, _WORD):
        return None
    if ctypes.c_void_p.from_address(ptr).value != libs.codec_class:
        event(_log, "encode.live_rate_unavailable", logging.INFO, reason="unknown PyAV layout")
        return None
    found = RateKnobs(libs, ptr)
    if found.get("b") != cc.bit_rate:  # the same context PyAV shows, or none at all
        return None
    return found
