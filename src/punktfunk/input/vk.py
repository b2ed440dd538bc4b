"""Windows virtual-key codes (what both wire protocols send) as key positions and X keysyms.

Both protocols send VKs *normalized to a US layout*: the VK names the physical key by what it
would type on a US keyboard (Moonlight derives it from the scancode; punktfunk/2's `input.rs`
maps evdev -> "US-positional VK" and expects the host to map it back). So a VK is first a key
position (`VK_EVDEV`: the Linux evdev code of that key, X keycode = evdev + 8), and the host's
layout decides the symbol: VK_Y on a German layout types `z`, VK_OEM_7 types `ä`. That is what
Sunshine does (US scancode unless the client flags the VK non-normalized).

A VK the client flagged `KEY_FLAG_NON_NORMALIZED` (GameStream flags 0x01), or one without a
position, names a key by meaning instead (`VK_KEYSYMS`). Each entry lists candidate keysyms,
preferred first: the injector presses the first one the display's keymap produces without
modifiers, and otherwise binds the first one (with its US shifted keysym) to a spare keycode.
Modifier VKs have alternatives so that, e.g., right Alt becomes AltGr on layouts without Alt_R.
"""

from __future__ import annotations

import re

from Xlib import XK

XK.load_keysym_group("xf86")
XK.load_keysym_group("xkb")  # ISO_Level3_Shift

# GameStream modifier flags sent with every key event.
MOD_SHIFT = 0x01
MOD_CTRL = 0x02
MOD_ALT = 0x04
MOD_META = 0x08

# GameStream keyboard flag (Sunshine's SS_KBE_FLAG_NON_NORMALIZED): the VK is not US-positional.
KEY_FLAG_NON_NORMALIZED = 0x01

_NAMED: dict[int, tuple[str, ...]] = {
    0x08: ("BackSpace",),
    0x09: ("Tab",),
    0x0C: ("Clear",),
    0x0D: ("Return",),
    0x10: ("Shift_L",),
    0x11: ("Control_L",),
    0x12: ("Alt_L",),
    0x13: ("Pause",),
    0x14: ("Caps_Lock",),
    0x1B: ("Escape",),
    0x1C: ("Henkan",),
    0x1D: ("Muhenkan",),
    0x20: ("space",),
    0x21: ("Prior",),
    0x22: ("Next",),
    0x23: ("End",),
    0x24: ("Home",),
    0x25: ("Left",),
    0x26: ("Up",),
    0x27: ("Right",),
    0x28: ("Down",),
    0x29: ("Select",),
    0x2A: ("Print",),
    0x2B: ("Execute",),
    0x2C: ("Print",),
    0x2D: ("Insert",),
    0x2E: ("Delete",),
    0x2F: ("Help",),
    0x5B: ("Super_L",),
    0x5C: ("Super_R", "Super_L"),
    0x5D: ("Menu",),
    0x5F: ("XF86_Sleep",),
    0x6A: ("KP_Multiply",),
    0x6B: ("KP_Add",),
    0x6C: ("KP_Separator",),
    0x6D: ("KP_Subtract",),
    0x6E: ("KP_Decimal",),
    0x6F: ("KP_Divide",),
    0x90: ("Num_Lock",),
    0x91: ("Scroll_Lock",),
    0xA0: ("Shift_L",),
    0xA1: ("Shift_R", "Shift_L"),
    0xA2: ("Control_L",),
    0xA3: ("Control_R", "Control_L"),
    0xA4: ("Alt_L",),
    0xA5: ("Alt_R", "ISO_Level3_Shift", "Alt_L"),
    0xA6: ("XF86_Back",),
    0xA7: ("XF86_Forward",),
    0xA8: ("XF86_Refresh",),
    0xA9: ("XF86_Stop",),
    0xAA: ("XF86_Search",),
    0xAB: ("XF86_Favorites",),
    0xAC: ("XF86_HomePage",),
    0xAD: ("XF86_AudioMute",),
    0xAE: ("XF86_AudioLowerVolume",),
    0xAF: ("XF86_AudioRaiseVolume",),
    0xB0: ("XF86_AudioNext",),
    0xB1: ("XF86_AudioPrev",),
    0xB2: ("XF86_AudioStop",),
    0xB3: ("XF86_AudioPlay",),
    0xB4: ("XF86_Mail",),
}

# Printable keys: (unshifted, shifted) as on a US keyboard.
_PAIRS: dict[int, tuple[str, str]] = {
    0x30: ("0", "parenright"),
    0x31: ("1", "exclam"),
    0x32: ("2", "at"),
    0x33: ("3", "numbersign"),
    0x34: ("4", "dollar"),
    0x35: ("5", "percent"),
    0x36: ("6", "asciicircum"),
    0x37: ("7", "ampersand"),
    0x38: ("8", "asterisk"),
    0x39: ("9", "parenleft"),
    0xBA: ("semicolon", "colon"),
    0xBB: ("equal", "plus"),
    0xBC: ("comma", "less"),
    0xBD: ("minus", "underscore"),
    0xBE: ("period", "greater"),
    0xBF: ("slash", "question"),
    0xC0: ("grave", "asciitilde"),
    0xDB: ("bracketleft", "braceleft"),
    0xDC: ("backslash", "bar"),
    0xDD: ("bracketright", "braceright"),
    0xDE: ("apostrophe", "quotedbl"),
    0xE2: ("less", "greater"),
}


def _sym(name: str) -> int:
    keysym = XK.string_to_keysym(name)
    if keysym == XK.NoSymbol:
        raise ValueError(f"unknown keysym name {name!r}")
    return keysym


def _build() -> dict[int, tuple[tuple[int, ...], int]]:
    table: dict[int, tuple[tuple[int, ...], int]] = {}
    for vk, names in _NAMED.items():
        syms = tuple(_sym(n) for n in names)
        table[vk] = (syms, syms[0])
    for vk, (plain, shifted) in _PAIRS.items():
        table[vk] = ((_sym(plain),), _sym(shifted))
    for i in range(26):  # VK_A..VK_Z
        table[0x41 + i] = ((ord("a") + i,), ord("A") + i)
    for i in range(10):  # VK_NUMPAD0..9 (sent only while NumLock is on)
        kp = _sym(f"KP_{i}")
        table[0x60 + i] = ((kp,), kp)
    for i in range(24):  # VK_F1..VK_F24
        fk = _sym(f"F{i + 1}")
        table[0x70 + i] = ((fk,), fk)
    return table


# VK -> (candidate keysyms, preferred first; the US shifted keysym for a spare binding)
VK_KEYSYMS = _build()

# Modifier flag -> the keysyms that count as holding it, and the one to press to sync it.
MODIFIER_KEYSYMS: dict[int, tuple[frozenset[int], int]] = {
    MOD_SHIFT: (frozenset({_sym("Shift_L"), _sym("Shift_R")}), _sym("Shift_L")),
    MOD_CTRL: (frozenset({_sym("Control_L"), _sym("Control_R")}), _sym("Control_L")),
    MOD_ALT: (frozenset({_sym("Alt_L"), _sym("Alt_R")}), _sym("Alt_L")),
    MOD_META: (frozenset({_sym("Super_L"), _sym("Super_R")}), _sym("Super_L")),
}
ALL_MODIFIER_KEYSYMS = frozenset().union(*(syms for syms, _ in MODIFIER_KEYSYMS.values())) | {
    _sym("ISO_Level3_Shift")
}


def char_keysym(char: str) -> int:
    """The keysym that types `char`: Latin-1 keysyms equal the code point, others are Unicode."""
    cp = ord(char)
    if char == "\n" or char == "\r":
        return _sym("Return")
    if char == "\t":
        return _sym("Tab")
    if char == "\b":
        return _sym("BackSpace")
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    return 0x01000000 + cp


WHEEL_DELTA = 120  # one wheel notch, in the units clients send
# Client mouse button (1 left, 2 middle, 3 right, 4 back, 5 forward) -> evdev BTN_* code.
BUTTON_EVDEV = {1: 0x110, 2: 0x112, 3: 0x111, 4: 0x113, 5: 0x114}

# US-positional VK -> Linux evdev key code (linux/input-event-codes.h). Numpad digits are left
# out on purpose: a client sends VK_NUMPADn only while *its* NumLock is on, and the host's
# NumLock state is not synced, so the digit is produced by keysym (KP_n) instead of by a key
# whose meaning depends on the host's NumLock.
VK_EVDEV: dict[int, int] = {
    0x08: 14, 0x09: 15, 0x0D: 28, 0x13: 119, 0x14: 58, 0x1B: 1, 0x20: 57,  # BS Tab Enter ..
    0x21: 104, 0x22: 109, 0x23: 107, 0x24: 102,  # PgUp PgDn End Home
    0x25: 105, 0x26: 103, 0x27: 106, 0x28: 108,  # arrows
    0x2C: 99, 0x2D: 110, 0x2E: 111,  # PrintScreen (SysRq) Insert Delete
    0x30: 11, **{0x31 + i: 2 + i for i in range(9)},  # 0, 1..9
    0x41: 30, 0x42: 48, 0x43: 46, 0x44: 32, 0x45: 18, 0x46: 33, 0x47: 34, 0x48: 35,
    0x49: 23, 0x4A: 36, 0x4B: 37, 0x4C: 38, 0x4D: 50, 0x4E: 49, 0x4F: 24, 0x50: 25,
    0x51: 16, 0x52: 19, 0x53: 31, 0x54: 20, 0x55: 22, 0x56: 47, 0x57: 17, 0x58: 45,
    0x59: 21, 0x5A: 44,  # A..Z in VK order, at their QWERTY positions
    0x5B: 125, 0x5C: 126, 0x5D: 127,  # LWin RWin Apps
    0x6A: 55, 0x6B: 78, 0x6C: 96, 0x6D: 74, 0x6E: 83, 0x6F: 98,  # keypad operators
    **{0x70 + i: 59 + i for i in range(10)}, 0x7A: 87, 0x7B: 88,  # F1..F12
    **{0x7C + i: 183 + i for i in range(12)},  # F13..F24
    0x90: 69, 0x91: 70,  # NumLock ScrollLock
    0x10: 42, 0x11: 29, 0x12: 56,  # generic Shift/Ctrl/Alt: the left keys
    0xA0: 42, 0xA1: 54, 0xA2: 29, 0xA3: 97, 0xA4: 56, 0xA5: 100,  # L/R Shift Ctrl Alt
    0xBA: 39, 0xBB: 13, 0xBC: 51, 0xBD: 12, 0xBE: 52, 0xBF: 53, 0xC0: 41,  # OEM punctuation
    0xDB: 26, 0xDC: 43, 0xDD: 27, 0xDE: 40, 0xE2: 86,
    0x15: 122, 0x19: 123, 0x1C: 92, 0x1D: 94, 0xF2: 93, 0xF3: 85, 0xC1: 89, 0xC2: 121,  # IME
    0xE1: 124,
}  # fmt: skip

# VKs that are modifiers themselves (no modifier sync before pressing them).
MODIFIER_VKS = frozenset({0x10, 0x11, 0x12, 0x5B, 0x5C, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5})

# --- the client side of the same contract (punktfunk's `input.rs`) ------------------------

# Numpad digits: a client sends VK_NUMPADn for the keypad key (the host types them by keysym).
_NUMPAD_EVDEV = {0x60: 82, 0x61: 79, 0x62: 80, 0x63: 81, 0x64: 75, 0x65: 76, 0x66: 77,
                 0x67: 71, 0x68: 72, 0x69: 73}  # fmt: skip
# `evdev_to_vk`: the host table inverted. Generic modifiers collapse onto the left keys there
# and F13-F24 are outside the wire contract, so neither is produced from an evdev code.
EVDEV_VK: dict[int, int] = {
    evdev: vk
    for vk, evdev in (*VK_EVDEV.items(), *_NUMPAD_EVDEV.items())
    if vk not in (0x10, 0x11, 0x12) and not 0x7C <= vk <= 0x87
}


def evdev_to_vk(evdev: int) -> int | None:
    """The US-positional VK a client sends for a Linux evdev key code; None for a key the
    wire contract does not cover (media keys)."""
    return EVDEV_VK.get(evdev)


# `input.rs` KEY_NAMES: every key name outside the computed a-z, 0-9 and f1-f24.
KEY_NAMES: dict[str, int] = {
    "ctrl": 0x11, "control": 0x11, "shift": 0x10, "alt": 0x12, "option": 0x12, "win": 0x5B,
    "cmd": 0x5B, "super": 0x5B, "meta": 0x5B, "escape": 0x1B, "esc": 0x1B, "tab": 0x09,
    "enter": 0x0D, "return": 0x0D, "space": 0x20, "backspace": 0x08, "delete": 0x2E,
    "del": 0x2E, "insert": 0x2D, "home": 0x24, "end": 0x23, "pageup": 0x21, "pagedown": 0x22,
    "up": 0x26, "down": 0x28, "left": 0x25, "right": 0x27, "printscreen": 0x2C, "pause": 0x13,
    "capslock": 0x14,
}  # fmt: skip
_FN = re.compile(r"f\+?([0-9]+)")


def key_vk(name: str) -> int | None:
    """The VK of a stored key name (`input.rs` `key_vk`: a shortcut preset names keys, the wire
    carries VKs); None for a name this build does not know."""
    n = "".join(c.lower() if c.isascii() else c for c in name.strip())
    if n in KEY_NAMES:
        return KEY_NAMES[n]
    if len(n) == 1 and ("a" <= n <= "z" or "0" <= n <= "9"):
        return ord(n.upper())
    fn = _FN.fullmatch(n)
    if fn is not None and 1 <= int(fn.group(1)) <= 24:
        return 0x6F + int(fn.group(1))
    return None
