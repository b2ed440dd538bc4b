"""ctypes binding to libpulse-simple: blocking record/playback streams with a set latency.

In process, one stream per object, no subprocess pipe in the path. `fragsize` (record) and
`tlength` (playback) bound the latency the server buffers for us; pa_simple connects with
PA_STREAM_ADJUST_LATENCY, so the server honours them. Works against PipeWire's pulse server too.
ctypes releases the GIL during the blocking calls, so a read thread costs nothing while waiting.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from .base import SAMPLE_RATE

PA_SAMPLE_S16LE = 3
PA_STREAM_PLAYBACK, PA_STREAM_RECORD = 1, 2
PA_CHANNELS_MAX = 32
_NO_VALUE = 0xFFFFFFFF  # (uint32_t) -1: let the server pick


class PulseError(OSError):
    """A sound-server call failed (unreachable server, unknown device, ...)."""


class _SampleSpec(ctypes.Structure):
    _fields_ = (("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8))


class _ChannelMap(ctypes.Structure):
    _fields_ = (("channels", ctypes.c_uint8), ("map", ctypes.c_int * PA_CHANNELS_MAX))


class _BufferAttr(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")
    )


def _load(name: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name) or f"lib{name}.so.0"
    return ctypes.CDLL(path)


try:
    _simple = _load("pulse-simple")
    _pulse = _load("pulse")
except OSError as exc:  # libpulse0 not installed: the tone fallback still works
    _simple = _pulse = None
    _LOAD_ERROR = str(exc)
else:
    _LOAD_ERROR = ""
    _simple.pa_simple_new.restype = ctypes.c_void_p
    _simple.pa_simple_new.argtypes = (
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
        ctypes.POINTER(_SampleSpec), ctypes.POINTER(_ChannelMap), ctypes.POINTER(_BufferAttr),
        ctypes.POINTER(ctypes.c_int),
    )  # fmt: skip
    for _fn in ("pa_simple_read", "pa_simple_write"):
        getattr(_simple, _fn).argtypes = (
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_int),
        )
    _simple.pa_simple_get_latency.restype = ctypes.c_uint64
    _simple.pa_simple_get_latency.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
    _simple.pa_simple_free.argtypes = (ctypes.c_void_p,)
    _pulse.pa_strerror.restype = ctypes.c_char_p
    _pulse.pa_strerror.argtypes = (ctypes.c_int,)
    _pulse.pa_channel_map_parse.restype = ctypes.POINTER(_ChannelMap)
    _pulse.pa_channel_map_parse.argtypes = (ctypes.POINTER(_ChannelMap), ctypes.c_char_p)


def _error(what: str, code: int) -> PulseError:
    assert _pulse is not None
    return PulseError(f"{what}: {_pulse.pa_strerror(code).decode()}")


class SimpleStream:
    """One blocking s16le 48 kHz stream: `record=True` reads from `device`, else writes to it.

    A playback stream waits for `latency_ms` of data before it plays, and again after an
    underrun (so late data is delayed, never skipped); `start_at_once` plays from the first
    byte and lets the server run on through underruns.
    """

    def __init__(
        self,
        *,
        record: bool,
        device: str,
        channel_map: str,
        latency_ms: float,
        server: str | None = None,
        name: str = "punktfunk",
        start_at_once: bool = False,
    ) -> None:
        if _simple is None or _pulse is None:
            raise PulseError(f"libpulse is not available: {_LOAD_ERROR}")
        cmap = _ChannelMap()
        if not _pulse.pa_channel_map_parse(ctypes.byref(cmap), channel_map.encode()):
            raise PulseError(f"bad channel map {channel_map!r}")
        self.channels = cmap.channels
        self.frame_bytes = 2 * self.channels
        spec = _SampleSpec(PA_SAMPLE_S16LE, SAMPLE_RATE, self.channels)
        nbytes = int(SAMPLE_RATE * latency_ms / 1000) * self.frame_bytes
        attr = _BufferAttr(_NO_VALUE, _NO_VALUE, _NO_VALUE, _NO_VALUE, _NO_VALUE)
        if record:
            attr.fragsize = nbytes
        else:
            attr.tlength = nbytes
            attr.prebuf = 0 if start_at_once else nbytes
        err = ctypes.c_int(0)
        handle = _simple.pa_simple_new(
            server.encode() if server else None, name.encode(),
            PA_STREAM_RECORD if record else PA_STREAM_PLAYBACK, device.encode(),
            name.encode(), ctypes.byref(spec), ctypes.byref(cmap), ctypes.byref(attr),
            ctypes.byref(err),
        )  # fmt: skip
        if not handle:
            raise _error(f"cannot open {'record' if record else 'playback'} stream on {device}",
                         err.value)  # fmt: skip
        self._handle: int | None = handle

    def read_into(self, buffer: bytearray) -> None:
        """Fill `buffer` (blocks until the server delivered that much)."""
        err = ctypes.c_int(0)
        view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        if _simple.pa_simple_read(self._live(), view, len(buffer), ctypes.byref(err)) < 0:
            raise _error("read failed", err.value)

    def write(self, pcm: bytes) -> None:
        err = ctypes.c_int(0)
        if _simple.pa_simple_write(self._live(), pcm, len(pcm), ctypes.byref(err)) < 0:
            raise _error("write failed", err.value)

    def latency_us(self) -> int:
        err = ctypes.c_int(0)
        return int(_simple.pa_simple_get_latency(self._live(), ctypes.byref(err)))

    def close(self) -> None:
        if self._handle is not None:
            _simple.pa_simple_free(self._handle)
            self._handle = None

    def _live(self) -> int:
        if self._handle is None:
            raise PulseError("stream is closed")
        return self._handle
