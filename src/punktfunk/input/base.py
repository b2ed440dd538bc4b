"""The InputInjector and PadManager seams."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable


class PadKind(IntEnum):
    XBOX360 = 0
    DUALSENSE = 1
    DUALSHOCK4 = 2


@dataclass(frozen=True)
class PadState:
    """A controller snapshot in XInput terms (what both wire protocols carry)."""

    buttons: int
    left_trigger: int
    right_trigger: int
    thumb_lx: int
    thumb_ly: int
    thumb_rx: int
    thumb_ry: int


@dataclass(frozen=True)
class PadFeedback:
    """Feedback a game sent to a pad, to be forwarded to the client."""

    index: int
    rumble_low: int = 0
    rumble_high: int = 0
    led_rgb: tuple[int, int, int] | None = None
    trigger_effect: bytes | None = None


@runtime_checkable
class InputInjector(Protocol):
    def key(self, vk: int, down: bool, modifiers: int) -> None:
        """A Windows virtual-key code press/release (the code clients send)."""

    def text(self, utf8: str) -> None: ...
    def mouse_move_rel(self, dx: int, dy: int) -> None: ...
    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        """A position on the client's surface, scaled to the display mode."""

    def mouse_button(self, button: int, down: bool) -> None: ...
    def scroll(self, vertical: int, horizontal: int) -> None: ...
    def release_all(self) -> None:
        """Release every key and button still held (session end)."""

    def close(self) -> None: ...


@runtime_checkable
class PadManager(Protocol):
    @property
    def available(self) -> bool:
        """False where virtual pads cannot exist here (e.g. no /dev/uinput); reason() says why."""

    def reason(self) -> str: ...
    def arrive(self, index: int, kind: PadKind) -> None: ...
    def update(self, index: int, state: PadState) -> None: ...
    def remove(self, index: int) -> None: ...
    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None: ...
    def close(self) -> None: ...
