"""Input through the RemoteDesktop portal (`attach:portal` on GNOME or KDE, where the
compositor has no wlroots virtual input): keys as evdev keycodes, text as keysyms (the desktop
finds the key and level in its own layout), the pointer in the granted stream's coordinates.
Each call is a `Notify*` message sent without waiting (`wayland/portal.py` `notify`).
"""

from __future__ import annotations

import logging
import threading

from ..log import event
from ..wayland.portal import DEVICE_KEYBOARD, DEVICE_POINTER, ScreenCast
from .vk import BUTTON_EVDEV, KEY_FLAG_NON_NORMALIZED, VK_EVDEV, WHEEL_DELTA, char_keysym

_log = logging.getLogger("punktfunk.input")
_PRESSED, _RELEASED = 1, 0
_VERTICAL, _HORIZONTAL = 0, 1


class PortalInjector:
    def __init__(self, cast: ScreenCast, width: int, height: int) -> None:
        """`width` x `height`: the stream's logical size, which absolute positions use."""
        self._cast = cast
        self._size = (width, height)
        self._lock = threading.Lock()
        self._keys: set[int] = set()
        self._buttons: set[int] = set()
        self._scroll = [0, 0]
        self._keyboard = bool(cast.devices & DEVICE_KEYBOARD)
        self._pointer = bool(cast.devices & DEVICE_POINTER)

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        evdev = None if flags & KEY_FLAG_NON_NORMALIZED else VK_EVDEV.get(vk & 0xFF)
        if evdev is None or not self._keyboard:
            event(_log, "input.portal.unknown_vk", logging.DEBUG, vk=hex(vk))
            return
        with self._lock:
            (self._keys.add if down else self._keys.discard)(evdev)
        self._cast.notify("NotifyKeyboardKeycode", "iu", evdev, _PRESSED if down else _RELEASED)

    def text(self, utf8: str) -> None:
        if not self._keyboard:
            return
        for char in utf8:
            if not char.isprintable() and char not in "\n\r\t":
                continue
            keysym = char_keysym(char)
            self._cast.notify("NotifyKeyboardKeysym", "iu", keysym, _PRESSED)
            self._cast.notify("NotifyKeyboardKeysym", "iu", keysym, _RELEASED)

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        if self._pointer:
            self._cast.notify("NotifyPointerMotion", "dd", float(dx), float(dy))

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        if not self._pointer or surface_w <= 1 or surface_h <= 1:
            return
        width, height = self._size
        px = min(max(x, 0), surface_w - 1) * (width - 1) / (surface_w - 1)
        py = min(max(y, 0), surface_h - 1) * (height - 1) / (surface_h - 1)
        self._cast.notify("NotifyPointerMotionAbsolute", "udd", self._cast.stream.node_id, px, py)

    def mouse_button(self, button: int, down: bool) -> None:
        code = BUTTON_EVDEV.get(button)
        if code is None or not self._pointer:
            return
        with self._lock:
            (self._buttons.add if down else self._buttons.discard)(code)
        self._cast.notify("NotifyPointerButton", "iu", code, _PRESSED if down else _RELEASED)

    def scroll(self, vertical: int, horizontal: int) -> None:
        """1/120 notches, vertical > 0 up: the portal's steps grow down and right."""
        if not self._pointer:
            return
        with self._lock:
            steps = []
            for axis, amount, sign in ((_VERTICAL, vertical, -1), (_HORIZONTAL, horizontal, 1)):
                total = self._scroll[axis] + amount
                notches = int(total / WHEEL_DELTA)
                self._scroll[axis] = total - notches * WHEEL_DELTA
                if notches:
                    steps.append((axis, sign * notches))
        for axis, count in steps:
            self._cast.notify("NotifyPointerAxisDiscrete", "ui", axis, count)

    def release_all(self) -> None:
        with self._lock:
            keys, self._keys = sorted(self._keys), set()
            buttons, self._buttons = sorted(self._buttons), set()
        for code in keys:
            self._cast.notify("NotifyKeyboardKeycode", "iu", code, _RELEASED)
        for code in buttons:
            self._cast.notify("NotifyPointerButton", "iu", code, _RELEASED)

    def close(self) -> None:
        """The portal session belongs to the lease, which closes it."""
