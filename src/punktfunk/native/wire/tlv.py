"""Control-stream framing: QUIC varints, `type ‖ len ‖ body` frames, `tag ‖ len ‖ value` fields.

`quic/v2/mod.rs`: a frame is `type ‖ len ‖ field*`, a field `tag ‖ len ‖ value`, every number
a QUIC varint (RFC 9000 §16). Fixed-width values are little-endian (`quic/v2/msg.rs` golden
frames). A reader skips a type or a tag it does not know. `FrameDecoder` checks each type's
body bound (`registry.max_body`) as soon as the header is read, before buffering the body.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from enum import IntEnum

from .registry import max_body

VARINT_MAX = (1 << 62) - 1


class WireErrorCode(IntEnum):
    """Why a stream was malformed; carried in the close reason (docs/wire.md, "Choices")."""

    OVERSIZE_BODY = 1
    TRUNCATED = 2
    BAD_VARINT = 3
    BAD_FIELD = 4
    DUPLICATE_FIELD = 5
    UNEXPECTED_MESSAGE = 6


class WireError(ValueError):
    def __init__(self, code: WireErrorCode, message: str) -> None:
        super().__init__(f"{code.name.lower()}: {message}")
        self.code = code


def encode_varint(value: int) -> bytes:
    """The shortest QUIC varint for `value` (quinn writes the shortest form too)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack(">H", value | 0x4000)
    if value < 0x4000_0000:
        return struct.pack(">I", value | 0x8000_0000)
    if value <= VARINT_MAX:
        return struct.pack(">Q", value | 0xC000_0000_0000_0000)
    raise ValueError(f"{value} does not fit a QUIC varint")


def decode_varint(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """`(value, next_offset)`, or None when `buf` ends inside the varint."""
    if offset >= len(buf):
        return None
    first = buf[offset]
    size = 1 << (first >> 6)
    if offset + size > len(buf):
        return None
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | buf[offset + i]
    return value, offset + size


def frame(msg_type: int, body: bytes) -> bytes:
    return encode_varint(msg_type) + encode_varint(len(body)) + body


class Fields:
    """Builds a message body; each call appends one `tag ‖ len ‖ value` field."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def raw(self, tag: int, value: bytes) -> Fields:
        self._parts += (encode_varint(tag), encode_varint(len(value)), value)
        return self

    def u8(self, tag: int, v: int) -> Fields:
        return self.raw(tag, struct.pack("<B", v))

    def u16(self, tag: int, v: int) -> Fields:
        return self.raw(tag, struct.pack("<H", v))

    def u32(self, tag: int, v: int) -> Fields:
        return self.raw(tag, struct.pack("<I", v))

    def u64(self, tag: int, v: int) -> Fields:
        return self.raw(tag, struct.pack("<Q", v))

    def bool(self, tag: int, v: bool) -> Fields:
        return self.raw(tag, b"\x01" if v else b"\x00")

    def str(self, tag: int, v: str) -> Fields:
        return self.raw(tag, v.encode())

    def body(self) -> bytes:
        return b"".join(self._parts)

    def frame(self, msg_type: int) -> bytes:
        return frame(msg_type, self.body())


def iter_fields(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Every `(tag, value)` in a body, in order; a field running past the end is an error."""
    off, end = 0, len(body)
    while off < end:
        tag = decode_varint(body, off)
        length = None if tag is None else decode_varint(body, tag[1])
        if tag is None or length is None:
            raise WireError(WireErrorCode.TRUNCATED, "field header runs past the body")
        start = length[1]
        stop = start + length[0]
        if stop > end:
            raise WireError(WireErrorCode.TRUNCATED, f"field {tag[0]} runs past the body")
        yield tag[0], body[start:stop]
        off = stop


def unique_fields(body: bytes) -> Iterator[tuple[int, bytes]]:
    """`iter_fields`, refusing a tag that repeats (every decoder in msg.rs/hello.rs does)."""
    seen: set[int] = set()
    for tag, value in iter_fields(body):
        if tag in seen:
            raise WireError(WireErrorCode.DUPLICATE_FIELD, f"field {tag} repeats")
        seen.add(tag)
        yield tag, value


_FIXED = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


def uint_of(value: bytes, width: int) -> int:
    """A fixed-width little-endian integer; any other length is malformed."""
    if len(value) != width:
        raise WireError(WireErrorCode.BAD_FIELD, f"{width}-byte field of length {len(value)}")
    return int(struct.unpack(_FIXED[width], value)[0])


def bool_of(value: bytes) -> bool:
    if value not in (b"\x00", b"\x01"):
        raise WireError(WireErrorCode.BAD_FIELD, "bool field is not one byte of 0 or 1")
    return value == b"\x01"


def str_of(value: bytes, limit: int | None = None) -> str:
    if limit is not None and len(value) > limit:
        raise WireError(WireErrorCode.BAD_FIELD, f"string of {len(value)} bytes > {limit}")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise WireError(WireErrorCode.BAD_FIELD, "string is not UTF-8") from exc


class FrameDecoder:
    """Streaming reader of one QUIC stream: feed bytes, get `(type, body)` frames.

    With `prologue` the stream starts with its stream-type varint (`STREAM_*`), read into
    `stream_type` before the first frame. A body over its type's bound raises `WireError`
    before any of it is buffered.
    """

    def __init__(self, *, prologue: bool = True, bound: Callable[[int], int] = max_body) -> None:
        self._buf = bytearray()
        self._bound = bound
        self._want_prologue = prologue
        self.stream_type: int | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        buf = self._buf
        off = 0
        if self._want_prologue:
            got = decode_varint(buf, 0)
            if got is None:
                return out
            self.stream_type, off = got
            self._want_prologue = False
        while True:
            head = decode_varint(buf, off)
            length = None if head is None else decode_varint(buf, head[1])
            if head is None or length is None:
                break
            msg_type, (size, start) = head[0], length
            bound = self._bound(msg_type)
            if size > bound:
                raise WireError(
                    WireErrorCode.OVERSIZE_BODY,
                    f"type {msg_type:#x} declares {size} bytes, bound {bound}",
                )
            if start + size > len(buf):
                break
            out.append((msg_type, bytes(buf[start : start + size])))
            off = start + size
        del buf[:off]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (never more than one header + one body)."""
        return len(self._buf)
