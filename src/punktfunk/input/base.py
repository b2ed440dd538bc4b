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
    """Feedback a game sent to a pad, to be forwarded to the client.

    `rumble_low`/`rumble_high`: the low-frequency (large, left) and high-frequency (small,
    right) motors, 0..65535, always the pad's current rumble (GameStream 0x010b carries exactly
    these). `led_rgb` and `trigger_effect` are None unless the game changed them; an effect is
    `flags (0x04 right | 0x08 left) + right[11] + left[11]` DualSense trigger-effect bytes
    (type, then 10 parameters), the content of GameStream 0x5503. `player_leds` (low 5 bits)
    and `mic_led` (0 off, 1 on, 2 pulse) likewise, DualSense only (punktfunk/2 HID output).
    """

    index: int
    rumble_low: int = 0
    rumble_high: int = 0
    led_rgb: tuple[int, int, int] | None = None
    trigger_effect: bytes | None = None
    player_leds: int | None = None
    mic_led: int | None = None


@runtime_checkable
class InputInjector(Protocol):
    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        """A Windows virtual-key code press/release (the code clients send); `flags` is
        GameStream's keyboard flags byte (non-normalized: the VK names a symbol)."""

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
    """One session's virtual pads. Protocols reach it through `padroute.PadRouter`, which
    handles arrival defaults, unplug-by-mask and stale-state ordering; a manager only has to
    present what it is told. Calls for a pad that was never plugged are ignored."""

    @property
    def available(self) -> bool:
        """False where virtual pads cannot exist here (e.g. no /dev/uinput); reason() says why."""

    def reason(self) -> str: ...
    def arrive(self, index: int, kind: PadKind) -> None:
        """Plug pad `index` as `kind` (a plugged pad of another kind is replaced)."""

    def update(self, index: int, state: PadState) -> None: ...
    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        """Touchpad contact `finger` (0/1) at normalized (x, y) in [0, 1]; PlayStation pads."""

    def motion(
        self,
        index: int,
        accel: tuple[float, float, float] | None = None,
        gyro: tuple[float, float, float] | None = None,
    ) -> None:
        """Accelerometer (m/s^2) and/or gyroscope (deg/s) sample; PlayStation pads."""

    def battery(self, index: int, percent: int, charging: bool) -> None: ...
    def remove(self, index: int) -> None: ...
    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        """`callback` receives rumble/LED/trigger feedback, called from the manager's thread."""

    def close(self) -> None: ...
