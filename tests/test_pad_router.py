"""PadRouter: the protocol-neutral controller entry, unit-level and live.

Live: real client bytes of both wire protocols (a Moonlight controller packet built per
moonlight-common-c, and punktfunk/2 18-byte input events) go through the protocol's own parser
and the router into `ShmPadManager`; a SEPARATE process that knows only the pinned offsets
(the `test_pads_shm` consumer) must read exactly the sent state, and the rumble / output report
it writes back must reach the router's feedback callback. Without /dev/uinput the uinput
manager must say why and the router must keep taking every call.
"""

from __future__ import annotations

import logging
import queue
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gs_client import arrival_packet, controller_packet
from punktfunk.gamestream.input import Controller, ControllerArrival, parse_input
from punktfunk.input.base import PadFeedback, PadKind, PadManager, PadState
from punktfunk.input.padroute import (
    PadRouter,
    gamestream_battery,
    gamestream_kind,
    native_arrival,
    native_kind,
    native_motion,
    native_remove,
    native_state,
    native_touch,
    seq_newer,
    trigger_effects,
)
from punktfunk.input.pads import ShmPadManager, open_pad_manager
from punktfunk.input.reports import BUTTON_A, BUTTON_B, DPAD_DOWN, TOUCHPAD_CLICK
from punktfunk.input.uinput import UinputPadManager
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.proto.gamepad import GAMEPAD_PROTO_VERSION, PAD_MAGIC, XUSB_MAGIC
from test_pads_shm import Consumer


class Recorder:
    """A PadManager that records calls and insists on plug-before-use."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.live: dict[int, PadKind] = {}
        self.callbacks: list[Callable[[PadFeedback], None]] = []

    @property
    def available(self) -> bool:
        return True

    def reason(self) -> str:
        return ""

    def arrive(self, index: int, kind: PadKind) -> None:
        self.calls.append(("arrive", index, kind))
        self.live[index] = kind

    def update(self, index: int, state: PadState) -> None:
        assert index in self.live
        self.calls.append(("update", index, state.buttons))

    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        assert index in self.live
        self.calls.append(("touch", index, finger, active, x, y))

    def motion(self, index: int, accel: object = None, gyro: object = None) -> None:
        assert index in self.live
        self.calls.append(("motion", index, accel, gyro))

    def battery(self, index: int, percent: int, charging: bool) -> None:
        assert index in self.live
        self.calls.append(("battery", index, percent, charging))

    def remove(self, index: int) -> None:
        assert index in self.live
        self.calls.append(("remove", index))
        del self.live[index]

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self.callbacks.append(callback)

    def close(self) -> None:
        self.calls.append(("close",))


def _state(buttons: int) -> PadState:
    return PadState(buttons, 0, 0, 0, 0, 0, 0)


def test_recorder_and_managers_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(Recorder(), PadManager)
    shm = ShmPadManager("p", directory=tmp_path)
    assert isinstance(shm, PadManager)
    shm.close()
    assert isinstance(UinputPadManager("p", path=tmp_path / "uinput"), PadManager)


def test_gamestream_style_mask_unplugs_and_state_plugs() -> None:
    rec = Recorder()
    router = PadRouter(rec, default_kind=PadKind.XBOX360)
    router.arrive(0, PadKind.DUALSENSE)
    router.arrive(0, PadKind.DUALSENSE)  # idempotent
    router.state(0, _state(1), active_mask=0b011)
    router.state(1, _state(2), active_mask=0b011)  # no arrival (older client): default kind
    router.state(0, _state(3), active_mask=0b001)  # pad 1's bit cleared: unplugged
    router.state(0, _state(0), active_mask=0b000)  # pad 0's own bit cleared: its last word
    assert rec.calls == [
        ("arrive", 0, PadKind.DUALSENSE),
        ("update", 0, 1),
        ("arrive", 1, PadKind.XBOX360),
        ("update", 1, 2),
        ("remove", 1),
        ("update", 0, 3),
        ("remove", 0),
    ]
    # Replugged by a later state, it comes back as the kind it declared.
    router.state(0, _state(4), active_mask=0b001)
    assert rec.calls[-2:] == [("arrive", 0, PadKind.DUALSENSE), ("update", 0, 4)]
    assert router.plugged == {0: PadKind.DUALSENSE}


def test_native_style_seq_gating_and_removal() -> None:
    rec = Recorder()
    router = PadRouter(rec, default_kind=PadKind.DUALSHOCK4)
    router.arrive(2)  # auto: the session default
    router.state(2, _state(1), seq=250)
    router.state(2, _state(2), seq=249)  # reordered: older, dropped
    router.state(2, _state(3), seq=3)  # wrapped: newer
    router.remove(2, seq=4)
    router.state(2, _state(5), seq=4)  # as old as the removal: must not replug
    router.state(2, _state(6), seq=5)  # newer: the pad is back
    assert rec.calls == [
        ("arrive", 2, PadKind.DUALSHOCK4),
        ("update", 2, 1),
        ("update", 2, 3),
        ("remove", 2),
        ("arrive", 2, PadKind.DUALSHOCK4),
        ("update", 2, 6),
    ]
    assert seq_newer(0, 255) and seq_newer(127, 0) and not seq_newer(128, 0)


def test_kind_change_replugs_extras_need_a_plugged_pad_and_close_unplugs() -> None:
    rec = Recorder()
    router = PadRouter(rec)
    router.touch(0, 0, True, 0.5, 0.5)  # not plugged: dropped
    router.arrive(0, PadKind.XBOX360)
    router.arrive(0, PadKind.DUALSENSE)
    router.touch(0, 77, True, 1.5, -0.5)  # first contact: slot 0, clamped into [0, 1]
    router.touch(0, 5, True, 0.25, 0.75)  # second: slot 1
    router.touch(0, 9, True, 0.5, 0.5)  # third concurrent contact: dropped
    router.touch(0, 77, False, 0.5, 0.5)  # lifts slot 0
    router.touch(0, 9, True, 0.5, 0.5)  # now it gets slot 0
    router.motion(0, accel=(0.0, 9.8, 0.0))
    router.battery(0, 130, True)
    router.state(16, _state(1))  # out of range: dropped
    router.arrive(3, PadKind.XBOX360)
    router.close()
    assert rec.calls == [
        ("arrive", 0, PadKind.XBOX360),
        ("arrive", 0, PadKind.DUALSENSE),
        ("touch", 0, 0, True, 1.0, 0.0),
        ("touch", 0, 1, True, 0.25, 0.75),
        ("touch", 0, 0, False, 0.5, 0.5),
        ("touch", 0, 0, True, 0.5, 0.5),
        ("motion", 0, (0.0, 9.8, 0.0), None),
        ("battery", 0, 100, True),
        ("arrive", 3, PadKind.XBOX360),
        ("remove", 0),
        ("remove", 3),
        ("close",),
    ]


def test_no_manager_is_a_quiet_no_op() -> None:
    router = PadRouter(None)
    router.arrive(0, PadKind.DUALSENSE)
    router.state(0, _state(1), active_mask=1)
    router.touch(0, 0, True, 0.1, 0.1)
    router.on_feedback(lambda fb: None)
    router.remove(0)
    router.close()
    assert router.plugged == {}


def test_field_helpers() -> None:
    assert gamestream_kind(2) is PadKind.DUALSENSE and gamestream_kind(1) is PadKind.XBOX360
    assert gamestream_kind(0) is None
    assert native_kind(4) is PadKind.DUALSHOCK4 and native_kind(7) is PadKind.DUALSENSE
    assert native_kind(0) is None and native_kind(5) is None
    assert native_arrival(2, 3 | 0x300) == (3, PadKind.DUALSENSE)  # audio-cap bits ignored
    assert native_remove(200 << 24 | 9) == (9, 200)
    assert gamestream_battery(3, 55) == (55, True)
    assert gamestream_battery(2, 0xFF) == (50, False)
    assert gamestream_battery(5, 0xFF) == (100, True)
    assert native_touch(0xFFFF, 0) == (1.0, 0.0)
    accel, gyro = native_motion((20, -40, 0), (0, 10_000, -5_000))
    assert gyro == (1.0, -2.0, 0.0)
    assert accel == pytest.approx((0.0, 9.80665, -4.903325))
    right, left = bytes([0x21, *range(10)]), bytes([0x26, *range(10, 20)])
    assert trigger_effects(bytes([0x0C]) + right + left) == [(0, left), (1, right)]
    assert trigger_effects(bytes([0x04]) + right + bytes(11)) == [(1, right)]
    pad, seq, state = native_state(
        BUTTON_A | TOUCHPAD_CLICK,
        (0x8000 << 16) | 0x7FFF,
        (0xFFFF << 16) | 12345,
        (7 << 24) | (255 << 16) | (1 << 8) | 5,
    )
    assert (pad, seq) == (5, 7)
    assert state == PadState(BUTTON_A | TOUCHPAD_CLICK, 255, 1, -32768, 32767, -1, 12345)


# --- live: client bytes -> router -> shared memory -> a separate consumer process ------------


def _feed_gamestream(router: PadRouter, packet: bytes) -> None:
    """What the GameStream side does with a parsed controller packet."""
    match parse_input(packet):
        case ControllerArrival(number, kind, _, _):
            router.arrive(number, gamestream_kind(kind))
        case Controller(number, mask, state):
            router.state(number, state, active_mask=mask)


def _feed_native(router: PadRouter, data: bytes) -> None:
    """What the punktfunk/2 side does with a decoded 18-byte input event."""
    ev = InputEvent.decode(data)
    assert ev is not None
    if ev.kind is InputKind.GAMEPAD_ARRIVAL:
        router.arrive(*native_arrival(ev.code, ev.flags))
    elif ev.kind is InputKind.GAMEPAD_STATE:
        pad, seq, state = native_state(ev.code, ev.x, ev.y, ev.flags)
        router.state(pad, state, seq=seq)
    elif ev.kind is InputKind.GAMEPAD_REMOVE:
        pad, seq = native_remove(ev.flags)
        router.remove(pad, seq=seq)


@pytest.fixture
def live(tmp_path: Path):
    feedback: queue.Queue[PadFeedback] = queue.Queue()
    pads = ShmPadManager("live", directory=tmp_path)
    router = PadRouter(pads)
    router.on_feedback(feedback.put)
    yield router, pads, feedback
    router.close()


def test_gamestream_controller_reaches_a_consumer_process_and_rumble_comes_back(live) -> None:
    router, pads, feedback = live
    _feed_gamestream(router, arrival_packet(1, 1, 0x02, 0x7FF))  # Xbox, rumble capable
    buttons = BUTTON_A | BUTTON_B | DPAD_DOWN
    packet = controller_packet(1, 0b10, buttons, lt=17, rt=254, lx=-32768, ly=32767, rx=-2, ry=3)
    _feed_gamestream(router, packet)
    consumer = Consumer(pads.path(1))
    try:
        shm = consumer.dump()
        assert len(shm) == 64
        expected = struct.pack("<IIHBBhhhh", XUSB_MAGIC, 2, buttons, 17, 254, -32768, 32767, -2, 3)
        assert shm[:20] == expected  # magic, packet (arrival 1 + one state), the state itself
        assert struct.unpack_from("<I", shm, 40)[0] == 1  # pad_index
        assert consumer.ask(f"attach {GAMEPAD_PROTO_VERSION}") == "ok"
        assert consumer.ask("rumble 255 1") == "ok"
        assert feedback.get(timeout=2) == PadFeedback(1, 65535, 257)
        # The client unplugs it (mask bit cleared): the section is invalidated and removed.
        _feed_gamestream(router, controller_packet(1, 0, 0))
        assert consumer.dump()[:4] == bytes(4)
        assert not pads.path(1).exists()
    finally:
        consumer.close()


def test_native_dualsense_reaches_a_consumer_process_and_feedback_comes_back(live) -> None:
    router, pads, feedback = live
    arrival = InputEvent(InputKind.GAMEPAD_ARRIVAL, code=2, flags=0).encode()  # DualSense
    assert arrival == bytes.fromhex("c8 0e 02000000 00000000 00000000 00000000")
    _feed_native(router, arrival)
    x = (1000 & 0xFFFF) << 16 | (-1000 & 0xFFFF)  # ls_x 1000, ls_y -1000 (+y up)
    state = InputEvent(InputKind.GAMEPAD_STATE, code=BUTTON_A, x=x, y=0, flags=1 << 24 | 200 << 16)
    _feed_native(router, state.encode())
    router.touch(0, 0x1234, True, 1.0, 0.0)
    router.motion(0, gyro=(1.0, 2.0, 3.0))
    consumer = Consumer(pads.path(0))
    try:
        shm = consumer.dump()
        assert len(shm) == 256
        assert struct.unpack_from("<I", shm, 0)[0] == PAD_MAGIC and shm[140] == 0
        report = shm[8:72]
        # sticks: 1000 -> 131, -1000 (+y up) -> 131 down; right stick centred; L2 200, R2 0
        assert report[:7] == bytes([0x01, 131, 131, 128, 128, 200, 0])
        assert report[8] == 0x08 | 0x20  # hat centred, cross
        assert report[9] == 0x04  # L2 pressed
        assert struct.unpack_from("<3h", report, 16) == (1024, 2048, 3072)  # gyro
        assert report[33:37] == bytes([0x00, 0x7F, 0x07, 0x00])  # finger 0 at (1919, 0)
        # A stale state (older seq) must not change a byte.
        stale = InputEvent(InputKind.GAMEPAD_STATE, code=0, flags=0 << 24)
        _feed_native(router, stale.encode())
        assert consumer.dump()[8:72] == report
        # The game sets rumble and the lightbar through a DualSense output report.
        out = bytearray(48)
        out[0], out[1], out[2] = 0x02, 0x01, 0x04 | 0x10 | 0x01  # rumble; LED, players, mic
        out[3], out[4] = 0x10, 0x20
        out[9] = 2  # mic LED pulsing
        out[44] = 0x04 | 0xE0  # the middle player LED (upper bits are not LEDs)
        out[45:48] = bytes([0, 0, 255])
        assert consumer.ask(f"output {out.hex()}") == "ok"
        fb = feedback.get(timeout=2)
        assert fb == PadFeedback(0, 0x20 * 257, 0x10 * 257, (0, 0, 255), None, 0x04, 2)
        removal = InputEvent(InputKind.GAMEPAD_REMOVE, flags=2 << 24).encode()
        _feed_native(router, removal)
        assert not pads.path(0).exists()
    finally:
        consumer.close()


def test_without_uinput_the_session_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """This kernel has no uinput: a clear reason, logged, and every routed call is harmless."""
    with caplog.at_level(logging.WARNING, logger="punktfunk.input.uinput"):
        pads = UinputPadManager("nouinput", path=tmp_path / "uinput")
    assert not pads.available
    assert "does not exist" in pads.reason() and "session continues" in pads.reason()
    assert any("pads.unavailable" in r.getMessage() for r in caplog.records)
    router = PadRouter(pads)
    router.on_feedback(lambda fb: None)
    router.arrive(0, PadKind.DUALSENSE)
    router.state(0, _state(BUTTON_A), active_mask=1)
    router.touch(0, 0, True, 0.5, 0.5)
    router.motion(0, accel=(0.0, 9.8, 0.0), gyro=(0.0, 0.0, 0.0))
    router.battery(0, 80, False)
    router.remove(0)
    router.close()


def test_auto_backend_without_uinput_says_so_and_uses_shared_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a session gets on this kernel: a warning naming the reason, then working pads."""
    with caplog.at_level(logging.WARNING, logger="punktfunk.input.pads"):
        pads = open_pad_manager("auto", shm_dir=tmp_path, uinput_path=tmp_path / "uinput")
    try:
        text = caplog.text
        assert "pads.uinput_unavailable" in text and "does not exist" in text
        assert "shared-memory pads" in text
        assert isinstance(pads, ShmPadManager) and pads.available
        router = PadRouter(pads)
        router.state(0, _state(BUTTON_A), active_mask=1)
        assert pads.path(0).exists()
    finally:
        pads.close()
