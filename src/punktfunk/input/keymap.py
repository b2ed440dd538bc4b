"""The display's keysym -> keycode view, and spare keycodes bound to keysyms on demand.

Like xdotool: a keysym the current layout cannot produce (or only with modifiers) is bound to a
keycode that has no symbols. Bindings stay until the pool runs out and the least recently used
one is rebound, so a client that processes events late still sees the keysym it was sent
(rebinding immediately after the key press would race with the client's keymap refresh).
"""

from __future__ import annotations

from collections import OrderedDict

from Xlib.display import Display

NO_SYMBOL = 0
EVDEV_OFFSET = 8  # X keycode = Linux evdev code + 8 under the xkb "evdev" keycodes
_XK_UP, _XK_LEFT = 0xFF52, 0xFF51
# The older xkb "xfree86" keycodes (an Xorg without input hotplug still uses them) agree with
# evdev + 8 below evdev code 89 and differ for these extended keys; other codes >= 89 (F13+,
# IME keys) have no fixed position there and fall back to keysyms.
_XFREE86 = {
    102: 97, 103: 98, 104: 99, 105: 100, 106: 102, 107: 103, 108: 104, 109: 105, 110: 106,
    111: 107, 96: 108, 97: 109, 119: 110, 99: 111, 98: 112, 100: 113, 125: 115, 126: 116,
    127: 117,
}  # fmt: skip


class Keymap:
    """Core keyboard mapping of one display; call `reload()` after a MappingNotify."""

    def __init__(self, display: Display) -> None:
        self._display = display
        self._min = display.display.info.min_keycode
        self._max = display.display.info.max_keycode
        self._bound: OrderedDict[int, tuple[int, int]] = OrderedDict()  # keycode -> syms, LRU
        self._plain: dict[int, int] = {}
        self._shifted: dict[int, int] = {}
        self._syms: dict[int, tuple[int, ...]] = {}
        self._spare: list[int] = []
        self._keycodes = ""  # "evdev", "xfree86" or "" (unknown: no positional keys)
        self.reload()

    def reload(self) -> None:
        mapping = self._display.get_keyboard_mapping(self._min, self._max - self._min + 1)
        self._syms = {self._min + i: tuple(syms) for i, syms in enumerate(mapping)}
        self._plain.clear()
        self._shifted.clear()
        # Lowest keycode wins: it is the "main" key where a keysym appears twice (e.g. Return).
        for keycode in sorted(self._syms, reverse=True):
            syms = self._syms[keycode]
            if syms and syms[0] != NO_SYMBOL:
                self._plain[syms[0]] = keycode
            if len(syms) > 1 and syms[1] != NO_SYMBOL:
                self._shifted[syms[1]] = keycode
        # Our bindings survive a reload only if the server still has them.
        for keycode, syms in list(self._bound.items()):
            if self._syms.get(keycode, ())[:2] != syms:
                del self._bound[keycode]
        self._spare = [kc for kc, syms in self._syms.items() if not any(syms)]
        # The arrows are where the "xfree86" keycode set differs from "evdev" (98/100 vs
        # 111/113) and no layout moves them, so they tell which set the server uses.
        if self.keysym(111) == _XK_UP and self.keysym(113) == _XK_LEFT:
            self._keycodes = "evdev"
        elif self.keysym(98) == _XK_UP and self.keysym(100) == _XK_LEFT:
            self._keycodes = "xfree86"
        else:
            self._keycodes = ""

    def plain(self, keysym: int) -> int | None:
        """The keycode that produces `keysym` with no modifier held, if the layout has one."""
        return self._plain.get(keysym)

    def shifted(self, keysym: int) -> int | None:
        """The keycode that produces `keysym` with Shift held (and not without it)."""
        return self._shifted.get(keysym)

    def positional(self, evdev: int | None) -> int | None:
        """The keycode at evdev key position `evdev`, if the server's keycode set is known and
        the layout puts a symbol there (else None: the caller falls back to a keysym)."""
        if evdev is None or not self._keycodes:
            return None
        if self._keycodes == "evdev":
            keycode: int | None = evdev + EVDEV_OFFSET
        else:
            keycode = _XFREE86.get(evdev, evdev + EVDEV_OFFSET if evdev < 89 else None)
        if keycode is None:
            return None
        if keycode < self._min or keycode > self._max or self.keysym(keycode) == NO_SYMBOL:
            return None
        if keycode in self._bound:  # a spare we bound ourselves is no real key position
            return None
        return keycode

    @property
    def keycodes(self) -> str:
        """Which xkb keycode set the server uses: "evdev", "xfree86" or "" (unknown)."""
        return self._keycodes

    def keysym(self, keycode: int) -> int:
        syms = self._syms.get(keycode, ())
        return syms[0] if syms else NO_SYMBOL

    def bind(self, plain: int, shifted: int, busy: set[int]) -> int | None:
        """A spare keycode producing `plain` (and `shifted` with Shift); None if none is free.

        Keycodes in `busy` (currently held down) are never rebound.
        """
        for keycode, syms in self._bound.items():
            if syms == (plain, shifted):
                self._bound.move_to_end(keycode)
                return keycode
        free = [kc for kc in self._spare if kc not in self._bound and kc not in busy]
        if free:
            keycode = free[0]
        else:
            reusable = [kc for kc in self._bound if kc not in busy]
            if not reusable:
                return None
            keycode = reusable[0]
            del self._bound[keycode]
        self._display.change_keyboard_mapping(keycode, [(plain, shifted)])
        self._bound[keycode] = (plain, shifted)
        self._syms[keycode] = (plain, shifted)
        return keycode

    @property
    def spare_count(self) -> int:
        return len(self._spare)

    def restore(self) -> None:
        """Give every bound spare keycode back (NoSymbol), as it was before we came."""
        for keycode in self._bound:
            self._display.change_keyboard_mapping(keycode, [(NO_SYMBOL, NO_SYMBOL)])
        self._bound.clear()
