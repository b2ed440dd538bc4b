"""GameStream input packets (control type 0x0206), sans-I/O: bytes in, typed events out.

Header: BE32 size (magic + body) then LE32 magic. Field byte orders differ per packet (mouse
fields are big-endian, keyboard and controller fields little-endian); each parser states its
layout. `dispatch` turns events into InputInjector / PadManager calls.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..input.base import InputInjector, PadKind, PadManager, PadState


class InputError(ValueError):
    """An input packet that is truncated, oversized or of an unknown kind."""


MAX_INPUT_PACKET = 1024


@dataclass(frozen=True)
class Key:
    vk: int
    down: bool
    modifiers: int
    flags: int


@dataclass(frozen=True)
class MouseRel:
    dx: int
    dy: int


@dataclass(frozen=True)
class MouseAbs:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class MouseButton:
    button: int
    down: bool


@dataclass(frozen=True)
class Scroll:
    vertical: int
    horizontal: int


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Controller:
    number: int
    active_mask: int
    state: PadState


@dataclass(frozen=True)
class ControllerArrival:
    number: int
    kind: int  # 0 unknown, 1 Xbox, 2 PlayStation, 3 Nintendo
    capabilities: int
    supported_buttons: int


@dataclass(frozen=True)
class Haptics:
    enabled: bool


@dataclass(frozen=True)
class Ignored:
    """A valid packet we do not act on (touch, pen, motion, battery) - named for the log."""

    name: str


Event = (
    Key
    | MouseRel
    | MouseAbs
    | MouseButton
    | Scroll
    | Text
    | Controller
    | ControllerArrival
    | Haptics
    | Ignored
)

_IGNORED = {
    0x55000002: "touch",
    0x55000003: "pen",
    0x55000005: "controller touch",
    0x55000006: "controller motion",
    0x55000007: "controller battery",
}


def _need(body: bytes, size: int, name: str) -> None:
    if len(body) < size:
        raise InputError(f"{name} packet body is {len(body)} bytes, needs {size}")


def parse_input(packet: bytes) -> Event:
    if len(packet) < 8 or len(packet) > MAX_INPUT_PACKET:
        raise InputError(f"input packet of {len(packet)} bytes")
    size, magic = struct.unpack_from(">I", packet)[0], struct.unpack_from("<I", packet, 4)[0]
    if size != len(packet) - 4:
        raise InputError(f"input size field {size} != {len(packet) - 4}")
    body = packet[8:]
    if magic in (0x03, 0x04):
        _need(body, 6, "keyboard")
        flags, vk, modifiers = struct.unpack_from("<BhB", body)
        return Key(vk & 0xFF, magic == 0x03, modifiers, flags)
    if magic == 0x07:
        _need(body, 4, "relative mouse")
        return MouseRel(*struct.unpack_from(">hh", body))
    if magic == 0x05:
        _need(body, 10, "absolute mouse")
        x, y, _, w, h = struct.unpack_from(">hhhhh", body)
        return MouseAbs(x, y, w + 1, h + 1)
    if magic in (0x08, 0x09):
        _need(body, 1, "mouse button")
        return MouseButton(body[0], magic == 0x08)
    if magic == 0x0A:
        _need(body, 2, "scroll")
        return Scroll(struct.unpack_from(">h", body)[0], 0)
    if magic == 0x55000001:
        _need(body, 2, "horizontal scroll")
        return Scroll(0, struct.unpack_from(">h", body)[0])
    if magic == 0x17:
        try:
            return Text(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError("text packet is not UTF-8") from None
    if magic == 0x0C:
        _need(body, 26, "controller")
        (_, number, mask, _, buttons, lt, rt, lx, ly, rx, ry, _, buttons2, _) = struct.unpack_from(
            "<hhhhHBBhhhhhHh", body
        )
        state = PadState(buttons | (buttons2 << 16), lt, rt, lx, ly, rx, ry)
        return Controller(number, mask, state)
    if magic == 0x55000004:
        _need(body, 8, "controller arrival")
        number, kind, caps, supported = struct.unpack_from("<BBHI", body)
        return ControllerArrival(number, kind, caps, supported)
    if magic == 0x0D:
        _need(body, 2, "haptics")
        return Haptics(struct.unpack_from("<H", body)[0] != 0)
    if magic in _IGNORED:
        return Ignored(_IGNORED[magic])
    raise InputError(f"unknown input packet magic 0x{magic:08x}")


_PAD_KIND = {2: PadKind.DUALSENSE}


class InputRouter:
    """Applies parsed events to one session's injector and pads; remembers which pads exist."""

    def __init__(self, injector: InputInjector | None, pads: PadManager | None) -> None:
        self._injector = injector
        self._pads = pads
        self._known: set[int] = set()

    def apply(self, event: Event) -> None:
        inj = self._injector
        match event:
            case Key(vk, down, modifiers, _) if inj:
                inj.key(vk, down, modifiers)
            case MouseRel(dx, dy) if inj:
                inj.mouse_move_rel(dx, dy)
            case MouseAbs(x, y, w, h) if inj:
                inj.mouse_move_abs(x, y, w, h)
            case MouseButton(button, down) if inj:
                inj.mouse_button(button, down)
            case Scroll(vertical, horizontal) if inj:
                inj.scroll(vertical, horizontal)
            case Text(text) if inj:
                inj.text(text)
            case ControllerArrival(number, kind, _, _) if self._pads:
                self._arrive(number, _PAD_KIND.get(kind, PadKind.XBOX360))
            case Controller(number, mask, state) if self._pads:
                self._controller(number, mask, state)

    def _arrive(self, number: int, kind: PadKind) -> None:
        assert self._pads is not None
        if number not in self._known:
            self._pads.arrive(number, kind)
            self._known.add(number)

    def _controller(self, number: int, mask: int, state: PadState) -> None:
        assert self._pads is not None
        for gone in [n for n in self._known if not mask & (1 << n)]:
            self._pads.remove(gone)
            self._known.discard(gone)
        if mask & (1 << number):
            self._arrive(number, PadKind.XBOX360)
            self._pads.update(number, state)

    def close(self) -> None:
        """Session end: release held keys and buttons, unplug pads."""
        if self._injector is not None:
            self._injector.release_all()
            self._injector.close()
        if self._pads is not None:
            self._pads.close()
