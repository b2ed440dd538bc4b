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
from collections.abc import Callable

from ..input.base import InputInjector, PadFeedback, PadManager
from ..input.padroute import PadRouter, native_arrival, native_remove, native_state
from ..log import event
from .dgram import InputEvent, InputKind
from .dgram import encode as encode_dgram
from .registry import DgramKind, DgramTag

_log = logging.getLogger("punktfunk.native.input")

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


class InputApplier:
    """Applies events in arrival order; a bad event is dropped and counted, never raised."""

    def __init__(
        self,
        injector: InputInjector | None,
        pads: PadManager | None,
        surface: tuple[int, int],
    ) -> None:
        self._injector = injector
        self._pads = PadRouter(pads if pads is not None and pads.available else None)
        self._surface = surface
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
        if ev.kind is InputKind.GAMEPAD_STATE:
            index, seq, state = native_state(ev.code, ev.x, ev.y, ev.flags)
            pads.state(index, state, seq=seq)
        elif ev.kind is InputKind.GAMEPAD_ARRIVAL:
            pads.arrive(*native_arrival(ev.code, ev.flags))
        else:
            pads.remove(*native_remove(ev.flags))
        self.applied += 1

    def on_pad_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._pads.on_feedback(callback)

    def close(self) -> None:
        if self._injector is not None:
            try:
                self._injector.release_all()
                self._injector.close()
            except Exception as exc:  # keep releasing the rest
                event(_log, "input.close_failed", logging.WARNING, reason=repr(exc))
        self._pads.close()
