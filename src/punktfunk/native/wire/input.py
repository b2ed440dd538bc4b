"""Client input of punktfunk/2 as `input.rs` encodes it: grants, pad folding, rumble (pure).

Key edges arrive on the control stream (INPUT_EVENT frames, HOST_CAP2_INPUT_EDGES), everything
else as INPUT_STATE datagrams; both carry the 18-byte `InputEvent`, applied in one queue. The
field use per kind is `input.rs`'s:

- MOUSE_MOVE_ABS / TOUCH_*: `x`/`y` pixels on the client's surface, `flags` = width << 16 |
  height (an event with flags 0 is dropped, as the Rust injectors do);
- MOUSE_SCROLL: `code` = axis (0 vertical, 1 horizontal), `x` = delta in 1/120 detents;
  SCROLL (16): the normalized form (`scroll.py`);
- GAMEPAD_BUTTON / GAMEPAD_AXIS (a client that got no HOST_CAP_GAMEPAD_STATE): folded into the
  pad's state like `GamepadSnapshot::fold`, `flags` = pad; GAMEPAD_STATE is the whole state.

Every event passes the session's grants first (`classify`, quic/access.rs). The host applies
events with `host/inject.py`; the client folds its pads with the same `fold`.

Rumble goes the other way: a PadManager's feedback becomes a 7-byte 0xCA datagram
(`encode_rumble_datagram(pad, low, high)` in quic/datagram.rs: tag, then three LE u16).
"""

from __future__ import annotations

import struct
from dataclasses import replace
from enum import IntFlag

from ...input.base import PadState
from .dgram import InputEvent, InputKind
from .dgram import encode as encode_dgram
from .registry import DgramKind, DgramTag

_RUMBLE = struct.Struct("<BHHH")


class Grant(IntFlag):
    """ServerHello `grants` bits (quic/access.rs, `testdata/grant-vectors.json`)."""

    GAMEPAD = 1
    POINTER = 2
    KEYBOARD = 4
    CLIPBOARD = 8
    MIC = 16
    LAUNCH = 32
    POWER = 64
    MANAGE_GAMES = 128


GRANT_ALL = 0xFF
# The "everything" masks of hosts that predate POWER and MANAGE_GAMES mean everything now.
_LEGACY_ALL = frozenset({0x3F, 0x7F})


def normalize_grants(mask: int) -> int:
    return GRANT_ALL if mask in _LEGACY_ALL else mask


def grant_level(mask: int) -> str:
    """What a UI calls a (normalized) mask: view, controller, full or custom."""
    low = normalize_grants(mask) & GRANT_ALL
    return {0: "view", Grant.GAMEPAD: "controller", GRANT_ALL: "full"}.get(low, "custom")


_KEYBOARD = frozenset({InputKind.KEY_DOWN, InputKind.KEY_UP, InputKind.TEXT_INPUT})
PAD_KINDS = frozenset(
    {
        InputKind.GAMEPAD_BUTTON, InputKind.GAMEPAD_AXIS, InputKind.GAMEPAD_STATE,
        InputKind.GAMEPAD_REMOVE, InputKind.GAMEPAD_ARRIVAL,
    }
)  # fmt: skip


def classify(kind: InputKind) -> Grant:
    """The grant an event needs before it reaches the injector (`quic::classify`)."""
    if kind in _KEYBOARD:
        return Grant.KEYBOARD
    return Grant.GAMEPAD if kind in PAD_KINDS else Grant.POINTER


# input.rs `gamepad::AXIS_*`: sticks are i16 with +y up, triggers 0..255.
AXIS_LS_X, AXIS_LS_Y, AXIS_RS_X, AXIS_RS_Y, AXIS_LT, AXIS_RT = range(6)
_STICK_FIELD = {AXIS_LS_X: "thumb_lx", AXIS_LS_Y: "thumb_ly", AXIS_RS_X: "thumb_rx",
                AXIS_RS_Y: "thumb_ry"}  # fmt: skip
NEUTRAL = PadState(0, 0, 0, 0, 0, 0, 0)


def fold(state: PadState, ev: InputEvent) -> PadState | None:
    """`GamepadSnapshot::fold`: one GAMEPAD_BUTTON/AXIS into `state`; None when the event is
    not foldable (another kind, an unknown axis)."""
    if ev.kind is InputKind.GAMEPAD_BUTTON:
        held = state.buttons | ev.code if ev.x != 0 else state.buttons & ~ev.code
        return replace(state, buttons=held & 0xFFFF_FFFF)
    if ev.kind is not InputKind.GAMEPAD_AXIS:
        return None
    if ev.code in _STICK_FIELD:
        return replace(state, **{_STICK_FIELD[ev.code]: min(max(ev.x, -32768), 32767)})
    trigger = min(max(ev.x, 0), 255)
    if ev.code == AXIS_LT:
        return replace(state, left_trigger=trigger)
    if ev.code == AXIS_RT:
        return replace(state, right_trigger=trigger)
    return None


def encode_rumble(pad: int, low: int, high: int) -> bytes:
    """The RUMBLE datagram for one pad's motor levels (v1 layout, no envelope)."""
    return encode_dgram(DgramKind.RUMBLE, _RUMBLE.pack(DgramTag.RUMBLE, pad, low, high))


def decode_rumble(payload: bytes) -> tuple[int, int, int] | None:
    """`(pad, low, high)` from a RUMBLE payload (its tag byte included); None if short."""
    if len(payload) < _RUMBLE.size or payload[0] != DgramTag.RUMBLE:
        return None
    _, pad, low, high = _RUMBLE.unpack_from(payload)
    return pad, low, high


def surface_of(flags: int) -> tuple[int, int] | None:
    """The client's surface of an absolute event (`flags` = width << 16 | height)."""
    w, h = flags >> 16 & 0xFFFF, flags & 0xFFFF
    return (w, h) if w and h else None
