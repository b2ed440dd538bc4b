"""GameStream control messages, sans-I/O: the encrypted v2 envelope and the typed payloads.

Every ENet packet on the control channel is `LE16 0x0001, LE16 length, LE32 seq, tag16,
AES-128-GCM(LE16 type, LE16 payload length, payload)` with IV = LE32 seq, 6 zero bytes, a
direction byte ('C' from the client, 'H' from the host) and 'C'. Each direction counts from 0;
receivers accept any seq. A message that fails authentication is dropped, never parsed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..proto.frame import HdrMeta

ENVELOPE = 0x0001
ENVELOPE_HEADER = 24  # type, length, seq, tag
TERMINATION_GRACEFUL = 0x80030023


class ControlError(ValueError):
    """A control packet that is not a valid encrypted message."""


class MsgType(IntEnum):
    # client -> host
    START_A = 0x0305
    START_B = 0x0307
    IDR_REQUEST = 0x0302
    RFI = 0x0301
    LTR_ACK = 0x0350
    PING = 0x0200
    LOSS_STATS = 0x0201
    INPUT = 0x0206
    FRAME_STATS = 0x0204
    FEC_STATUS = 0x5502  # also RGB_LED host -> client; meaning is directional
    # host -> client
    RUMBLE = 0x010B
    TERMINATION = 0x0109
    HDR_MODE = 0x010E
    RUMBLE_TRIGGERS = 0x5500
    MOTION_EVENT = 0x5501
    ADAPTIVE_TRIGGERS = 0x5503


RGB_LED = 0x5502


@dataclass(frozen=True)
class ControlMessage:
    type: int
    payload: bytes


class ControlCipher:
    """Seals host messages and opens client messages for one session's key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._send_seq = 0

    @staticmethod
    def _iv(seq: int, direction: bytes) -> bytes:
        return struct.pack("<I", seq) + bytes(6) + direction + b"C"

    def open(self, packet: bytes) -> ControlMessage:
        if len(packet) < ENVELOPE_HEADER + 4:
            raise ControlError(f"control packet of {len(packet)} bytes is too short")
        kind, length, seq = struct.unpack_from("<HHI", packet)
        if kind != ENVELOPE:
            raise ControlError(f"unencrypted control packet type 0x{kind:04x}")
        if length != len(packet) - 4:
            raise ControlError(f"envelope length {length} != {len(packet) - 4}")
        tag, ciphertext = packet[8:24], packet[24:]
        try:
            plain = self._aead.decrypt(self._iv(seq, b"C"), ciphertext + tag, None)
        except InvalidTag:
            raise ControlError("control packet failed authentication") from None
        msg_type, payload_len = struct.unpack_from("<HH", plain)
        return ControlMessage(msg_type, plain[4 : 4 + payload_len])

    def seal(self, msg_type: int, payload: bytes) -> bytes:
        plain = struct.pack("<HH", msg_type, len(payload)) + payload
        sealed = self._aead.encrypt(self._iv(self._send_seq, b"H"), plain, None)
        header = struct.pack("<HHI", ENVELOPE, 4 + 16 + len(plain), self._send_seq)
        self._send_seq += 1
        return header + sealed[-16:] + sealed[:-16]


def parse_rfi(payload: bytes) -> tuple[int, int]:
    """RFI request -> (first, last) frame indices (two LE i64 at 0 and 8)."""
    if len(payload) < 16:
        raise ControlError(f"RFI payload of {len(payload)} bytes")
    first, last = struct.unpack_from("<qq", payload)
    return first, last


FEC_STATUS_LEN = 21
_FEC_STATUS = struct.Struct(">IHHHHHHHBBB")


@dataclass(frozen=True)
class FecStatus:
    """SS_FRAME_FEC_STATUS (moonlight-common-c Video.h, packed, big-endian fields): the final
    state of one FEC block of a frame, sent only when the client had to repair it or could
    not (RtpVideoQueue.c reportFinalFrameFecStatus)."""

    frame_index: int
    highest_seq: int
    next_contiguous_seq: int
    missing_before_highest: int
    total_data: int
    total_parity: int
    received_data: int
    received_parity: int
    fec_percentage: int
    block_index: int
    block_count: int

    @property
    def lost(self) -> int:
        """Shards of this block that never arrived (bounded by the block's size). A repaired
        block is reported as soon as it could be, before its last parity shards were due: only
        the gaps below the highest shard received count then."""
        total = self.total_data + self.total_parity
        if not self.unrecoverable:
            return min(total, self.missing_before_highest)
        short = total - self.received_data - self.received_parity
        return min(total, max(self.missing_before_highest, short, 0))

    @property
    def unrecoverable(self) -> bool:
        return self.received_data + self.received_parity < self.total_data


def parse_fec_status(payload: bytes) -> FecStatus:
    if len(payload) < FEC_STATUS_LEN:
        raise ControlError(f"FEC status payload of {len(payload)} bytes")
    return FecStatus(*_FEC_STATUS.unpack_from(payload))


def termination(code: int = TERMINATION_GRACEFUL) -> tuple[int, bytes]:
    return MsgType.TERMINATION, struct.pack(">I", code)


def rumble(controller: int, low: int, high: int) -> tuple[int, bytes]:
    return MsgType.RUMBLE, struct.pack("<IHHH", 0, controller, low, high)


def rumble_triggers(controller: int, left: int, right: int) -> tuple[int, bytes]:
    return MsgType.RUMBLE_TRIGGERS, struct.pack("<HHH", controller, left, right)


def motion_event(controller: int, rate_hz: int, motion_type: int) -> tuple[int, bytes]:
    """Ask the client to start (rate > 0) or stop sending one motion sensor of a pad
    (ControlStream.c: LE16 controller, LE16 report rate, u8 LI_MOTION_TYPE_*)."""
    return MsgType.MOTION_EVENT, struct.pack("<HHB", controller, rate_hz, motion_type)


def rgb_led(controller: int, r: int, g: int, b: int) -> tuple[int, bytes]:
    return RGB_LED, struct.pack("<HBBB", controller, r, g, b)


def adaptive_triggers(
    controller: int, flags: int, type_left: int, type_right: int, left: bytes, right: bytes
) -> tuple[int, bytes]:
    return MsgType.ADAPTIVE_TRIGGERS, struct.pack(
        "<HBBB10s10s", controller, flags, type_left, type_right, left, right
    )


def ss_hdr_metadata(meta: HdrMeta) -> tuple[int, ...]:
    """Our ST.2086/CTA-861.3 values as SS_HDR_METADATA's fields: primaries R, G, B and white
    point in 0.00002 units (as ours), max luminance in nits (ours: 0.0001 cd/m^2), min luminance
    in 0.0001 nits (as ours), MaxCLL, MaxFALL, and max full-frame luminance (= MaxFALL)."""
    primaries = tuple(v for i in range(3) for v in (meta.primaries_x[i], meta.primaries_y[i]))
    return (
        *primaries,
        meta.white_x,
        meta.white_y,
        min(0xFFFF, meta.max_luminance // 10_000),
        min(0xFFFF, meta.min_luminance),
        meta.max_cll,
        meta.max_fall,
        meta.max_fall,
    )


def hdr_mode(enabled: bool, meta: tuple[int, ...] | None = None) -> tuple[int, bytes]:
    """HDR on/off plus SS_HDR_METADATA's 13 LE16 fields: 3 primaries (x, y each), white point
    (x, y), max/min display luminance, MaxCLL, MaxFALL, max full-frame luminance."""
    values = meta if meta is not None else (0,) * 13
    return MsgType.HDR_MODE, struct.pack("<B13H", 1 if enabled else 0, *values)
