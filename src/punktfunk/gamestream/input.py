"""GameStream input packets (control type 0x0206), sans-I/O: bytes in, typed events out.

Header: BE32 size (magic + body) then LE32 magic. Field byte orders differ per packet (mouse
fields are big-endian, keyboard and controller fields little-endian); each parser states its
layout. `dispatch` turns events into InputInjector / PadManager calls.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..input.base import InputInjector, PadFeedback, PadKind, PadManager, PadState
from ..input.padroute import PadRouter, gamestream_battery, gamestream_kind


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
class ControllerTouch:
    """A contact on a controller's touchpad; x, y normalized to 0..1."""

    number: int
    event_type: int  # TOUCH_*
    pointer: int
    x: float
    y: float


@dataclass(frozen=True)
class ControllerMotion:
    number: int
    motion_type: int  # MOTION_ACCEL (m/s^2) or MOTION_GYRO (deg/s)
    xyz: tuple[float, float, float]


@dataclass(frozen=True)
class ControllerBattery:
    number: int
    state: int
    percent: int


@dataclass(frozen=True)
class Touch:
    """A touchscreen or pen contact on the client's surface; x, y normalized to 0..1."""

    event_type: int  # TOUCH_*
    pointer: int
    x: float
    y: float


@dataclass(frozen=True)
class Haptics:
    enabled: bool


Event = (
    Key
    | MouseRel
    | MouseAbs
    | MouseButton
    | Scroll
    | Text
    | Controller
    | ControllerArrival
    | ControllerTouch
    | ControllerMotion
    | ControllerBattery
    | Touch
    | Haptics
)

# LI_TOUCH_EVENT_* and LI_MOTION_TYPE_* (moonlight-common-c Limelight.h)
TOUCH_HOVER, TOUCH_DOWN, TOUCH_UP, TOUCH_MOVE, TOUCH_CANCEL = 0, 1, 2, 3, 4
TOUCH_BUTTON_ONLY, TOUCH_HOVER_LEAVE, TOUCH_CANCEL_ALL = 5, 6, 7
MOTION_ACCEL, MOTION_GYRO = 1, 2
TOUCH_SCALE = 65535  # a normalized touch position becomes an absolute move on this grid
BUTTON_LEFT = 1


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
    # Sunshine's extensions; netfloat is a little-endian IEEE float.
    if magic == 0x55000002:
        _need(body, 28, "touch")
        event_type, pointer, x, y = body[0], *struct.unpack_from("<Iff", body, 4)
        return Touch(event_type, pointer, x, y)
    if magic == 0x55000003:
        _need(body, 28, "pen")
        event_type, (x, y) = body[0], struct.unpack_from("<ff", body, 4)
        return Touch(event_type, 0, x, y)
    if magic == 0x55000005:
        _need(body, 20, "controller touch")
        number, event_type = body[0], body[1]
        pointer, x, y = struct.unpack_from("<Iff", body, 4)
        return ControllerTouch(number, event_type, pointer, x, y)
    if magic == 0x55000006:
        _need(body, 16, "controller motion")
        return ControllerMotion(body[0], body[1], struct.unpack_from("<fff", body, 4))
    if magic == 0x55000007:
        _need(body, 4, "controller battery")
        return ControllerBattery(body[0], body[1], body[2])
    raise InputError(f"unknown input packet magic 0x{magic:08x}")


class InputRouter:
    """Applies parsed events to one session's injector and pads."""

    def __init__(self, injector: InputInjector | None, pads: PadManager | None) -> None:
        self._injector = injector
        self._pads = PadRouter(pads, PadKind.XBOX360)
        self._touching: int | None = None  # the pointer that drives the mouse

    def on_pad_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._pads.on_feedback(callback)

    def apply(self, event: Event) -> None:
        inj, pads = self._injector, self._pads
        match event:
            case Key(vk, down, modifiers, flags) if inj:
                inj.key(vk, down, modifiers, flags)
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
            case Touch() if inj:
                self._touch(inj, event)
            case ControllerArrival(number, kind, _, _):
                pads.arrive(number, gamestream_kind(kind))
            case Controller(number, mask, state):
                pads.state(number, state, active_mask=mask)
            case ControllerTouch(number, kind, pointer, x, y):
                if kind in (TOUCH_DOWN, TOUCH_MOVE, TOUCH_UP, TOUCH_CANCEL):
                    pads.touch(number, pointer, kind in (TOUCH_DOWN, TOUCH_MOVE), x, y)
            case ControllerMotion(number, kind, xyz) if kind == MOTION_ACCEL:
                pads.motion(number, accel=xyz)
            case ControllerMotion(number, kind, xyz) if kind == MOTION_GYRO:
                pads.motion(number, gyro=xyz)
            case ControllerBattery(number, state, percent):
                pads.battery(number, *gamestream_battery(state, percent))

    def _touch(self, inj: InputInjector, event: Touch) -> None:
        """A touchscreen drives the pointer as a desktop would: the first contact moves it
        and holds the left button; other contacts are ignored."""
        if self._touching not in (None, event.pointer):
            return
        x = int(min(max(event.x, 0.0), 1.0) * TOUCH_SCALE)
        y = int(min(max(event.y, 0.0), 1.0) * TOUCH_SCALE)
        if event.event_type == TOUCH_DOWN:
            inj.mouse_move_abs(x, y, TOUCH_SCALE + 1, TOUCH_SCALE + 1)
            inj.mouse_button(BUTTON_LEFT, True)
            self._touching = event.pointer
        elif event.event_type == TOUCH_MOVE and self._touching is not None:
            inj.mouse_move_abs(x, y, TOUCH_SCALE + 1, TOUCH_SCALE + 1)
        elif event.event_type in (TOUCH_UP, TOUCH_CANCEL, TOUCH_CANCEL_ALL):
            if self._touching is not None:
                inj.mouse_button(BUTTON_LEFT, False)
            self._touching = None

    def close(self) -> None:
        """Session end: release held keys and buttons, unplug pads."""
        if self._injector is not None:
            self._injector.release_all()
            self._injector.close()
        self._pads.close()
