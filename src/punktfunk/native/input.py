"""Client input of punktfunk/2 -> the session's InputInjector and PadManager.

Edges (keys, buttons) arrive on the control stream, state (pointer motion, gamepad snapshots)
as INPUT_STATE datagrams; both carry the 18-byte `InputEvent` (`input.rs`). The field use per
kind follows `input.rs` where the index shows it (gamepad snapshots: `GamepadSnapshot` in
punktfunk's input.rs) and docs/wire.md "Choices" where it does not. Runs on the session's own
input thread: an injection backend that blocks never stalls the socket loop.

Rumble goes the other way: a PadManager's feedback becomes a 7-byte 0xCA datagram
(`encode_rumble_datagram(pad, low, high)` in quic/datagram.rs: tag, then three LE u16).
"""

from __future__ import annotations

import logging
import struct

from ..input.base import InputInjector, PadFeedback, PadKind, PadManager, PadState
from ..log import event
from .dgram import InputEvent, InputKind
from .dgram import encode as encode_dgram
from .registry import DgramKind, DgramTag

_log = logging.getLogger("punktfunk.native.input")

MAX_PADS = 16
_RUMBLE = struct.Struct("<BHHH")


def encode_rumble(pad: int, low: int, high: int) -> bytes:
    """The RUMBLE datagram for one pad's motor levels (v1 layout, no envelope)."""
    return encode_dgram(DgramKind.RUMBLE, _RUMBLE.pack(DgramTag.RUMBLE, pad, low, high))


def decode_rumble(payload: bytes) -> tuple[int, int, int] | None:
    """`(pad, low, high)` from a RUMBLE payload (its tag byte included); None if short."""
    if len(payload) < _RUMBLE.size or payload[0] != DgramTag.RUMBLE:
        return None
    _, pad, low, high = _RUMBLE.unpack_from(payload)
    return pad, low, high


def rumble_of(feedback: PadFeedback) -> bytes:
    return encode_rumble(feedback.index, feedback.rumble_low, feedback.rumble_high)


def _i16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


def snapshot_state(ev: InputEvent) -> tuple[int, int, PadState]:
    """`(pad, seq, state)` of a GAMEPAD_STATE event (punktfunk `GamepadSnapshot`):
    code = buttons, x = ls_x<<16 | ls_y, y = rs_x<<16 | rs_y,
    flags = seq<<24 | left_trigger<<16 | right_trigger<<8 | pad."""
    state = PadState(
        buttons=ev.code,
        left_trigger=(ev.flags >> 16) & 0xFF,
        right_trigger=(ev.flags >> 8) & 0xFF,
        thumb_lx=_i16(ev.x >> 16),
        thumb_ly=_i16(ev.x),
        thumb_rx=_i16(ev.y >> 16),
        thumb_ry=_i16(ev.y),
    )
    return ev.flags & 0xFF, (ev.flags >> 24) & 0xFF, state


def _seq_newer(seq: int, last: int | None) -> bool:
    """Wrapping i8 comparison: apply a snapshot only when it supersedes the last one."""
    if last is None:
        return True
    delta = (seq - last) & 0xFF
    return 0 < delta < 128


class InputApplier:
    """Applies events in arrival order; a bad event is dropped and counted, never raised."""

    def __init__(
        self,
        injector: InputInjector | None,
        pads: PadManager | None,
        surface: tuple[int, int],
    ) -> None:
        self._injector = injector
        self._pads = pads if pads is not None and pads.available else None
        self._surface = surface
        self._pad_seq: dict[int, int] = {}
        self.applied = 0
        self.ignored = 0

    def set_surface(self, surface: tuple[int, int]) -> None:
        """The session's mode changed (Reconfigure): absolute positions scale to the new one."""
        self._surface = surface

    def apply(self, ev: InputEvent) -> None:
        inj, kind = self._injector, ev.kind
        if kind in (InputKind.GAMEPAD_STATE, InputKind.GAMEPAD_ARRIVAL, InputKind.GAMEPAD_REMOVE):
            self._pad(ev)
            return
        if inj is None:
            self.ignored += 1  # e.g. the pattern display has nothing to type into
            return
        match kind:
            case InputKind.KEY_DOWN | InputKind.KEY_UP:
                inj.key(ev.code & 0xFFFF, kind is InputKind.KEY_DOWN, ev.flags & 0xFF)
            case InputKind.MOUSE_MOVE:
                inj.mouse_move_rel(ev.x, ev.y)
            case InputKind.MOUSE_MOVE_ABS:
                # code = surface width << 16 | height (0: the session's own mode).
                w, h = (ev.code >> 16) & 0xFFFF, ev.code & 0xFFFF
                inj.mouse_move_abs(ev.x, ev.y, *((w, h) if w and h else self._surface))
            case InputKind.MOUSE_BUTTON_DOWN | InputKind.MOUSE_BUTTON_UP:
                inj.mouse_button(ev.code, kind is InputKind.MOUSE_BUTTON_DOWN)
            case InputKind.MOUSE_SCROLL | InputKind.SCROLL:
                inj.scroll(ev.y, ev.x)
            case InputKind.TEXT_INPUT:
                if 0 < ev.code < 0x110000 and not 0xD800 <= ev.code < 0xE000:
                    inj.text(chr(ev.code))
                else:
                    self.ignored += 1
                    return
            case _:  # touch and per-button gamepad edges: not served by this host
                self.ignored += 1
                return
        self.applied += 1

    def _pad(self, ev: InputEvent) -> None:
        pads = self._pads
        if pads is None:
            self.ignored += 1
            return
        if ev.kind is InputKind.GAMEPAD_STATE:
            index, seq, state = snapshot_state(ev)
            if index >= MAX_PADS or not _seq_newer(seq, self._pad_seq.get(index)):
                self.ignored += 1
                return
            if index not in self._pad_seq:
                pads.arrive(index, PadKind.XBOX360)
            self._pad_seq[index] = seq
            pads.update(index, state)
        elif ev.kind is InputKind.GAMEPAD_ARRIVAL:
            index = ev.flags & 0xFF
            kind = PadKind(ev.code) if ev.code in PadKind._value2member_map_ else PadKind.XBOX360
            if index < MAX_PADS and index not in self._pad_seq:
                pads.arrive(index, kind)
                self._pad_seq[index] = 0
        else:
            index = ev.flags & 0xFF
            if self._pad_seq.pop(index, None) is not None:
                pads.remove(index)
        self.applied += 1

    def close(self) -> None:
        for part in (self._injector, self._pads):
            if part is None:
                continue
            try:
                if part is self._injector:
                    self._injector.release_all()  # type: ignore[union-attr]
                part.close()
            except Exception as exc:  # keep releasing the rest
                event(_log, "input.close_failed", logging.WARNING, reason=repr(exc))
