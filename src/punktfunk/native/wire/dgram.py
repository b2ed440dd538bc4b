"""QUIC datagrams of punktfunk/2: `kind varint ‖ payload` (`quic/v2/dgram.rs`).

Audio, input state and the host's events keep their punktfunk/1 encodings, tag byte included,
and the kind must agree with that tag (`registry.DGRAM_INNER_TAGS`). Feedback and clock samples
are tagged fields. An unknown kind, a disagreeing tag or bad fields decode to None: the
receiver drops the datagram and counts it. Fixed layouts: `quic/datagram.rs`, `input.rs`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .messages import ClockEcho, ClockProbe
from .registry import DGRAM_FIELD_TAGS, DGRAM_INNER_TAGS, DgramKind, DgramTag
from .tlv import (
    Fields,
    WireError,
    WireErrorCode,
    bool_of,
    decode_varint,
    encode_varint,
    iter_fields,
    uint_of,
)


def encode(kind: DgramKind, payload: bytes) -> bytes:
    return encode_varint(kind) + payload


def wrap(payload: bytes) -> bytes | None:
    """An existing tagged datagram under its kind; None for a tag no kind carries."""
    for kind, tags in DGRAM_INNER_TAGS.items():
        if payload and payload[0] in tags:
            return encode(kind, payload)
    return None


# Feedback tags 8-17 but 14/15 (acked, read): the client's link figures (link rate, lost-shard
# places, socket drops, retransmit request, shape). Each is kept as its tag and unsigned
# little-endian value, with no meaning attached yet.
EXT_TAGS = frozenset(range(8, 18)) - {14, 15}


@dataclass(frozen=True)
class Feedback:
    """`client → host` receive state, each report window and while an ask is open.

    `window` numbers report windows from 1 (0 carries none) and `ask` numbers asks from 1
    (0 asks nothing); a host acts on each once however often the client repeats it. `acked`
    (tags 14/15 of dgram.rs at 27fa515) is the newest frame the client completed and the
    sixteen before it as bits (bit i: frame last - 1 - i), sent after each clean frame.
    """

    window: int = 0
    loss_ppm: int = 0  # shards parity repaired over the window
    packets_received: int = 0  # media packets this session
    ask: int = 0
    invalidate: tuple[int, int] | None = None  # frames to invalidate, first and last
    keyframe: bool = False
    # EXT_TAGS, (tag, value) in wire order; a value of another width than
    # 1, 2, 4 or 8 bytes is skipped.
    ext: tuple[tuple[int, int], ...] = ()
    acked: tuple[int, int] | None = None  # newest completed frame, mask of the 16 before

    def encode(self) -> bytes:
        t = DGRAM_FIELD_TAGS[DgramKind.FEEDBACK]
        f = Fields()
        if self.window:
            f.u32(t["window"], self.window).u32(t["loss_ppm"], self.loss_ppm)
            f.u64(t["packets_received"], self.packets_received)
        if self.ask:
            f.u16(t["ask"], self.ask)
            if self.invalidate is not None:
                f.u32(t["invalidate_first"], self.invalidate[0])
                f.u32(t["invalidate_last"], self.invalidate[1])
            if self.keyframe:
                f.bool(t["keyframe"], True)
        for tag, value in self.ext:
            f.u32(tag, value)
        if self.acked is not None:
            f.u32(t["acked_last"], self.acked[0]).u16(t["acked_mask"], self.acked[1])
        return encode(DgramKind.FEEDBACK, f.body())

    @classmethod
    def from_fields(cls, body: bytes) -> Feedback:
        names = {tag: name for name, tag in DGRAM_FIELD_TAGS[DgramKind.FEEDBACK].items()}
        widths = {"window": 4, "loss_ppm": 4, "packets_received": 8, "ask": 2}
        v: dict[str, object] = {}
        ends: dict[str, int] = {}
        ext: dict[int, int] = {}
        for tag, value in iter_fields(body):
            name = names.get(tag)
            if tag in EXT_TAGS:
                if tag in ext:
                    raise WireError(WireErrorCode.DUPLICATE_FIELD, f"feedback tag {tag} repeats")
                if len(value) in (1, 2, 4, 8):  # another shape is skipped, not fatal
                    ext[tag] = int.from_bytes(value, "little")
                continue
            if name in widths:
                v[name] = uint_of(value, widths[name])
            elif name == "keyframe":
                v[name] = bool_of(value)
            elif name in ("invalidate_first", "invalidate_last", "acked_last", "acked_mask"):
                if name in ends:  # dgram.rs sets each of these once
                    raise WireError(WireErrorCode.DUPLICATE_FIELD, f"{name} repeats")
                ends[name] = uint_of(value, 2 if name == "acked_mask" else 4)
        if "invalidate_first" in ends and "invalidate_last" in ends:
            v["invalidate"] = (ends["invalidate_first"], ends["invalidate_last"])
        if ext:
            v["ext"] = tuple(ext.items())
        if "acked_last" in ends:
            v["acked"] = (ends["acked_last"], ends.get("acked_mask", 0))
        return cls(**v)  # type: ignore[arg-type]


def encode_clock_probe(probe: ClockProbe) -> bytes:
    t = DGRAM_FIELD_TAGS[DgramKind.CLOCK]
    return encode(DgramKind.CLOCK, Fields().u64(t["t1_ns"], probe.t1_ns).body())


def encode_clock_echo(reply: ClockEcho) -> bytes:
    t = DGRAM_FIELD_TAGS[DgramKind.CLOCK]
    f = Fields().u64(t["t1_ns"], reply.t1_ns).u64(t["t2_ns"], reply.t2_ns)
    return encode(DgramKind.CLOCK, f.u64(t["t3_ns"], reply.t3_ns).body())


def _clock_from_fields(body: bytes) -> ClockProbe | ClockEcho | None:
    t: dict[int, int] = {}
    for tag, value in iter_fields(body):
        if tag in (1, 2, 3):
            if tag in t:
                return None
            t[tag] = uint_of(value, 8)
    if set(t) == {1}:
        return ClockProbe(t[1])
    if set(t) == {1, 2, 3}:
        return ClockEcho(t[1], t[2], t[3])
    return None


@dataclass(frozen=True)
class Datagram:
    """One received datagram: its kind and payload (a wrapped one keeps its tag byte)."""

    kind: DgramKind
    payload: bytes


def decode(data: bytes) -> Datagram | Feedback | ClockProbe | ClockEcho | None:
    got = decode_varint(data)
    if got is None or got[0] not in DgramKind._value2member_map_:
        return None
    kind, payload = DgramKind(got[0]), data[got[1] :]
    try:
        if kind is DgramKind.FEEDBACK:
            return Feedback.from_fields(payload)
        if kind is DgramKind.CLOCK:
            return _clock_from_fields(payload)
    except WireError:
        return None
    if kind is not DgramKind.MEDIA and (not payload or payload[0] not in DGRAM_INNER_TAGS[kind]):
        return None
    return Datagram(kind, payload)


class InputKind(IntEnum):
    """`input.rs` `InputKind`."""

    KEY_DOWN = 0
    KEY_UP = 1
    MOUSE_MOVE = 2
    MOUSE_MOVE_ABS = 3
    MOUSE_BUTTON_DOWN = 4
    MOUSE_BUTTON_UP = 5
    MOUSE_SCROLL = 6
    GAMEPAD_BUTTON = 7
    GAMEPAD_AXIS = 8
    TOUCH_DOWN = 9
    TOUCH_MOVE = 10
    TOUCH_UP = 11
    GAMEPAD_STATE = 12
    GAMEPAD_REMOVE = 13
    GAMEPAD_ARRIVAL = 14
    TEXT_INPUT = 15
    SCROLL = 16


_INPUT = struct.Struct("<BBIiiI")  # tag, kind, code, x, y, flags: INPUT_WIRE_LEN = 18


@dataclass(frozen=True)
class InputEvent:
    """One 18-byte input event: on the control stream (edges) or a datagram (state)."""

    kind: InputKind
    code: int = 0
    x: int = 0
    y: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        return _INPUT.pack(DgramTag.INPUT, self.kind, self.code, self.x, self.y, self.flags)

    @classmethod
    def decode(cls, data: bytes) -> InputEvent | None:
        if len(data) < _INPUT.size or data[0] != DgramTag.INPUT:
            return None
        _, kind, code, x, y, flags = _INPUT.unpack_from(data)
        if kind not in InputKind._value2member_map_:
            return None
        return cls(InputKind(kind), code, x, y, flags)


_TIMING = struct.Struct("<BQI")
_STAGES = struct.Struct("<III")


@dataclass(frozen=True)
class HostTiming:
    """`0xCF`: one access unit's capture-to-sent time, with its queue/encode/pace split."""

    pts_ns: int
    host_us: int
    stages: tuple[int, int, int] | None = None  # queue_us, encode_us, pace_us

    def encode(self) -> bytes:
        out = _TIMING.pack(DgramTag.HOST_TIMING, self.pts_ns, min(self.host_us, 0xFFFF_FFFF))
        if self.stages is not None:
            out += _STAGES.pack(*(min(s, 0xFFFF_FFFF) for s in self.stages))
        return encode(DgramKind.HOST_TIMING, out)

    @classmethod
    def decode(cls, payload: bytes) -> HostTiming | None:
        """From a HOST_TIMING payload; a torn stage tail degrades to no stages."""
        if len(payload) < _TIMING.size or payload[0] != DgramTag.HOST_TIMING:
            return None
        _, pts, host_us = _TIMING.unpack_from(payload)
        tail = _TIMING.size + _STAGES.size
        stages = _STAGES.unpack_from(payload, _TIMING.size) if len(payload) >= tail else None
        return cls(pts, host_us, stages)


_AUDIO = struct.Struct("<BIQ")


def encode_audio(seq: int, pts_ns: int, opus: bytes) -> bytes:
    """`0xC9 ‖ seq u32 ‖ pts_ns u64 ‖ opus`: one 5 ms Opus frame."""
    return encode(DgramKind.AUDIO, _AUDIO.pack(DgramTag.AUDIO, seq & 0xFFFF_FFFF, pts_ns) + opus)


def decode_audio(payload: bytes) -> tuple[int, int, bytes] | None:
    if len(payload) < _AUDIO.size or payload[0] != DgramTag.AUDIO:
        return None
    _, seq, pts = _AUDIO.unpack_from(payload)
    return seq, pts, payload[_AUDIO.size :]
