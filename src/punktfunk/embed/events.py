"""Typed input events an embedded app receives from its client (either protocol).

Keys come as what the wire carries, a US-positional Windows virtual key, named here (`key`:
"a".."z", "0".."9", "f1".."f24", "space", "enter", "left", ...), with its Linux evdev
`scancode` (0 where the key has no position) and the `text` it types on a US layout ("" for
keys that type nothing). Pointer positions are in the program's pixels (the session's mode).
Gamepad buttons and axes are named as on an Xbox pad; sticks in -1..1 (up is +1), triggers 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass

# XInput button bits (what both protocols carry) -> names.
PAD_BUTTONS: dict[int, str] = {
    0x0001: "dpad_up", 0x0002: "dpad_down", 0x0004: "dpad_left", 0x0008: "dpad_right",
    0x0010: "start", 0x0020: "back", 0x0040: "left_stick", 0x0080: "right_stick",
    0x0100: "lb", 0x0200: "rb", 0x0400: "guide", 0x1000: "a", 0x2000: "b", 0x4000: "x",
    0x8000: "y",
}  # fmt: skip

# Mouse buttons as the protocols number them.
MOUSE_BUTTONS = {1: "left", 2: "middle", 3: "right", 4: "x1", 5: "x2"}

_VK_NAMES: dict[int, str] = {
    0x08: "backspace", 0x09: "tab", 0x0D: "enter", 0x10: "shift", 0x11: "ctrl", 0x12: "alt",
    0x13: "pause", 0x14: "capslock", 0x1B: "escape", 0x20: "space", 0x21: "pageup",
    0x22: "pagedown", 0x23: "end", 0x24: "home", 0x25: "left", 0x26: "up", 0x27: "right",
    0x28: "down", 0x2C: "printscreen", 0x2D: "insert", 0x2E: "delete", 0x5B: "lwin",
    0x5C: "rwin", 0x5D: "menu", 0xA0: "lshift", 0xA1: "rshift", 0xA2: "lctrl", 0xA3: "rctrl",
    0xA4: "lalt", 0xA5: "ralt", 0xBA: "semicolon", 0xBB: "equals", 0xBC: "comma",
    0xBD: "minus", 0xBE: "period", 0xBF: "slash", 0xC0: "grave", 0xDB: "lbracket",
    0xDC: "backslash", 0xDD: "rbracket", 0xDE: "apostrophe",
    **{0x30 + i: str(i) for i in range(10)},
    **{0x41 + i: chr(ord("a") + i) for i in range(26)},
    **{0x60 + i: f"kp{i}" for i in range(10)},
    **{0x70 + i: f"f{i + 1}" for i in range(24)},
}  # fmt: skip
_US_TEXT = {"space": " ", "enter": "\n", "tab": "\t", "semicolon": ";", "equals": "=",
            "comma": ",", "minus": "-", "period": ".", "slash": "/", "grave": "`",
            "lbracket": "[", "backslash": "\\", "rbracket": "]", "apostrophe": "'"}  # fmt: skip
_US_SHIFTED = dict(zip("1234567890;=,-./`[\\]'", '!@#$%^&*():+<_>?~{|}"', strict=True))


def key_name(vk: int) -> str:
    return _VK_NAMES.get(vk, f"vk_{vk:02x}")


def key_text(name: str, shift: bool) -> str:
    """What the key types on a US layout ("" for a key that types nothing)."""
    if len(name) == 1:
        if name.isalpha():
            return name.upper() if shift else name
        return _US_SHIFTED.get(name, name) if shift else name
    text = _US_TEXT.get(name, "")
    return _US_SHIFTED.get(text, text) if shift and len(text) == 1 else text


@dataclass(frozen=True)
class KeyEvent:
    key: str
    scancode: int
    text: str
    down: bool
    modifiers: frozenset[str]
    vk: int


@dataclass(frozen=True)
class PointerMove:
    x: int
    y: int
    dx: int
    dy: int


@dataclass(frozen=True)
class Button:
    button: str
    down: bool
    x: int
    y: int


@dataclass(frozen=True)
class Scroll:
    """Wheel movement in detents (1.0 = one notch); positive is up / right."""

    vertical: float
    horizontal: float


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Touch:
    """A touch on a pad's touchpad, normalized to 0..1."""

    pad: int
    finger: int
    active: bool
    x: float
    y: float


@dataclass(frozen=True)
class GamepadState:
    pad: int
    buttons: frozenset[str]
    axes: dict[str, float]
    connected: bool = True

    def pressed(self, name: str) -> bool:
        return name in self.buttons


InputEvent = KeyEvent | PointerMove | Button | Scroll | Text | Touch | GamepadState
