"""The input seams for an embedded app: instead of X or uinput, events go to the program.

`AppInjector` is the session's `InputInjector`, `AppPads` its `PadManager`; both turn what the
protocol decoded into the typed events of `events.py` and hand them to `emit` (the session's
queue and callbacks). Rumble the program asks for goes back through the pad feedback callback
the protocol registered, exactly as a game's rumble on a virtual pad would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..input.base import PadFeedback, PadKind, PadState
from ..input.vk import MOD_ALT, MOD_CTRL, MOD_META, MOD_SHIFT, VK_EVDEV
from .events import (
    MOUSE_BUTTONS,
    PAD_BUTTONS,
    Button,
    GamepadState,
    InputEvent,
    KeyEvent,
    PointerMove,
    Scroll,
    Text,
    Touch,
    key_name,
    key_text,
)

Emit = Callable[[InputEvent], None]
_MODS = ((MOD_SHIFT, "shift"), (MOD_CTRL, "ctrl"), (MOD_ALT, "alt"), (MOD_META, "meta"))
_WHEEL = 120.0  # one detent in the protocols' units


class AppInjector:
    """`InputInjector` that emits typed events in the program's pixel coordinates."""

    def __init__(self, width: int, height: int, emit: Emit) -> None:
        self.width, self.height = width, height
        self._emit = emit
        self.x, self.y = width // 2, height // 2
        self._held_keys: set[int] = set()
        self._held_buttons: set[int] = set()

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        name = key_name(vk)
        mods = frozenset(n for bit, n in _MODS if modifiers & bit)
        text = key_text(name, "shift" in mods) if down and not mods - {"shift"} else ""
        (self._held_keys.add if down else self._held_keys.discard)(vk)
        self._emit(KeyEvent(name, VK_EVDEV.get(vk, 0), text, down, mods, vk))

    def text(self, utf8: str) -> None:
        self._emit(Text(utf8))

    def _move_to(self, x: int, y: int) -> None:
        x, y = min(max(x, 0), self.width - 1), min(max(y, 0), self.height - 1)
        dx, dy, self.x, self.y = x - self.x, y - self.y, x, y
        self._emit(PointerMove(x, y, dx, dy))

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        self._move_to(self.x + dx, self.y + dy)

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        self._move_to(x * self.width // max(1, surface_w), y * self.height // max(1, surface_h))

    def mouse_button(self, button: int, down: bool) -> None:
        (self._held_buttons.add if down else self._held_buttons.discard)(button)
        self._emit(Button(MOUSE_BUTTONS.get(button, f"button{button}"), down, self.x, self.y))

    def scroll(self, vertical: int, horizontal: int) -> None:
        self._emit(Scroll(vertical / _WHEEL, horizontal / _WHEEL))

    def release_all(self) -> None:
        for vk in sorted(self._held_keys):
            self.key(vk, False, 0)
        for button in sorted(self._held_buttons):
            self.mouse_button(button, False)

    def close(self) -> None:
        self.release_all()


def pad_state(index: int, state: PadState) -> GamepadState:
    buttons = frozenset(name for bit, name in PAD_BUTTONS.items() if state.buttons & bit)
    axes = {
        "left_x": state.thumb_lx / 32767, "left_y": state.thumb_ly / 32767,
        "right_x": state.thumb_rx / 32767, "right_y": state.thumb_ry / 32767,
        "left_trigger": state.left_trigger / 255, "right_trigger": state.right_trigger / 255,
    }  # fmt: skip
    return GamepadState(index, buttons, {k: max(-1.0, min(1.0, v)) for k, v in axes.items()})


class AppPads:
    """`PadManager` whose pads are the program's: states become `GamepadState` events."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._plugged: set[int] = set()
        self._feedback: Callable[[PadFeedback], None] | None = None
        self._timers: list[threading.Timer] = []
        self._rumble: dict[int, tuple[int, int]] = {}  # feedback carries the current rumble

    @property
    def available(self) -> bool:
        return True

    def reason(self) -> str:
        return ""

    def arrive(self, index: int, kind: PadKind) -> None:
        with self._lock:
            self._plugged.add(index)
        self._emit(pad_state(index, PadState(0, 0, 0, 0, 0, 0, 0)))

    def update(self, index: int, state: PadState) -> None:
        with self._lock:
            if index not in self._plugged:
                return
        self._emit(pad_state(index, state))

    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        self._emit(Touch(index, finger, active, x, y))

    def motion(
        self,
        index: int,
        accel: tuple[float, float, float] | None = None,
        gyro: tuple[float, float, float] | None = None,
    ) -> None:
        return  # not part of the embedding API yet

    def battery(self, index: int, percent: int, charging: bool) -> None:
        return

    def remove(self, index: int) -> None:
        with self._lock:
            if index not in self._plugged:
                return
            self._plugged.discard(index)
        self._emit(GamepadState(index, frozenset(), {}, connected=False))

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._feedback = callback

    def rumble(self, index: int, low: float, high: float, ms: int) -> bool:
        """Drive pad `index`'s motors (0..1) for `ms`; False where the protocol took no
        feedback callback (nothing can reach the client)."""
        feedback = self._feedback
        if feedback is None:
            return False

        def level(v: float) -> int:
            return round(max(0.0, min(1.0, v)) * 65535)

        def send(low: int, high: int) -> None:
            with self._lock:
                self._rumble[index] = (low, high)
            feedback(PadFeedback(index, low, high))

        send(level(low), level(high))
        if ms > 0:
            timer = threading.Timer(ms / 1000, lambda: send(0, 0))
            timer.daemon = True
            with self._lock:
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
        return True

    def led(self, index: int, r: int, g: int, b: int) -> bool:
        """Set pad `index`'s lightbar (0..255 each); False where no feedback reaches a client."""
        feedback = self._feedback
        if feedback is None:
            return False
        rgb = (max(0, min(255, r)), max(0, min(255, g)), max(0, min(255, b)))
        with self._lock:
            low, high = self._rumble.get(index, (0, 0))
        feedback(PadFeedback(index, low, high, led_rgb=rgb))
        return True

    def close(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
