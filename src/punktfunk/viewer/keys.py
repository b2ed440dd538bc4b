"""The viewer's input translation, without pygame: SDL values in, punktfunk/2 `InputEvent`s out.

Keys: punktfunk/2 sends Windows VKs *normalized to a US layout* (the VK names the physical key
by what it would type on a US keyboard; the host's layout picks the symbol, see
`input/vk.py`). SDL scancodes are USB HID usages, i.e. physical positions, so the table below
maps scancode -> US-positional VK; the local keyboard layout never enters. Keypad digits follow
the local NumLock like a Windows client does (VK_NUMPADn when on, the navigation VK when off).

Pads: SDL's GameController API gives every supported controller the Xbox layout, which is
what punktfunk's `GamepadSnapshot` carries (XInput `wButtons`, i16 sticks with Y up, u8
triggers); `snapshot_event` is the inverse of the host's `input.padroute.native_state`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..input.base import PadKind
from ..input.padroute import native_pref
from ..input.vk import MOD_ALT, MOD_CTRL, MOD_META, MOD_SHIFT
from ..native.wire.dgram import InputEvent, InputKind

# SDL_Scancode (SDL_scancode.h) -> US-positional Windows VK.
SCANCODE_VK: dict[int, int] = {
    **{4 + i: 0x41 + i for i in range(26)},  # A..Z
    **{30 + i: 0x31 + i for i in range(9)},  # 1..9
    39: 0x30,  # 0
    40: 0x0D, 41: 0x1B, 42: 0x08, 43: 0x09, 44: 0x20,  # Return Escape Backspace Tab Space
    45: 0xBD, 46: 0xBB, 47: 0xDB, 48: 0xDD, 49: 0xDC, 50: 0xDC,  # - = [ ] \ (ISO #)
    51: 0xBA, 52: 0xDE, 53: 0xC0, 54: 0xBC, 55: 0xBE, 56: 0xBF,  # ; ' ` , . /
    57: 0x14,  # CapsLock
    **{58 + i: 0x70 + i for i in range(12)},  # F1..F12
    70: 0x2C, 71: 0x91, 72: 0x13,  # PrintScreen ScrollLock Pause
    73: 0x2D, 74: 0x24, 75: 0x21, 76: 0x2E, 77: 0x23, 78: 0x22,  # Ins Home PgUp Del End PgDn
    79: 0x27, 80: 0x25, 81: 0x28, 82: 0x26,  # Right Left Down Up
    83: 0x90, 84: 0x6F, 85: 0x6A, 86: 0x6D, 87: 0x6B, 88: 0x0D,  # NumLock KP / * - + Enter
    **{89 + i: 0x61 + i for i in range(9)},  # KP 1..9
    98: 0x60, 99: 0x6E,  # KP 0, KP .
    100: 0xE2, 101: 0x5D,  # ISO \ (102nd key), Application (menu)
    **{104 + i: 0x7C + i for i in range(12)},  # F13..F24
    127: 0xAD, 128: 0xAF, 129: 0xAE,  # Mute VolumeUp VolumeDown
    135: 0xC1, 144: 0x15, 145: 0x19,  # Ro (INTERNATIONAL1), Hangul/Kana, Hanja
    224: 0xA2, 225: 0xA0, 226: 0xA4, 227: 0x5B,  # LCtrl LShift LAlt LGui
    228: 0xA3, 229: 0xA1, 230: 0xA5, 231: 0x5C,  # RCtrl RShift RAlt RGui
    258: 0xB0, 259: 0xB1, 260: 0xB2, 261: 0xB3, 262: 0xAD,  # media next prev stop play mute
}  # fmt: skip

# Keypad with NumLock off: what a Windows keyboard driver reports for those keys.
_KEYPAD_NAV = {
    89: 0x23, 90: 0x28, 91: 0x22, 92: 0x25, 93: 0x0C, 94: 0x27, 95: 0x24, 96: 0x26,
    97: 0x21, 98: 0x2D, 99: 0x2E,
}  # fmt: skip

# SDL_Keymod bits (SDL_keycode.h).
KMOD_SHIFT, KMOD_CTRL, KMOD_ALT, KMOD_GUI, KMOD_NUM = 0x0003, 0x00C0, 0x0300, 0x0C00, 0x1000


def scancode_vk(scancode: int, mod: int) -> int | None:
    """The US-positional VK of an SDL scancode (None: a key punktfunk/2 has no VK for)."""
    if not mod & KMOD_NUM and scancode in _KEYPAD_NAV:
        return _KEYPAD_NAV[scancode]
    return SCANCODE_VK.get(scancode)


def modifier_flags(mod: int) -> int:
    """SDL modifier state -> the key event's modifier byte (shift 1, ctrl 2, alt 4, meta 8)."""
    flags = MOD_SHIFT if mod & KMOD_SHIFT else 0
    flags |= MOD_CTRL if mod & KMOD_CTRL else 0
    flags |= MOD_ALT if mod & KMOD_ALT else 0
    return flags | (MOD_META if mod & KMOD_GUI else 0)


def key_event(vk: int, down: bool, mod: int) -> InputEvent:
    kind = InputKind.KEY_DOWN if down else InputKind.KEY_UP
    return InputEvent(kind, code=vk, flags=modifier_flags(mod))


# Mouse: pygame numbers X1/X2 6 and 7 (4 and 5 are the legacy wheel); the wire uses
# 1 left, 2 middle, 3 right, 4 X1, 5 X2.
PYGAME_BUTTONS = {1: 1, 2: 2, 3: 3, 6: 4, 7: 5}
WHEEL_DELTA = 120


def button_event(pygame_button: int, down: bool) -> InputEvent | None:
    button = PYGAME_BUTTONS.get(pygame_button)
    if button is None:
        return None
    kind = InputKind.MOUSE_BUTTON_DOWN if down else InputKind.MOUSE_BUTTON_UP
    return InputEvent(kind, code=button)


def wheel_events(dx: float, dy: float) -> list[InputEvent]:
    """SDL wheel motion (y > 0 away from the user, x > 0 right) as MOUSE_SCROLL events in
    1/120 notches, one per axis that moved (`input.rs`: code = axis, 0 vertical, 1 horizontal;
    x = the delta, positive up / right)."""
    steps = ((0, round(dy * WHEEL_DELTA)), (1, round(dx * WHEEL_DELTA)))
    return [InputEvent(InputKind.MOUSE_SCROLL, code=axis, x=v) for axis, v in steps if v]


@dataclass(frozen=True)
class Viewport:
    """Where the stream is drawn in the window: scaled to fit, aspect kept, centred."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def fit(cls, stream: tuple[int, int], window: tuple[int, int]) -> Viewport:
        sw, sh = stream
        ww, wh = window
        if sw <= 0 or sh <= 0 or ww <= 0 or wh <= 0:
            return cls(0, 0, max(ww, 0), max(wh, 0))
        if ww * sh <= wh * sw:  # the window is narrower: full width, bars above and below
            w, h = ww, max(1, round(ww * sh / sw))
        else:
            w, h = max(1, round(wh * sw / sh)), wh
        return cls((ww - w) // 2, (wh - h) // 2, w, h)

    def to_stream(self, pos: tuple[int, int], stream: tuple[int, int]) -> tuple[int, int]:
        """A window position -> the stream surface's pixel under it (clamped to the surface)."""
        sw, sh = stream
        fx = (pos[0] - self.x) * sw / self.width if self.width else 0
        fy = (pos[1] - self.y) * sh / self.height if self.height else 0
        return min(max(int(fx), 0), sw - 1), min(max(int(fy), 0), sh - 1)


def move_abs_event(pos: tuple[int, int], stream: tuple[int, int]) -> InputEvent:
    """MOUSE_MOVE_ABS at `pos` on a surface of the stream's size (`input.rs`: flags = width << 16
    | height)."""
    return InputEvent(
        InputKind.MOUSE_MOVE_ABS, x=pos[0], y=pos[1], flags=(stream[0] << 16) | stream[1]
    )


# --- gamepads -------------------------------------------------------------------------------

# SDL_GameControllerButton -> XInput wButtons bit.
CONTROLLER_BUTTON_BITS = {
    0: 0x1000, 1: 0x2000, 2: 0x4000, 3: 0x8000,  # A B X Y
    4: 0x0020, 5: 0x0400, 6: 0x0010,  # Back Guide Start
    7: 0x0040, 8: 0x0080, 9: 0x0100, 10: 0x0200,  # LStick RStick LShoulder RShoulder
    11: 0x0001, 12: 0x0002, 13: 0x0004, 14: 0x0008,  # DPad up down left right
}  # fmt: skip
AXIS_LX, AXIS_LY, AXIS_RX, AXIS_RY, AXIS_LT, AXIS_RT = range(6)


@dataclass
class PadSnapshot:
    """One pad's state in SDL terms (axes -32768..32767, Y down; triggers 0..32767)."""

    buttons: int = 0
    axes: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)


def _i16_up(value: int) -> int:
    """An SDL Y axis (down positive) -> XInput (up positive), within i16."""
    return min(32767, max(-32768, -value))


def _trigger(value: int) -> int:
    return min(255, max(0, value) * 255 // 32767)


def _u16(value: int) -> int:
    return min(32767, max(-32768, value)) & 0xFFFF


def _i32(value: int) -> int:
    return value - (1 << 32) if value & 0x8000_0000 else value


def buttons_mask(pressed: set[int]) -> int:
    mask = 0
    for button in pressed:
        mask |= CONTROLLER_BUTTON_BITS.get(button, 0)
    return mask


def snapshot_event(pad: int, seq: int, snap: PadSnapshot) -> InputEvent:
    """GAMEPAD_STATE as punktfunk's `GamepadSnapshot`: code = buttons,
    x = ls_x<<16 | ls_y, y = rs_x<<16 | rs_y, flags = seq<<24 | lt<<16 | rt<<8 | pad."""
    lx, ly, rx, ry, lt, rt = snap.axes
    x = (_u16(lx) << 16) | _u16(_i16_up(ly))
    y = (_u16(rx) << 16) | _u16(_i16_up(ry))
    flags = (seq & 0xFF) << 24 | _trigger(lt) << 16 | _trigger(rt) << 8 | (pad & 0xFF)
    return InputEvent(InputKind.GAMEPAD_STATE, code=snap.buttons, x=_i32(x), y=_i32(y), flags=flags)


def pad_kind(name: str) -> PadKind:
    """Which virtual pad the host should plug for a controller, by its SDL name."""
    lowered = name.lower()
    if "dualsense" in lowered or "ps5" in lowered:
        return PadKind.DUALSENSE
    if "ps4" in lowered or "dualshock 4" in lowered:
        return PadKind.DUALSHOCK4
    return PadKind.XBOX360


def arrival_event(pad: int, kind: PadKind) -> InputEvent:
    return InputEvent(InputKind.GAMEPAD_ARRIVAL, code=native_pref(kind), flags=pad & 0xFF)


def removal_event(pad: int) -> InputEvent:
    return InputEvent(InputKind.GAMEPAD_REMOVE, flags=pad & 0xFF)
