"""Control-protocol extension this package needs until `proto/control.py` carries it.

ATTACH_RING tells the driver which ring to publish a monitor's frames into. ADD cannot carry
the ring's name: the name contains the monitor id (`pfvd-<monitor>-<generation>`), which ADD
returns, and a mid-session mode change needs a new ring for the same monitor. The request may
carry an eventfd (SCM_RIGHTS) that the driver signals after each publish, so the host sleeps
in select() instead of polling. An empty ring name detaches the monitor's ring.

Proposed for the ABI as `Op.ATTACH_RING = 0x906` with this body; until then both ends use the
op number and struct from here, and a driver without it answers UNKNOWN_OP (the host then
falls back to X11 capture).
"""

from __future__ import annotations

import ctypes

from ..proto._layout import LE, pin
from ..proto.control import CONTROL_MAGIC, ErrorReply, MsgFlags, MsgHeader, Status

OP_ATTACH_RING = 0x906
RING_NAME_CAPACITY = 64


class AttachRingRequest(LE):
    _fields_ = (
        ("monitor_id", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
        ("ring_name", ctypes.c_char * RING_NAME_CAPACITY),
    )


pin(AttachRingRequest, 72, {"monitor_id": 0, "generation": 4, "ring_name": 8})


def encode_raw(
    op: int,
    body: bytes = b"",
    *,
    request_id: int = 0,
    session_id: int = 0,
    reply: bool = False,
    status: int = Status.OK,
) -> bytes:
    """A message for any op number (the proto encoder only takes registered ops)."""
    header = MsgHeader(
        magic=CONTROL_MAGIC,
        op=op & 0xFFFF,
        flags=MsgFlags.REPLY if reply else MsgFlags.NONE,
        request_id=request_id,
        status=status,
        session_id=session_id,
        body_len=len(body),
    )
    return bytes(header) + body


def encode_raw_error(op: int, status: Status, reason: str, *, request_id: int = 0) -> bytes:
    text = reason.encode("utf-8")[: ctypes.sizeof(ErrorReply) - 1]
    return encode_raw(op, bytes(ErrorReply(text)), request_id=request_id, reply=True, status=status)
