"""Typed control and pairing messages (`quic/v2/msg.rs`), each a frame of tagged fields.

A plain message lists `(attribute, codec)` in tag order; every attribute is always written
(msg.rs `v2_message!` writes even empty strings) and one that is absent decodes to its type's
zero. A repeated tag is refused, an unknown tag skipped. Tags live in `registry.FIELD_TAGS`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from .registry import (
    FIELD_TAGS,
    HELLO_NAME_MAX,
    REFUSED_REASON_MAX,
    AckReason,
    MsgType,
)
from .tlv import (
    Fields,
    WireError,
    WireErrorCode,
    bool_of,
    str_of,
    uint_of,
    unique_fields,
)


def truncate_utf8(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary (handshake.rs `truncate_to`)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


@dataclass(frozen=True)
class Mode:
    """`width u32 ‖ height u32 ‖ refresh_hz u32` as one 12-byte value (msg.rs)."""

    width: int = 0
    height: int = 0
    refresh_hz: int = 0

    def pack(self) -> bytes:
        return struct.pack("<III", self.width, self.height, self.refresh_hz)

    @classmethod
    def unpack(cls, value: bytes) -> Mode:
        if len(value) != 12:
            raise WireError(WireErrorCode.BAD_FIELD, "mode field of another length")
        return cls(*struct.unpack("<III", value))


class Codec:
    """How one attribute crosses the wire."""

    def put(self, f: Fields, tag: int, value: Any) -> None:
        raise NotImplementedError

    def get(self, value: bytes) -> Any:
        raise NotImplementedError


class UInt(Codec):
    def __init__(self, width: int) -> None:
        self.width = width

    def put(self, f: Fields, tag: int, value: int) -> None:
        f.raw(tag, value.to_bytes(self.width, "little"))

    def get(self, value: bytes) -> int:
        return uint_of(value, self.width)


class Bool(Codec):
    def put(self, f: Fields, tag: int, value: bool) -> None:
        f.bool(tag, value)

    def get(self, value: bytes) -> bool:
        return bool_of(value)


class Str(Codec):
    """UTF-8; over `limit` is cut on encode (as punktfunk/1 did) and refused on decode."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit

    def put(self, f: Fields, tag: int, value: str) -> None:
        f.str(tag, value if self.limit is None else truncate_utf8(value, self.limit))

    def get(self, value: bytes) -> str:
        return str_of(value, self.limit)


class Raw(Codec):
    """Opaque bytes; with `size`, exactly that many."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size

    def put(self, f: Fields, tag: int, value: bytes) -> None:
        f.raw(tag, value)

    def get(self, value: bytes) -> bytes:
        if self.size is not None and len(value) != self.size:
            raise WireError(WireErrorCode.BAD_FIELD, f"{self.size}-byte field of {len(value)}")
        return value


class ModeCodec(Codec):
    def put(self, f: Fields, tag: int, value: Mode) -> None:
        f.raw(tag, value.pack())

    def get(self, value: bytes) -> Mode:
        return Mode.unpack(value)


U8, U16, U32, U64 = UInt(1), UInt(2), UInt(4), UInt(8)
BOOL, MODE, BYTES, B4, B32 = Bool(), ModeCodec(), Raw(), Raw(4), Raw(32)


class Message:
    """Base of every control message: its `TYPE` and its fields in tag order (`SPEC`)."""

    TYPE: ClassVar[MsgType]
    SPEC: ClassVar[tuple[tuple[str, Codec], ...]] = ()

    def fields(self) -> Fields:
        f = Fields()
        tags = FIELD_TAGS[self.TYPE]
        for name, codec in self.SPEC:
            codec.put(f, tags[name], getattr(self, name))
        return f

    def encode(self) -> bytes:
        """The whole frame: `type ‖ len ‖ fields`."""
        return self.fields().frame(self.TYPE)

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        tags = FIELD_TAGS[cls.TYPE]
        by_tag = {tags[name]: (name, codec) for name, codec in cls.SPEC}
        values: dict[str, Any] = {}
        for tag, value in unique_fields(body):
            if tag in by_tag:
                name, codec = by_tag[tag]
                values[name] = codec.get(value)
        return cls(**values)


@dataclass(frozen=True)
class PairRequest(Message):
    TYPE = MsgType.PAIR_REQUEST
    SPEC = (("name", Str(HELLO_NAME_MAX)), ("spake_a", BYTES), ("device_key", BYTES))
    name: str = ""
    spake_a: bytes = b""
    device_key: bytes = b""


@dataclass(frozen=True)
class PairChallenge(Message):
    TYPE = MsgType.PAIR_CHALLENGE
    SPEC = (("spake_b", BYTES), ("confirm", B32))
    spake_b: bytes = b""
    confirm: bytes = bytes(32)


@dataclass(frozen=True)
class PairProof(Message):
    TYPE = MsgType.PAIR_PROOF
    SPEC = (("confirm", B32),)
    confirm: bytes = bytes(32)


@dataclass(frozen=True)
class PairResult(Message):
    TYPE = MsgType.PAIR_RESULT
    SPEC = (("ok", BOOL),)
    ok: bool = False


@dataclass(frozen=True)
class Refused(Message):
    """`host → client`: why the close that follows happens (a `CloseCode` and a sentence)."""

    TYPE = MsgType.REFUSED
    SPEC = (("code", U32), ("reason", Str(REFUSED_REASON_MAX)))
    code: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Pending(Message):
    TYPE = MsgType.PENDING


@dataclass(frozen=True)
class Reconfigure(Message):
    TYPE = MsgType.RECONFIGURE
    SPEC = (("mode", MODE),)
    mode: Mode = Mode()


@dataclass(frozen=True)
class Reconfigured(Message):
    TYPE = MsgType.RECONFIGURED
    SPEC = (("accepted", BOOL), ("mode", MODE))
    accepted: bool = False
    mode: Mode = Mode()


@dataclass(frozen=True)
class StreamConfig(Message):
    """The video stream from epoch `epoch` on, sent before that epoch's first packet."""

    TYPE = MsgType.STREAM_CONFIG
    SPEC = (
        ("epoch", U8),
        ("mode", MODE),
        ("codec", U8),
        ("bit_depth", U8),
        ("color", B4),
        ("chroma_format", U8),
        ("host_iface_kind", U8),
        ("host_link_mbps", U32),
        ("host_sndbuf_kb", U32),
        ("host_forced_shape", U8),
    )
    epoch: int = 0
    mode: Mode = Mode()
    codec: int = 0
    bit_depth: int = 0
    color: bytes = bytes(4)  # CICP primaries, transfer, matrix, full_range
    chroma_format: int = 0
    host_iface_kind: int = 0
    host_link_mbps: int = 0
    host_sndbuf_kb: int = 0
    host_forced_shape: int = 0


@dataclass(frozen=True)
class AudioConfig(Message):
    TYPE = MsgType.AUDIO_CONFIG
    SPEC = (
        ("stream", U8),
        ("epoch", U8),
        ("codec", U8),
        ("rate_hz", U32),
        ("bits", U8),
        ("channels", U8),
        ("layout", U8),
        ("frame_us", U16),
        ("redundant", BOOL),
    )
    stream: int = 0
    epoch: int = 0
    codec: int = 0
    rate_hz: int = 0
    bits: int = 0
    channels: int = 0
    layout: int = 0
    frame_us: int = 0
    redundant: bool = False


@dataclass(frozen=True)
class SetBitrate(Message):
    TYPE = MsgType.SET_BITRATE
    SPEC = (("bitrate_kbps", U32),)
    bitrate_kbps: int = 0


@dataclass(frozen=True)
class BitrateChanged(Message):
    """The rate in force and, only when short of the ask, why (msg.rs writes tag 2 then)."""

    TYPE = MsgType.BITRATE_CHANGED
    bitrate_kbps: int = 0
    reason: AckReason | None = None

    def fields(self) -> Fields:
        f = Fields().u32(1, self.bitrate_kbps)
        return f if self.reason is None else f.u8(2, self.reason)

    @classmethod
    def decode_body(cls, body: bytes) -> BitrateChanged:
        rate, reason = 0, None
        for tag, value in unique_fields(body):
            if tag == 1:
                rate = uint_of(value, 4)
            elif tag == 2:
                code = uint_of(value, 1)
                # A reason this build does not know reads as none: the ack still stands.
                reason = AckReason(code) if code in AckReason._value2member_map_ else None
        return cls(rate, reason)


@dataclass(frozen=True)
class PipelineGap(Message):
    TYPE = MsgType.PIPELINE_GAP
    SPEC = (("gap_ms", U32),)
    gap_ms: int = 0


@dataclass(frozen=True)
class ProbeRequest(Message):
    """msg.rs `ProbeShaped`: `burst_hz == 0` is the smooth train."""

    TYPE = MsgType.PROBE_REQUEST
    SPEC = (
        ("target_kbps", U32),
        ("duration_ms", U32),
        ("burst_hz", U16),
        ("group_bytes", U32),
        ("group_rate_kbps", U32),
    )
    target_kbps: int = 0
    duration_ms: int = 0
    burst_hz: int = 0
    group_bytes: int = 0
    group_rate_kbps: int = 0


@dataclass(frozen=True)
class ProbeResult(Message):
    TYPE = MsgType.PROBE_RESULT
    SPEC = (
        ("bytes_sent", U64),
        ("packets_sent", U32),
        ("duration_ms", U32),
        ("wire_packets_sent", U32),
        ("send_dropped", U32),
    )
    bytes_sent: int = 0
    packets_sent: int = 0
    duration_ms: int = 0
    wire_packets_sent: int = 0
    send_dropped: int = 0


@dataclass(frozen=True)
class CursorRenderMode(Message):
    TYPE = MsgType.CURSOR_RENDER
    SPEC = (("client_draws", BOOL),)
    client_draws: bool = False


@dataclass(frozen=True)
class AudioState(Message):
    TYPE = MsgType.AUDIO_STATE
    SPEC = (("muted", BOOL),)
    muted: bool = False


@dataclass(frozen=True)
class ClipControl(Message):
    """`client → host`: turn the shared clipboard on or off (`flags` bit 0: files too)."""

    TYPE = MsgType.CLIP_CONTROL
    SPEC = (("enabled", BOOL), ("flags", U8))
    enabled: bool = False
    flags: int = 0


@dataclass(frozen=True)
class ClipState(Message):
    """`host → client`: the answer to every ClipControl; `reason` is a `ClipReason`."""

    TYPE = MsgType.CLIP_STATE
    SPEC = (("enabled", BOOL), ("policy", U8), ("reason", U8))
    enabled: bool = False
    policy: int = 0
    reason: int = 0


@dataclass(frozen=True)
class ShardPayloadChanged(Message):
    TYPE = MsgType.SHARD_PAYLOAD_CHANGED
    SPEC = (("shard_payload", U16),)
    shard_payload: int = 0


@dataclass(frozen=True)
class ShardPayloadAck(Message):
    TYPE = MsgType.SHARD_PAYLOAD_ACK
    SPEC = (("shard_payload", U16),)
    shard_payload: int = 0


@dataclass(frozen=True)
class ClockProbe(Message):
    TYPE = MsgType.CLOCK_PROBE
    SPEC = (("t1_ns", U64),)
    t1_ns: int = 0


@dataclass(frozen=True)
class ClockEcho(Message):
    """`t2`/`t3` are the host's receive and send instants; `t1` is echoed."""

    TYPE = MsgType.CLOCK_ECHO
    SPEC = (("t1_ns", U64), ("t2_ns", U64), ("t3_ns", U64))
    t1_ns: int = 0
    t2_ns: int = 0
    t3_ns: int = 0
