"""Input into one sway output through the compositor's own protocols (display=wlroots).

A virtual pointer bound to the client's output (`zwlr_virtual_pointer_v1` version 2: absolute
positions land on that output whatever the layout) and a virtual keyboard
(`zwp_virtual_keyboard_v1`) with an xkb keymap that the compositor compiles from the system's
xkb data (evdev keycodes, US layout: keys are sent as US key positions, like the X11 path).
Text beyond the US layout (é, ß, €, →, any code point) is typed on spare keys: the keymap is
sent again with those characters bound to F13..F24, as X11's spare keycodes do.
Requests are only written (nothing is read but errors), under one lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pywayland.client import Display
from pywayland.protocol.wayland import WlOutput, WlSeat

from ..log import event
from ..wayland.protocol.virtual_keyboard_unstable_v1 import ZwpVirtualKeyboardManagerV1
from ..wayland.protocol.wlr_virtual_pointer_unstable_v1 import ZwlrVirtualPointerManagerV1
from .vk import BUTTON_EVDEV, KEY_FLAG_NON_NORMALIZED, VK_EVDEV, WHEEL_DELTA

_log = logging.getLogger("punktfunk.input")
_STEP = 15.0  # wl_pointer axis units per notch (what libinput reports for a wheel click)
_KEYMAP = """xkb_keymap {
    xkb_keycodes { include "evdev+aliases(qwerty)" };
    xkb_types { include "complete" };
    xkb_compat { include "complete" };
    xkb_symbols { include "pc+us+inet(evdev)"%s };
};
"""
# Spare keys for text the US layout lacks: F13..F24 (evdev 183..194), which no client sends.
_SPARE = tuple((183 + i, f"FK{13 + i}") for i in range(12))


def keymap(extra: dict[str, int]) -> bytes:
    """The keymap, with each character of `extra` bound to its spare evdev code."""
    names = dict(_SPARE)
    binds = "".join(
        f"\n        key <{names[code]}> {{ [ U{ord(char):04X} ] }};"
        for char, code in sorted(extra.items(), key=lambda item: item[1])
    )
    return (_KEYMAP % (binds + "\n    " if binds else "")).encode() + b"\0"


_XKB_V1 = 1
# evdev code -> xkb real modifier of the keymap above: Shift, Control, Mod1 (Alt), Mod4 (Super).
_MODIFIERS = {42: 0x01, 54: 0x01, 29: 0x04, 97: 0x04, 56: 0x08, 100: 0x08, 125: 0x40, 126: 0x40}
_CAPS_LOCK, _LOCK = 58, 0x02
_LEFT_SHIFT = 42


def _us_text() -> dict[str, tuple[int, bool]]:
    """Character -> (evdev code, shifted) on the US layout of the keymap above."""
    rows = (
        (41, "`1234567890-=", "~!@#$%^&*()_+"),
        (16, "qwertyuiop[]", "QWERTYUIOP{}"),
        (30, "asdfghjkl;'", 'ASDFGHJKL:"'),
        (44, "zxcvbnm,./", "ZXCVBNM<>?"),
    )
    table: dict[str, tuple[int, bool]] = {" ": (57, False), "\n": (28, False), "\t": (15, False)}
    table["\\"], table["|"] = (43, False), (43, True)
    for first, plain, shifted in rows:
        codes = [41, *range(2, 14)] if first == 41 else range(first, first + len(plain))
        for code, a, b in zip(codes, plain, shifted, strict=True):
            table[a], table[b] = (code, False), (code, True)
    return table


_US_TEXT = _us_text()


class WaylandInputError(RuntimeError):
    """The compositor lacks the virtual input protocols, or the output is not there."""


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000 & 0xFFFFFFFF


class WaylandInjector:
    """An `InputInjector` for output `output_name` of the compositor at `socket`."""

    def __init__(self, socket: Path, output_name: str, seat: str = "") -> None:
        self.output_name = output_name
        self.seat_name = seat  # the monitor's own seat (own focus); "" takes the first
        self._lock = threading.Lock()
        self._keys: set[int] = set()
        self._buttons: set[int] = set()
        self._scroll = [0, 0]
        self._locked = 0
        self._spare: dict[str, int] = {}  # character -> spare evdev code, oldest first
        self._closed = False
        self._display = Display(str(socket))
        self._display.connect()
        try:
            self._bind()
        except Exception:
            self._display.disconnect()
            raise

    def _bind(self) -> None:
        found: dict[str, list[tuple[int, int]]] = {}
        registry = self._display.get_registry()
        registry.dispatcher["global"] = lambda _r, name, iface, version: found.setdefault(
            iface, []
        ).append((name, version))
        self._display.roundtrip()
        for needed in (
            "wl_seat",
            "wl_output",
            "zwlr_virtual_pointer_manager_v1",
            "zwp_virtual_keyboard_manager_v1",
        ):
            if needed not in found:
                raise WaylandInputError(f"the compositor offers no {needed}")
        names: dict[object, str] = {}
        seats = []
        for name, version in found["wl_seat"]:
            seat = registry.bind(name, WlSeat, min(version, 2))
            seat.dispatcher["name"] = lambda proxy, text: names.__setitem__(proxy, text)
            seats.append(seat)
        outputs = []
        for name, version in found["wl_output"]:
            if version >= 4:
                output = registry.bind(name, WlOutput, 4)
                output.dispatcher["name"] = lambda proxy, text: names.__setitem__(proxy, text)
                outputs.append(output)
        self._display.roundtrip()
        output = next(
            (o for o in outputs if names.get(o) == self.output_name or not self.output_name), None
        )
        if output is None:
            raise WaylandInputError(f"no output {self.output_name}")
        if self.seat_name:
            # Another client's seat would hand this client that client's focus: no fallback.
            seat = next((s for s in seats if names.get(s) == self.seat_name), None)
            if seat is None:
                raise WaylandInputError(f"the compositor has no seat {self.seat_name}")
        else:
            seat = seats[0]
        name, version = found["zwlr_virtual_pointer_manager_v1"][0]
        if version < 2:
            raise WaylandInputError("zwlr_virtual_pointer_manager_v1 < 2 cannot bind an output")
        pointers = registry.bind(name, ZwlrVirtualPointerManagerV1, 2)
        self._pointer = pointers.create_virtual_pointer_with_output(seat, output)
        keyboards = registry.bind(
            found["zwp_virtual_keyboard_manager_v1"][0][0], ZwpVirtualKeyboardManagerV1, 1
        )
        self._keyboard = keyboards.create_virtual_keyboard(seat)
        self._send_keymap()
        self._display.roundtrip()  # the fd is sent; a refused keymap shows up here

    def _send_keymap(self) -> None:
        data = keymap(self._spare)
        fd = os.memfd_create("pf-keymap", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            self._keyboard.keymap(_XKB_V1, fd, len(data))
        finally:
            os.close(fd)

    def _flush(self) -> None:
        try:
            self._display.flush()
        except Exception as exc:  # the compositor went away: the session ends elsewhere
            if not self._closed:
                event(_log, "input.wayland_lost", logging.WARNING, reason=repr(exc))
            self._closed = True

    # --- keyboard --------------------------------------------------------------------------

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        """A US-positional VK press/release (modifier keys arrive as their own VKs)."""
        evdev = None if flags & KEY_FLAG_NON_NORMALIZED else VK_EVDEV.get(vk & 0xFF)
        if evdev is None:
            event(_log, "input.wayland.unknown_vk", logging.DEBUG, vk=hex(vk))
            return
        self.key_evdev(evdev, down)

    def key_evdev(self, code: int, down: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._keyboard.key(_now_ms(), code, 1 if down else 0)
            (self._keys.add if down else self._keys.discard)(code)
            self._update_modifiers(code, down)
            self._flush()

    def _update_modifiers(self, code: int, down: bool) -> None:
        """wlroots applies no modifier state from a virtual keyboard's keys: say it ourselves."""
        if code == _CAPS_LOCK:
            if down:
                self._locked ^= _LOCK
        elif code not in _MODIFIERS:
            return
        depressed = 0
        for key in self._keys:
            depressed |= _MODIFIERS.get(key, 0)
        self._keyboard.modifiers(depressed, 0, self._locked, 0)

    def text(self, utf8: str) -> None:
        """Type text: US-layout characters as their keys, any other code point on a spare key
        (the keymap is sent again when a character is not bound yet); control characters other
        than newline and tab are dropped (counted in the log)."""
        dropped = 0
        for char in utf8:
            key = _US_TEXT.get(char)
            if key is None:
                if not char.isprintable():
                    dropped += 1
                    continue
                key = (self._spare_key(char), False)
            code, shifted = key
            if shifted:
                self.key_evdev(_LEFT_SHIFT, True)
            self.key_evdev(code, True)
            self.key_evdev(code, False)
            if shifted:
                self.key_evdev(_LEFT_SHIFT, False)
        if dropped:
            event(_log, "input.wayland.text_dropped", logging.DEBUG, chars=dropped)

    def _spare_key(self, char: str) -> int:
        """The spare key typing `char`, binding it (in place of the longest-bound) if needed."""
        with self._lock:
            code = self._spare.get(char)
            if code is not None:
                return code
            if len(self._spare) < len(_SPARE):
                code = _SPARE[len(self._spare)][0]
            else:
                oldest = next(iter(self._spare))
                code = self._spare.pop(oldest)
            self._spare[char] = code
            if not self._closed:
                self._send_keymap()
                self._flush()
            return code

    # --- pointer ---------------------------------------------------------------------------

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        with self._lock:
            if not self._closed:
                self._pointer.motion(_now_ms(), float(dx), float(dy))
                self._pointer.frame()
                self._flush()

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        """(x, y) on the client's surface. The compositor scales it onto the output's current
        mode (so a mode change needs nothing here)."""
        if surface_w <= 1 or surface_h <= 1:
            return
        px = min(max(x, 0), surface_w - 1)
        py = min(max(y, 0), surface_h - 1)
        with self._lock:
            if not self._closed:
                self._pointer.motion_absolute(_now_ms(), px, py, surface_w, surface_h)
                self._pointer.frame()
                self._flush()

    def mouse_button(self, button: int, down: bool) -> None:
        """Button 1 left, 2 middle, 3 right, 4 back (X1), 5 forward (X2)."""
        code = BUTTON_EVDEV.get(button)
        if code is None:
            return
        with self._lock:
            if not self._closed:
                self._pointer.button(_now_ms(), code, 1 if down else 0)
                self._pointer.frame()
                (self._buttons.add if down else self._buttons.discard)(code)
                self._flush()

    def scroll(self, vertical: int, horizontal: int) -> None:
        """Wheel motion in 1/120 notches: vertical > 0 is up, horizontal > 0 is right."""
        with self._lock:
            if self._closed:
                return
            # Wayland's vertical axis grows downwards; horizontal grows to the right.
            for axis, amount, sign in ((0, vertical, -1), (1, horizontal, 1)):
                total = self._scroll[axis] + amount
                notches = int(total / WHEEL_DELTA)
                self._scroll[axis] = total - notches * WHEEL_DELTA
                if notches:
                    self._pointer.axis_source(0)  # wheel
                    self._pointer.axis_discrete(
                        _now_ms(), axis, sign * notches * _STEP, sign * notches
                    )
                    self._pointer.frame()
            self._flush()

    def release_all(self) -> None:
        with self._lock:
            if self._closed:
                return
            for code in sorted(self._keys):
                self._keyboard.key(_now_ms(), code, 0)
            if self._keys:
                self._keyboard.modifiers(0, 0, self._locked, 0)
            for code in sorted(self._buttons):
                self._pointer.button(_now_ms(), code, 0)
            if self._buttons:
                self._pointer.frame()
            self._keys.clear()
            self._buttons.clear()
            self._flush()

    def close(self) -> None:
        self.release_all()
        with self._lock:
            self._closed = True
            self._display.disconnect()


def open_for_lease(state_dir: Path, lease: object) -> WaylandInjector:
    """The injector for a display=wlroots monitor (its output and its own seat) or for an
    attached desktop (the running compositor's first seat; `wayland_output` "" for what a
    portal granted: the first output)."""
    from ..wayland.sway import find_sockets, runtime_dir, workspace_name

    output = lease.output  # type: ignore[attr-defined]
    socket = getattr(lease, "wayland_socket", None)
    seat = ""
    if socket is None:
        sockets = find_sockets(runtime_dir(state_dir))
        if sockets is None:
            raise WaylandInputError("no sway runs for this state dir")
        socket, seat = sockets[0], workspace_name(output.monitor_id)
    name = getattr(lease, "wayland_output", output.display_name)
    try:
        return WaylandInjector(socket, name, seat)
    except (RuntimeError, OSError) as exc:
        raise WaylandInputError(f"input into {output.display_name}: {exc}") from None
