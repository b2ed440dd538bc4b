"""Input through the RemoteDesktop portal (`attach:portal` on GNOME or KDE, where the
compositor has no wlroots virtual input): keys as evdev keycodes, text as keysyms (the desktop
finds the key and level in its own layout), the pointer in the granted stream's coordinates.
Calls go out one at a time from a sender thread, each answered before the next (the portal
would reorder concurrent ones); input threads only queue, and consecutive absolute motions
collapse to the newest, so a slow desktop delays the pointer, never the keys behind it.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from ..log import event
from ..wayland.portal import DEVICE_KEYBOARD, DEVICE_POINTER, PortalError, ScreenCast
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
        self._queue: collections.deque[tuple[str, str, tuple[Any, ...]]] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="portal-input", daemon=True)
        self._sender.start()

    def _notify(self, method: str, signature: str, *args: Any) -> None:
        with self._wake:
            if self._closed:
                return
            motion = method == "NotifyPointerMotionAbsolute"
            if motion and self._queue and self._queue[-1][0] == method:
                self._queue[-1] = (method, signature, args)  # only the newest position counts
            else:
                self._queue.append((method, signature, args))
            self._wake.notify()

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                method, signature, args = self._queue.popleft()
            try:
                self._cast.notify(method, signature, *args)
            except (PortalError, OSError, TimeoutError) as exc:
                event(_log, "input.portal_failed", logging.WARNING, call=method, reason=exc)

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        evdev = None if flags & KEY_FLAG_NON_NORMALIZED else VK_EVDEV.get(vk & 0xFF)
        if evdev is None or not self._keyboard:
            event(_log, "input.portal.unknown_vk", logging.DEBUG, vk=hex(vk))
            return
        with self._lock:
            (self._keys.add if down else self._keys.discard)(evdev)
        self._notify("NotifyKeyboardKeycode", "iu", evdev, _PRESSED if down else _RELEASED)

    def text(self, utf8: str) -> None:
        if not self._keyboard:
            return
        for char in utf8:
            if not char.isprintable() and char not in "\n\r\t":
                continue
            keysym = char_keysym(char)
            self._notify("NotifyKeyboardKeysym", "iu", keysym, _PRESSED)
            self._notify("NotifyKeyboardKeysym", "iu", keysym, _RELEASED)

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        if self._pointer:
            self._notify("NotifyPointerMotion", "dd", float(dx), float(dy))

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        if not self._pointer or surface_w <= 1 or surface_h <= 1:
            return
        width, height = self._size
        px = min(max(x, 0), surface_w - 1) * (width - 1) / (surface_w - 1)
        py = min(max(y, 0), surface_h - 1) * (height - 1) / (surface_h - 1)
        self._notify("NotifyPointerMotionAbsolute", "udd", self._cast.stream.node_id, px, py)

    def mouse_button(self, button: int, down: bool) -> None:
        code = BUTTON_EVDEV.get(button)
        if code is None or not self._pointer:
            return
        with self._lock:
            (self._buttons.add if down else self._buttons.discard)(code)
        self._notify("NotifyPointerButton", "iu", code, _PRESSED if down else _RELEASED)

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
            self._notify("NotifyPointerAxisDiscrete", "ui", axis, count)

    def release_all(self) -> None:
        with self._lock:
            keys, self._keys = sorted(self._keys), set()
            buttons, self._buttons = sorted(self._buttons), set()
        for code in keys:
            self._notify("NotifyKeyboardKeycode", "iu", code, _RELEASED)
        for code in buttons:
            self._notify("NotifyPointerButton", "iu", code, _RELEASED)

    def close(self) -> None:
        """Send what is queued, then stop; the portal session belongs to the lease."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._sender.join(timeout=5)
