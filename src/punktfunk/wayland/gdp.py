"""The GStreamer Data Protocol (GDP 1.0) as `gdppay` writes it: how the PipeWire capture
(`capture/pipewire.py`) gets frames *and* their size in one ordered byte stream from its
`gst-launch-1.0 pipewiresrc ! … ! gdppay ! fdsink` child. Pure: no I/O.

Each packet is a 62-byte big-endian header then its payload. The header carries the payload's
type (1: a buffer, 2: caps, 64 and up: a serialised event) and length, and for buffers the
timestamp and duration. Caps arrive before the first buffer and again whenever the stream is
renegotiated (the captured output changed size), so a frame's size is always the last caps
seen before it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER_SIZE = 62
_HEADER = struct.Struct(">BBBxHIQQ")  # version, flags, type, length, timestamp, duration
NO_TIME = (1 << 64) - 1  # GST_CLOCK_TIME_NONE
MAX_PAYLOAD = 256 << 20  # a 8K BGRx frame is 132 MB; anything larger is a broken stream


class PayloadType(IntEnum):
    NONE = 0
    BUFFER = 1
    CAPS = 2
    EVENT = 64  # 64 + the event type: anything at or above is an event


class GdpError(ValueError):
    """Bytes that are not a GDP 1.0 stream."""


@dataclass(frozen=True)
class GdpHeader:
    kind: PayloadType
    length: int
    timestamp_ns: int | None
    duration_ns: int | None


@dataclass(frozen=True)
class VideoCaps:
    format: str
    width: int
    height: int

    @property
    def frame_bytes(self) -> int:
        """A packed 4-byte format's frame (rows of width*4 are already 4-byte aligned)."""
        return self.width * self.height * 4


def parse_header(data: bytes) -> GdpHeader:
    if len(data) != HEADER_SIZE:
        raise GdpError(f"a GDP header is {HEADER_SIZE} bytes, not {len(data)}")
    major, minor, _flags, kind, length, timestamp, duration = _HEADER.unpack_from(data)
    if (major, minor) != (1, 0):
        raise GdpError(f"GDP version {major}.{minor} (only 1.0 is understood)")
    if length > MAX_PAYLOAD:
        raise GdpError(f"a GDP payload of {length} bytes")
    payload = PayloadType.EVENT if kind >= PayloadType.EVENT else PayloadType(kind)
    return GdpHeader(
        payload,
        length,
        None if timestamp == NO_TIME else timestamp,
        None if duration == NO_TIME else duration,
    )


_FIELD = re.compile(r"(?:^|,)\s*([a-z-]+)=\((\w+)\)([^,]+)")


def parse_caps(payload: bytes) -> VideoCaps:
    """`video/x-raw, format=(string)BGRx, width=(int)1280, height=(int)720, …` (NUL-ended)."""
    text = payload.rstrip(b"\0").decode("utf-8", errors="replace")
    media, _, rest = text.partition(",")
    if media.strip() != "video/x-raw":
        raise GdpError(f"caps {media.strip()!r}, expected raw video")
    fields = {name: value.strip() for name, _kind, value in _FIELD.findall(rest)}
    try:
        return VideoCaps(fields["format"], int(fields["width"]), int(fields["height"]))
    except (KeyError, ValueError):
        raise GdpError(f"caps without a format and a size: {text[:200]}") from None
