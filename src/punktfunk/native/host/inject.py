"""Client input of punktfunk/2 -> the session's InputInjector and PadManager.

Key edges arrive on the control stream (INPUT_EVENT frames, HOST_CAP2_INPUT_EDGES), everything
else as INPUT_STATE datagrams; both carry the 18-byte `InputEvent` (decoded per `wire/input.py`),
applied in one queue. Runs on the session's own input thread: an injection backend that blocks
never stalls the socket loop. Rumble goes back as a 0xCA datagram.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...input.base import InputInjector, PadFeedback, PadManager, PadState
from ...input.padroute import MAX_PADS, PadRouter, native_arrival, native_remove, native_state
from ...log import Throttle, event
from ..wire.dgram import InputEvent, InputKind
from ..wire.input import (
    GRANT_ALL,
    NEUTRAL,
    PAD_KINDS,
    classify,
    encode_rumble,
    fold,
    normalize_grants,
    surface_of,
)
from ..wire.scroll import HostScroll

_log = logging.getLogger("punktfunk.native.input")


def rumble_of(feedback: PadFeedback) -> bytes:
    return encode_rumble(feedback.index, feedback.rumble_low, feedback.rumble_high)


class InputApplier:
    """Applies events in arrival order; a bad event is dropped and counted, never raised."""

    def __init__(
        self,
        injector: InputInjector | None,
        pads: PadManager | None,
        grants: int = GRANT_ALL,
    ) -> None:
        self._injector = injector
        self._pads = PadRouter(pads if pads is not None and pads.available else None)
        self._grants = normalize_grants(grants)
        self._held: dict[int, PadState] = {}  # each pad's state, for per-button/axis events
        self._scroll = HostScroll()
        self._throttle = Throttle()
        self.applied = 0
        self.ignored = 0

    def apply(self, ev: InputEvent) -> None:
        if not self._grants & classify(ev.kind):
            why: str | None = "not granted"
        elif ev.kind in PAD_KINDS:
            why = self._pad(ev)
        elif self._injector is None:
            why = "no injector"  # e.g. the pattern display has nothing to type into
        else:
            why = self._inject(self._injector, ev)
        if why is None:
            self.applied += 1
            return
        self.ignored += 1
        self._throttle.event(_log, "input.dropped", logging.INFO, throttle_key=why,
                             kind=ev.kind.name, reason=why)  # fmt: skip

    def _inject(self, inj: InputInjector, ev: InputEvent) -> str | None:
        """None once applied, else why the event was dropped."""
        kind = ev.kind
        match kind:
            case InputKind.KEY_DOWN | InputKind.KEY_UP:
                inj.key(ev.code & 0xFFFF, kind is InputKind.KEY_DOWN, ev.flags & 0xFF)
            case InputKind.MOUSE_MOVE:
                inj.mouse_move_rel(ev.x, ev.y)
            case InputKind.MOUSE_MOVE_ABS:
                surface = surface_of(ev.flags)
                if surface is None:
                    return "absolute move without a surface"
                inj.mouse_move_abs(ev.x, ev.y, *surface)
            case InputKind.MOUSE_BUTTON_DOWN | InputKind.MOUSE_BUTTON_UP:
                inj.mouse_button(ev.code, kind is InputKind.MOUSE_BUTTON_DOWN)
            case InputKind.MOUSE_SCROLL | InputKind.SCROLL:
                legacy = kind is InputKind.MOUSE_SCROLL
                steps = self._scroll.legacy(ev) if legacy else self._scroll.normalized(ev)
                if steps is None:
                    return "malformed scroll"
                if any(steps):
                    inj.scroll(*steps)
            case InputKind.TEXT_INPUT:
                if not (0 < ev.code < 0x110000 and not 0xD800 <= ev.code < 0xE000):
                    return "not a Unicode scalar"
                inj.text(chr(ev.code))
            case _:  # touch: this host has no touch surface (HOST_CAP2_TOUCH stays clear)
                return "touch is not served"
        return None

    def _pad(self, ev: InputEvent) -> str | None:
        pads = self._pads
        if ev.kind is InputKind.GAMEPAD_STATE:
            index, seq, state = native_state(ev.code, ev.x, ev.y, ev.flags)
            if index < MAX_PADS:
                self._held[index] = state
            pads.state(index, state, seq=seq)
        elif ev.kind is InputKind.GAMEPAD_ARRIVAL:
            pads.arrive(*native_arrival(ev.code, ev.flags))
        elif ev.kind is InputKind.GAMEPAD_REMOVE:
            index, seq = native_remove(ev.flags)
            self._held.pop(index, None)
            pads.remove(index, seq)
        else:
            index = ev.flags
            if index >= MAX_PADS:
                return "no such pad"
            state = fold(self._held.get(index, NEUTRAL), ev)
            if state is None:
                return "no such axis"
            self._held[index] = state
            pads.state(index, state)
        return None

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
