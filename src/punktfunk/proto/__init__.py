"""The host<->driver ABI (the pf-driver-proto analogue): pure ctypes layouts, no I/O.

Importing this package asserts every struct's size and field offsets; a drift is an ImportError.
"""

from __future__ import annotations

import ctypes

from . import control, frame, gamepad
from ._layout import AbiDriftError, layout
from .control import PROTOCOL_VERSION, Op
from .frame import ABI_VERSION, FrameToken, PixelFormat, SharedHeader
from .gamepad import PadShm, XusbShm

__all__ = [
    "ABI_VERSION",
    "PROTOCOL_VERSION",
    "AbiDriftError",
    "FrameToken",
    "Op",
    "PadShm",
    "PixelFormat",
    "SharedHeader",
    "XusbShm",
    "control",
    "frame",
    "gamepad",
    "self_check",
]


def self_check() -> list[str]:
    """Re-verify the ABI at run time and describe it; raises AbiDriftError on any mismatch.

    The layouts were already pinned at import; this also exercises the token packing at its
    bit boundaries and a control-message round trip, the parts a wrong refactor could break
    without moving an offset.
    """
    edge = FrameToken(
        generation=(1 << frame.GENERATION_BITS) - 1,
        seq=(1 << frame.SEQ_BITS) - 1,
        slot=frame.MAX_SLOTS - 1,
    )
    for token in (FrameToken(0, 0, 0), FrameToken(1, 0, 0), FrameToken(0, 1, 0), edge):
        if FrameToken.unpack(token.pack()) != token:
            raise AbiDriftError(f"FrameToken round trip failed for {token}")
    if edge.pack() != (1 << 64) - 1:
        raise AbiDriftError("FrameToken does not fill exactly 64 bits")
    wire = control.encode(Op.PING, request_id=7, session_id=1 << 63)
    if control.decode(wire).header.session_id != 1 << 63:
        raise AbiDriftError("control header round trip lost the u64 session id")
    return [
        f"protocol {PROTOCOL_VERSION}, frame ABI {ABI_VERSION}",
        f"SharedHeader {ctypes.sizeof(SharedHeader)} B, "
        f"SlotHeader {ctypes.sizeof(frame.SlotHeader)} B, "
        f"MsgHeader {ctypes.sizeof(control.MsgHeader)} B",
        f"XusbShm {ctypes.sizeof(XusbShm)} B, PadShm {ctypes.sizeof(PadShm)} B, "
        f"device_type at {layout(PadShm)['device_type']}",
        f"FrameToken = generation<<40 | seq<<8 | slot; max {edge} -> 0x{edge.pack():016x}",
        f"control ops {', '.join(f'{op.name}=0x{op.value:x}' for op in Op)}",
    ]
