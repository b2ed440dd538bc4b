"""Keyboard and mouse injection into a session's X display through XTEST.

One long-lived connection per display, flushed after every event, guarded by one lock (the
control-stream thread and the native protocol may both inject). A VK is a US key *position*
(both protocols normalize to it, see `vk.py`): it presses the key at that position and the
display's layout decides the symbol, as a local keyboard would. A VK flagged non-normalized, a
keysym and text are resolved by *symbol* through the display's current keymap
(`keymap.Keymap`), binding spare keycodes for symbols the layout lacks. A lost X server turns
every call into a no-op (logged once): the session ends on its own schedule, not from inside an
input handler.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from Xlib import X, error
from Xlib.display import Display
from Xlib.ext import xtest

from ..log import event
from ..vdisplay.xauth import install_xlib_auth
from .keymap import Keymap
from .vk import (
    KEY_FLAG_NON_NORMALIZED,
    MOD_ALT,
    MOD_SHIFT,
    MODIFIER_KEYSYMS,
    MODIFIER_VKS,
    VK_EVDEV,
    VK_KEYSYMS,
    WHEEL_DELTA,
    char_keysym,
)

_log = logging.getLogger("punktfunk.input.x11")

# GameStream/Windows button numbers (1 left, 2 middle, 3 right, 4 X1, 5 X2) -> X buttons.
_BUTTONS = {1: 1, 2: 2, 3: 3, 4: 8, 5: 9}
_SCROLL_UP, _SCROLL_DOWN, _SCROLL_LEFT, _SCROLL_RIGHT = 4, 5, 6, 7
_SHIFT_SYMS = MODIFIER_KEYSYMS[MOD_SHIFT][0]
_LEVEL3 = 0xFE03  # ISO_Level3_Shift (AltGr) counts as Alt when syncing modifiers


class InputError(RuntimeError):
    """The display cannot take injected input (unreachable, or no XTEST)."""


class X11Injector:
    """`InputInjector` for one X display. Also takes keysyms (`key_sym`) for the native protocol."""

    def __init__(self, display_name: str, *, sync_modifiers: bool = True) -> None:
        install_xlib_auth()  # our own servers want their cookie
        try:
            self._d = Display(display_name)
        except (error.DisplayError, OSError) as exc:
            raise InputError(f"cannot open X display {display_name}: {exc}") from exc
        if not self._d.has_extension("XTEST"):
            self._d.close()
            raise InputError(f"X display {display_name} has no XTEST extension")
        self._name = display_name
        self._sync = sync_modifiers
        self._lock = threading.Lock()
        self._d.set_error_handler(self._on_x_error)
        self._root = self._d.screen().root
        # Root ConfigureNotify tells us about mode changes without a round trip per move.
        self._root.change_attributes(event_mask=X.StructureNotifyMask)
        geometry = self._root.get_geometry()
        self._width, self._height = geometry.width, geometry.height
        self._keymap = Keymap(self._d)
        self._held: dict[object, int] = {}  # ("vk", code) / ("sym", keysym) / ("mod", flag) -> kc
        self._buttons: set[int] = set()
        self._scroll = [0, 0]  # vertical, horizontal remainders in 1/120 notch
        self._dead = False
        event(
            _log,
            "input.x11.open",
            display=display_name,
            size=f"{self._width}x{self._height}",
            spare_keycodes=self._keymap.spare_count,
        )

    # --- keyboard -------------------------------------------------------------------------

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        """A Windows VK press/release; `modifiers`: shift 1, ctrl 2, alt 4, meta 8.

        The VK is a US key position unless `flags` has `KEY_FLAG_NON_NORMALIZED` (GameStream's
        keyboard flags byte; the native protocol never sets it), then it names a symbol.
        """
        code = vk & 0xFF
        entry = VK_KEYSYMS.get(code)
        evdev = None if flags & KEY_FLAG_NON_NORMALIZED else VK_EVDEV.get(code)
        if entry is None and evdev is None:
            event(_log, "input.x11.unknown_vk", logging.DEBUG, vk=hex(vk))
            return
        with self._lock:
            if not self._begin():
                return
            if down and self._sync and code not in MODIFIER_VKS:
                self._sync_modifiers(modifiers)
            token = ("vk", code)
            keycode = self._held.get(token) if down else None
            if keycode is None and down:
                keycode = self._keymap.positional(evdev)
            if keycode is not None or not down:
                self._key_code(token, keycode, down)
            elif entry is not None:  # no such position on this server/layout: by symbol
                self._key(token, entry[0], entry[1], down)
            self._d.flush()

    def key_sym(self, keysym: int, down: bool) -> None:
        """A key by X keysym (the native protocol's path); no modifier sync."""
        with self._lock:
            if self._begin():
                self._key(("sym", keysym), (keysym,), keysym, down)
                self._d.flush()

    def text(self, utf8: str) -> None:
        """Type text, one code point at a time, whatever the layout (spare keycodes if needed)."""
        with self._lock:
            if not self._begin():
                return
            for char in utf8:
                self._type_char(char)
            self._d.flush()

    # --- mouse ----------------------------------------------------------------------------

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        with self._lock:
            if self._begin():
                xtest.fake_input(self._d, X.MotionNotify, detail=1, x=dx, y=dy)
                self._d.flush()

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        """(x, y) on the client's `surface_w` x `surface_h` surface, scaled to the display mode.

        The surface's first and last pixels land on the display's first and last pixels.
        """
        with self._lock:
            if not self._begin() or surface_w <= 1 or surface_h <= 1:
                return
            px = min(max(round(x * (self._width - 1) / (surface_w - 1)), 0), self._width - 1)
            py = min(max(round(y * (self._height - 1) / (surface_h - 1)), 0), self._height - 1)
            xtest.fake_input(self._d, X.MotionNotify, x=px, y=py)
            self._d.flush()

    def mouse_button(self, button: int, down: bool) -> None:
        """Button 1 left, 2 middle, 3 right, 4 back (X1), 5 forward (X2)."""
        xbutton = _BUTTONS.get(button)
        if xbutton is None:
            return
        with self._lock:
            if self._begin():
                xtest.fake_input(self._d, X.ButtonPress if down else X.ButtonRelease, xbutton)
                (self._buttons.add if down else self._buttons.discard)(xbutton)
                self._d.flush()

    def scroll(self, vertical: int, horizontal: int) -> None:
        """Wheel motion in 1/120 notches: vertical > 0 is up, horizontal > 0 is right."""
        with self._lock:
            if not self._begin():
                return
            for axis, amount, plus, minus in (
                (0, vertical, _SCROLL_UP, _SCROLL_DOWN),
                (1, horizontal, _SCROLL_RIGHT, _SCROLL_LEFT),
            ):
                total = self._scroll[axis] + amount
                notches = int(total / WHEEL_DELTA)  # toward zero: the remainder keeps its sign
                self._scroll[axis] = total - notches * WHEEL_DELTA
                for _ in range(abs(notches)):
                    button = plus if notches > 0 else minus
                    xtest.fake_input(self._d, X.ButtonPress, button)
                    xtest.fake_input(self._d, X.ButtonRelease, button)
            self._d.flush()

    # --- session end ----------------------------------------------------------------------

    def release_all(self) -> None:
        """Release every key and button still held (session end, client focus loss)."""
        with self._lock:
            if not self._begin():
                return
            released = len(self._held) + len(self._buttons)
            for keycode in set(self._held.values()):
                xtest.fake_input(self._d, X.KeyRelease, keycode)
            for button in self._buttons:
                xtest.fake_input(self._d, X.ButtonRelease, button)
            self._held.clear()
            self._buttons.clear()
            self._scroll = [0, 0]
            self._d.flush()
            if released:
                event(_log, "input.x11.released", display=self._name, count=released)

    def close(self) -> None:
        self.release_all()
        with self._lock:
            if self._dead:
                return
            try:
                self._keymap.restore()
                self._d.sync()  # applied before we return: the next owner sees a clean keymap
                self._d.close()
            except (error.ConnectionClosedError, OSError):
                pass
            self._dead = True

    # --- internals (lock held) ------------------------------------------------------------

    def _begin(self) -> bool:
        """Drain pending events (keymap and mode changes); False once the display is gone."""
        if self._dead:
            return False
        try:
            while self._d.pending_events():
                ev = self._d.next_event()
                if ev.type == X.MappingNotify and ev.request == X.MappingKeyboard:
                    self._keymap.reload()
                elif ev.type == X.ConfigureNotify and ev.window == self._root:
                    self._width, self._height = ev.width, ev.height
        except (error.ConnectionClosedError, OSError) as exc:
            self._dead = True
            event(_log, "input.x11.lost", logging.WARNING, display=self._name, reason=exc)
            return False
        return True

    def _resolve(self, candidates: Iterable[int], shifted: int) -> int | None:
        candidates = tuple(candidates)
        for keysym in candidates:
            keycode = self._keymap.plain(keysym)
            if keycode is not None:
                return keycode
        keycode = self._keymap.bind(candidates[0], shifted, busy=set(self._held.values()))
        if keycode is None:
            event(_log, "input.x11.no_spare_keycode", logging.WARNING, keysym=hex(candidates[0]))
        return keycode

    def _key(self, token: object, candidates: tuple[int, ...], shifted: int, down: bool) -> None:
        keycode = None
        if down:
            keycode = self._held.get(token) or self._resolve(candidates, shifted)
            if keycode is None:
                return
        self._key_code(token, keycode, down)

    def _key_code(self, token: object, keycode: int | None, down: bool) -> None:
        if down:
            assert keycode is not None
            xtest.fake_input(self._d, X.KeyPress, keycode)
            self._held[token] = keycode
        else:
            # Release the keycode we pressed, even if the keymap changed in between; a key
            # still held under another token (VK_SHIFT and VK_LSHIFT) stays down.
            keycode = self._held.pop(token, None)
            if keycode is not None and keycode not in self._held.values():
                xtest.fake_input(self._d, X.KeyRelease, keycode)

    def _holding(self, keysyms: frozenset[int]) -> list[object]:
        return [t for t, kc in self._held.items() if self._keymap.keysym(kc) in keysyms]

    def _sync_modifiers(self, modifiers: int) -> None:
        """Match the modifiers we hold to the client's flags (a lost release leaves one stuck)."""
        for flag, (keysyms, press) in MODIFIER_KEYSYMS.items():
            if flag == MOD_ALT:
                keysyms = keysyms | {_LEVEL3}
            holding = self._holding(keysyms)
            if modifiers & flag and not holding:
                self._key(("mod", flag), (press,), press, True)
            elif not modifiers & flag and holding:
                for token in holding:
                    self._key(token, (), 0, False)

    def _tap(self, keycode: int) -> None:
        xtest.fake_input(self._d, X.KeyPress, keycode)
        xtest.fake_input(self._d, X.KeyRelease, keycode)

    def _type_char(self, char: str) -> None:
        keysym = char_keysym(char)
        shift_held = bool(self._holding(_SHIFT_SYMS))
        plain = self._keymap.plain(keysym)
        shifted = self._keymap.shifted(keysym)
        if plain is not None and not shift_held:
            self._tap(plain)
        elif shifted is not None and plain is None:
            shift = None if shift_held else self._resolve((0xFFE1,), 0xFFE1)  # Shift_L
            if shift is not None:
                xtest.fake_input(self._d, X.KeyPress, shift)
            self._tap(shifted)
            if shift is not None:
                xtest.fake_input(self._d, X.KeyRelease, shift)
        else:
            # Same keysym on both levels, so a held Shift cannot change what arrives.
            keycode = self._keymap.bind(keysym, keysym, busy=set(self._held.values()))
            if keycode is None:
                event(_log, "input.x11.no_spare_keycode", logging.WARNING, keysym=hex(keysym))
                return
            self._tap(keycode)

    def _on_x_error(self, err: error.XError, request: object) -> None:
        event(_log, "input.x11.x_error", logging.WARNING, display=self._name, error=err)
