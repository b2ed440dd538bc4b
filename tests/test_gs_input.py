"""Input packets (control type 0x0206) built byte for byte per moonlight-common-c's Input.h and
InputStream.c, parsed to events, and routed onto injector/pad recorders."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_client import (
    arrival_packet,
    controller_packet,
    haptics_packet,
    hscroll_packet,
    input_packet,
    key_packet,
    mouse_abs_packet,
    mouse_button_packet,
    mouse_rel_packet,
    scroll_packet,
    text_packet,
)
from punktfunk.gamestream.input import (
    MOTION_GYRO,
    TOUCH_DOWN,
    TOUCH_MOVE,
    Controller,
    ControllerArrival,
    ControllerBattery,
    ControllerMotion,
    ControllerTouch,
    Haptics,
    InputError,
    InputRouter,
    Key,
    MouseAbs,
    MouseButton,
    MouseRel,
    Scroll,
    Text,
    Touch,
    parse_input,
)
from punktfunk.input.base import InputInjector, PadFeedback, PadKind, PadManager, PadState

# --- golden bytes -----------------------------------------------------------------------------


def test_golden_keyboard_bytes() -> None:
    """'A' down with shift, as Moonlight sends it: keyCode 0x8041 (VK | 0x8000), LE16."""
    packet = bytes.fromhex("0000000a 03000000 00 4180 01 0000")
    assert key_packet(True, 0x8041, modifiers=0x01) == packet
    assert parse_input(packet) == Key(vk=0x41, down=True, modifiers=0x01, flags=0)


def test_golden_mouse_bytes() -> None:
    rel = bytes.fromhex("00000008 07000000 fed4 0014")
    assert mouse_rel_packet(-300, 20) == rel
    assert parse_input(rel) == MouseRel(-300, 20)
    absolute = bytes.fromhex("0000000e 05000000 0064 00c8 0000 077f 0437")
    assert mouse_abs_packet(100, 200, 1920, 1080) == absolute
    assert parse_input(absolute) == MouseAbs(100, 200, 1920, 1080)


def test_golden_controller_bytes() -> None:
    packet = controller_packet(1, 0b11, 0x00021001, lt=255, rt=7, lx=-32768, ly=32767, rx=5)
    assert packet[:8] == bytes.fromhex("0000001e 0c000000")
    assert packet[8:16] == bytes.fromhex("1a00 0100 0300 1400")
    assert packet[16:20] == bytes.fromhex("0110 ff07")
    assert packet[20:28] == bytes.fromhex("0080 ff7f 0500 0000")
    assert packet[28:34] == bytes.fromhex("9c00 0200 5500")


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "event"),
    [
        (key_packet(True, 0x8000 | 0x41), Key(0x41, True, 0, 0)),
        (key_packet(False, 0x8000 | 0x41), Key(0x41, False, 0, 0)),
        (key_packet(True, 0x8000 | 0xA5, modifiers=0x04), Key(0xA5, True, 0x04, 0)),
        (key_packet(True, 0x8000 | 0x5B, modifiers=0x08), Key(0x5B, True, 0x08, 0)),
        (key_packet(True, 0x0D, flags=0x01), Key(0x0D, True, 0, 0x01)),  # Sunshine flag
        (mouse_rel_packet(32767, -32768), MouseRel(32767, -32768)),
        (mouse_abs_packet(0, 0, 1, 1), MouseAbs(0, 0, 1, 1)),
        (mouse_abs_packet(3839, 2159, 3840, 2160), MouseAbs(3839, 2159, 3840, 2160)),
        (mouse_button_packet(True, 1), MouseButton(1, True)),
        (mouse_button_packet(False, 1), MouseButton(1, False)),
        (mouse_button_packet(True, 5), MouseButton(5, True)),
        (mouse_button_packet(False, 3), MouseButton(3, False)),
        (scroll_packet(120), Scroll(120, 0)),
        (scroll_packet(-240), Scroll(-240, 0)),
        (hscroll_packet(-120), Scroll(0, -120)),
        (hscroll_packet(37), Scroll(0, 37)),
        (text_packet("a"), Text("a")),
        (text_packet("é"), Text("é")),
        (text_packet("😀"), Text("😀")),
        (haptics_packet(True), Haptics(True)),
        (haptics_packet(False), Haptics(False)),
        (arrival_packet(0, 2, 0x0F, 0x003FFFFF), ControllerArrival(0, 2, 0x0F, 0x003FFFFF)),
        (arrival_packet(15, 1, 0, 0x7FF), ControllerArrival(15, 1, 0, 0x7FF)),
    ],
)
def test_packets_parse_to_events(packet: bytes, event: object) -> None:
    assert parse_input(packet) == event


def test_mouse_button_magics_are_the_gen5_ones() -> None:
    assert mouse_button_packet(True, 1)[4:8] == b"\x08\0\0\0"
    assert mouse_button_packet(False, 1)[4:8] == b"\x09\0\0\0"


def test_multi_controller_with_button_flags2() -> None:
    buttons = 0x0001 | 0x1000 | 0x8000 | 0x00010000 | 0x00200000  # low and Sunshine high bits
    event = parse_input(
        controller_packet(2, 0b0111, buttons, lt=200, rt=0, lx=-1, ly=1, rx=-32768, ry=32767)
    )
    assert event == Controller(2, 0b0111, PadState(buttons, 200, 0, -1, 1, -32768, 32767))


def test_sixteenth_controller() -> None:
    event = parse_input(controller_packet(15, 0x8000 | 0x1, 0))
    assert isinstance(event, Controller)
    assert event.number == 15
    assert event.active_mask & (1 << 15) and event.active_mask & 1


@pytest.mark.parametrize(
    ("magic", "body", "expected"),
    [
        (
            0x55000002,
            struct.pack("<BBHI5f", 1, 0, 0xFFFF, 7, 0.5, 0.25, 1, 0, 0),
            Touch(TOUCH_DOWN, 7, 0.5, 0.25),
        ),
        (
            0x55000003,
            struct.pack("<BBBB3fHBB2f", 3, 1, 0, 0, 0.5, 0.25, 0.3, 90, 45, 0, 0, 0),
            Touch(TOUCH_MOVE, 0, 0.5, 0.25),
        ),
        (
            0x55000005,
            struct.pack("<BBBBI3f", 1, 1, 0, 0, 3, 0.5, 0.25, 0.3),
            ControllerTouch(1, TOUCH_DOWN, 3, 0.5, 0.25),
        ),
        (
            0x55000006,
            struct.pack("<BBBB3f", 0, 2, 0, 0, 0.0, 1.0, 2.0),
            ControllerMotion(0, MOTION_GYRO, (0.0, 1.0, 2.0)),
        ),
        (0x55000007, struct.pack("<BBBB", 0, 3, 80, 0), ControllerBattery(0, 3, 80)),
    ],
)
def test_sunshine_extension_packets_parse(magic: int, body: bytes, expected: object) -> None:
    """Layouts of moonlight-common-c's SS_TOUCH/SS_PEN/SS_CONTROLLER_* packets (Input.h);
    netfloat is little-endian."""
    assert parse_input(input_packet(magic, body)) == expected
    with pytest.raises(InputError):
        parse_input(input_packet(magic, body[:-1]))


def _truncate_body(packet: bytes, keep: int) -> bytes:
    magic = struct.unpack_from("<I", packet, 4)[0]
    return input_packet(magic, packet[8 : 8 + keep])


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00\x00\x00\x04",
        b"\x00\x00\x00\x04\x03\x00\x00",
        _truncate_body(key_packet(True, 0x41), 3),
        _truncate_body(mouse_rel_packet(1, 1), 3),
        _truncate_body(mouse_abs_packet(1, 1, 10, 10), 9),
        _truncate_body(mouse_button_packet(True, 1), 0),
        _truncate_body(scroll_packet(120), 1),
        _truncate_body(hscroll_packet(120), 1),
        _truncate_body(controller_packet(0, 1, 0), 25),
        _truncate_body(arrival_packet(0, 1, 0, 0), 7),
        _truncate_body(haptics_packet(True), 1),
        input_packet(0x17, b"\xff\xfe"),  # not UTF-8
        input_packet(0x99, b"\0" * 8),  # unknown magic
        input_packet(0x00000006, b"\0" * 4),  # the pre-gen5 relative mouse magic
        input_packet(0x17, b"a" * 2000),  # oversized
        key_packet(True, 0x41)[:-1],  # size field says one byte more than present
        key_packet(True, 0x41) + b"\0",  # ...or one less
        struct.pack(">I", 0xFFFFFFFF) + b"\x03\0\0\0",
    ],
)
def test_bad_packets_raise_input_error(packet: bytes) -> None:
    with pytest.raises(InputError):
        parse_input(packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_only_raises_input_error(data: bytes) -> None:
    with contextlib.suppress(InputError):
        parse_input(data)


MAGICS = [
    0x03,
    0x04,
    0x05,
    0x07,
    0x08,
    0x09,
    0x0A,
    0x0C,
    0x0D,
    0x17,
    *range(0x55000001, 0x55000008),
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=40))
def test_well_framed_packets_only_raise_input_error(magic: int, body: bytes) -> None:
    with contextlib.suppress(InputError):
        parse_input(input_packet(magic, body))


# --- routing ----------------------------------------------------------------------------------


class RecordingInjector:
    """Implements punktfunk.input.base.InputInjector by recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def key(self, vk: int, down: bool, modifiers: int, flags: int = 0) -> None:
        self.calls.append(("key", vk, down, modifiers, flags))

    def text(self, utf8: str) -> None:
        self.calls.append(("text", utf8))

    def mouse_move_rel(self, dx: int, dy: int) -> None:
        self.calls.append(("rel", dx, dy))

    def mouse_move_abs(self, x: int, y: int, surface_w: int, surface_h: int) -> None:
        self.calls.append(("abs", x, y, surface_w, surface_h))

    def mouse_button(self, button: int, down: bool) -> None:
        self.calls.append(("button", button, down))

    def scroll(self, vertical: int, horizontal: int) -> None:
        self.calls.append(("scroll", vertical, horizontal))

    def release_all(self) -> None:
        self.calls.append(("release_all",))

    def close(self) -> None:
        self.calls.append(("close",))


class RecordingPads:
    """Implements punktfunk.input.base.PadManager: a set of live pads plus a call log."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.live: dict[int, PadKind] = {}
        self.states: dict[int, PadState] = {}
        self._feedback: list[Callable[[PadFeedback], None]] = []

    @property
    def available(self) -> bool:
        return True

    def reason(self) -> str:
        return ""

    def arrive(self, index: int, kind: PadKind) -> None:
        assert index not in self.live, f"pad {index} plugged twice"
        self.calls.append(("arrive", index, kind))
        self.live[index] = kind

    def update(self, index: int, state: PadState) -> None:
        assert index in self.live, f"update for unplugged pad {index}"
        self.calls.append(("update", index, state))
        self.states[index] = state

    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        self.calls.append(("touch", index, finger, active, x, y))

    def motion(self, index: int, accel: object = None, gyro: object = None) -> None:
        self.calls.append(("motion", index, accel, gyro))

    def battery(self, index: int, percent: int, charging: bool) -> None:
        self.calls.append(("battery", index, percent, charging))

    def remove(self, index: int) -> None:
        assert index in self.live, f"remove of unplugged pad {index}"
        self.calls.append(("remove", index))
        del self.live[index]

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._feedback.append(callback)

    def close(self) -> None:
        self.calls.append(("close",))
        self.live.clear()


@pytest.fixture
def injector() -> RecordingInjector:
    rec = RecordingInjector()
    assert isinstance(rec, InputInjector)
    return rec


@pytest.fixture
def pads() -> RecordingPads:
    rec = RecordingPads()
    assert isinstance(rec, PadManager)
    return rec


def feed(router: InputRouter, *packets: bytes) -> None:
    for packet in packets:
        router.apply(parse_input(packet))


def test_keyboard_mouse_and_text_routing(injector: RecordingInjector) -> None:
    router = InputRouter(injector, None)
    feed(
        router,
        key_packet(True, 0x8000 | 0xA0, modifiers=0x01),
        key_packet(False, 0x8000 | 0xA0),
        mouse_rel_packet(-3, 4),
        mouse_abs_packet(960, 540, 1920, 1080),
        mouse_button_packet(True, 3),
        mouse_button_packet(False, 3),
        scroll_packet(-120),
        hscroll_packet(240),
        text_packet("ß"),
        haptics_packet(True),
        input_packet(0x55000007, bytes(4)),
    )
    assert injector.calls == [
        ("key", 0xA0, True, 0x01, 0),
        ("key", 0xA0, False, 0, 0),
        ("rel", -3, 4),
        ("abs", 960, 540, 1920, 1080),
        ("button", 3, True),
        ("button", 3, False),
        ("scroll", -120, 0),
        ("scroll", 0, 240),
        ("text", "ß"),
    ]


def test_controller_arrival_update_and_removal(pads: RecordingPads) -> None:
    router = InputRouter(None, pads)
    state = PadState(0x1000, 10, 20, 1, 2, 3, 4)
    feed(
        router,
        # LiSendControllerArrivalEvent: the arrival, then a multi-controller packet
        arrival_packet(0, 2, 0x0F, 0x3FFFFF),
        controller_packet(0, 0b01, 0),
        controller_packet(0, 0b01, 0x1000, 10, 20, 1, 2, 3, 4),
        # a second pad shows up without an arrival event (older clients)
        controller_packet(1, 0b11, 0),
    )
    assert pads.calls[0] == ("arrive", 0, PadKind.DUALSENSE)
    assert pads.states[0] == state
    assert pads.live == {0: PadKind.DUALSENSE, 1: PadKind.XBOX360}
    # pad 1 is unplugged: the next packet's active mask no longer has its bit
    feed(router, controller_packet(0, 0b01, 0))
    assert ("remove", 1) in pads.calls and set(pads.live) == {0}
    # the last pad goes away: mask 0
    feed(router, controller_packet(0, 0b00, 0))
    assert pads.live == {}
    updates = [c for c in pads.calls if c[0] == "update"]
    assert all(c[1] in (0, 1) for c in updates)


def test_arrival_kinds(pads: RecordingPads) -> None:
    router = InputRouter(None, pads)
    feed(router, arrival_packet(0, 1, 0, 0), arrival_packet(1, 0, 0, 0), arrival_packet(2, 2, 0, 0))
    assert pads.live == {0: PadKind.XBOX360, 1: PadKind.XBOX360, 2: PadKind.DUALSENSE}
    feed(router, arrival_packet(2, 2, 0, 0))  # repeated arrival: not plugged twice
    assert len([c for c in pads.calls if c[0] == "arrive"]) == 3


def test_sixteenth_controller_is_routed(pads: RecordingPads) -> None:
    router = InputRouter(None, pads)
    feed(router, controller_packet(15, 0x8000, 0x0010))
    assert pads.live == {15: PadKind.XBOX360}
    assert pads.states[15].buttons == 0x0010
    feed(router, controller_packet(0, 0x0001, 0))
    assert set(pads.live) == {0}


def test_missing_backends_drop_events_quietly() -> None:
    router = InputRouter(None, None)
    feed(router, key_packet(True, 0x41), controller_packet(0, 1, 0), arrival_packet(0, 1, 0, 0))
    router.close()


def test_close_releases_everything(injector: RecordingInjector, pads: RecordingPads) -> None:
    router = InputRouter(injector, pads)
    feed(router, key_packet(True, 0x41), controller_packet(0, 1, 0))
    router.close()
    assert injector.calls[-2:] == [("release_all",), ("close",)]
    assert pads.calls[-1] == ("close",)


def test_controller_touch_motion_and_battery_reach_the_pad(pads: RecordingPads) -> None:
    router = InputRouter(None, pads)
    feed(
        router,
        arrival_packet(0, 2, 0x0F, 0x3FFFFF),
        input_packet(0x55000005, struct.pack("<BBBBI3f", 0, TOUCH_DOWN, 0, 0, 9, 0.5, 0.25, 1)),
        input_packet(0x55000005, struct.pack("<BBBBI3f", 0, 2, 0, 0, 9, 0.5, 0.25, 0)),  # up
        input_packet(0x55000006, struct.pack("<BBBB3f", 0, 1, 0, 0, 0.0, 9.75, 0.0)),
        input_packet(0x55000006, struct.pack("<BBBB3f", 0, MOTION_GYRO, 0, 0, 10.0, 0.0, 0.0)),
        input_packet(0x55000007, struct.pack("<BBBB", 0, 3, 80, 0)),
    )
    assert pads.calls[1:] == [
        ("touch", 0, 0, True, 0.5, 0.25),
        ("touch", 0, 0, False, 0.5, 0.25),
        ("motion", 0, (0.0, 9.75, 0.0), None),
        ("motion", 0, None, (10.0, 0.0, 0.0)),
        ("battery", 0, 80, True),
    ]


def test_a_touchscreen_drives_the_pointer(injector: RecordingInjector) -> None:
    router = InputRouter(injector, None)

    def touch(kind: int, pointer: int, x: float, y: float) -> bytes:
        return input_packet(0x55000002, struct.pack("<BBHI5f", kind, 0, 0, pointer, x, y, 1, 0, 0))

    feed(
        router,
        touch(TOUCH_DOWN, 5, 0.5, 0.5),
        touch(TOUCH_DOWN, 6, 0.1, 0.1),  # a second finger does not steal the pointer
        touch(TOUCH_MOVE, 5, 1.0, 0.0),
        touch(2, 5, 1.0, 0.0),  # up
    )
    assert injector.calls == [
        ("abs", 32767, 32767, 65536, 65536),
        ("button", 1, True),
        ("abs", 65535, 0, 65536, 65536),
        ("button", 1, False),
    ]
