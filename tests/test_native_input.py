"""Native input events -> the InputInjector/PadManager seams (field use per punktfunk's
crates/core/punktfunk-core/src/input.rs), and the client's InputRoute for each host answer."""

from __future__ import annotations

from punktfunk.input.base import PadFeedback, PadKind, PadState
from punktfunk.input.padroute import native_pref
from punktfunk.native.client.client import InputRoute
from punktfunk.native.host.inject import InputApplier, rumble_of
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.native.wire.hello import ServerHello
from punktfunk.native.wire.input import Grant, decode_rumble
from punktfunk.native.wire.registry import HostCap, HostCap2
from punktfunk.native.wire.scroll import ScrollEvent, ScrollPhase, ScrollSource


class Recorder:
    """Records seam calls (the real injectors need an X server or /dev/uinput)."""

    available = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args: self.calls.append((name, *args))


def test_events_map_onto_the_injector_and_pads() -> None:
    inj, pads = Recorder(), Recorder()
    applier = InputApplier(inj, pads)  # type: ignore[arg-type]
    wheel = ScrollEvent(ScrollSource.WHEEL, ScrollPhase.NONE, 1, 60 * 256).to_event()
    for ev in [
        InputEvent(InputKind.KEY_DOWN, 0x41, flags=0x01),
        InputEvent(InputKind.KEY_UP, 0x41),
        InputEvent(InputKind.MOUSE_MOVE, 0, -3, 4),
        # The surface rides in flags (input.rs); without one the event is dropped.
        InputEvent(InputKind.MOUSE_MOVE_ABS, 0, 960, 540, 1920 << 16 | 1080),
        InputEvent(InputKind.MOUSE_MOVE_ABS, 1920 << 16 | 1080, 10, 20),
        InputEvent(InputKind.MOUSE_BUTTON_DOWN, 1),
        InputEvent(InputKind.MOUSE_SCROLL, 0, -120),  # axis 0: vertical, one detent down
        InputEvent(InputKind.MOUSE_SCROLL, 1, 240),  # axis 1: two detents right
        InputEvent(InputKind.MOUSE_SCROLL, 2, 240),  # no such axis
        wheel,  # normalized, half a detent right (Q24.8 v120)
        wheel,
        InputEvent(InputKind.TEXT_INPUT, ord("ß")),
        InputEvent(InputKind.TEXT_INPUT, 0xD800),  # a lone surrogate is no text
        InputEvent(InputKind.GAMEPAD_ARRIVAL, native_pref(PadKind.DUALSENSE), flags=1),
        InputEvent(InputKind.GAMEPAD_STATE, 0x1000, 5 << 16 | 7, 0, 2 << 24 | 255 << 16 | 1),
        InputEvent(InputKind.GAMEPAD_STATE, 0x0, 0, 0, 1 << 24 | 1),  # older seq: ignored
        InputEvent(InputKind.GAMEPAD_REMOVE, flags=1),
        InputEvent(InputKind.TOUCH_DOWN),
    ]:
        applier.apply(ev)
    assert inj.calls == [
        ("key", 0x41, True, 0x01),
        ("key", 0x41, False, 0),
        ("mouse_move_rel", -3, 4),
        ("mouse_move_abs", 960, 540, 1920, 1080),
        ("mouse_button", 1, True),
        ("scroll", -120, 0),
        ("scroll", 0, 240),
        ("scroll", 0, 60),
        ("scroll", 0, 60),
        ("text", "ß"),
    ]
    assert pads.calls == [
        ("arrive", 1, PadKind.DUALSENSE),
        ("update", 1, PadState(0x1000, 255, 0, 5, 7, 0, 0)),
        ("remove", 1),
    ]
    # the surface-less move, the third axis, the lone surrogate and the touch; the stale state
    # never reaches the pads (see pads.calls above)
    assert applier.ignored == 4
    applier.close()
    assert inj.calls[-2:] == [("release_all",), ("close",)] and pads.calls[-1] == ("close",)


def test_pad_feedback_becomes_a_rumble_datagram() -> None:
    wire = rumble_of(PadFeedback(2, rumble_low=0x4000, rumble_high=0x8000))
    assert decode_rumble(wire[1:]) == (2, 0x4000, 0x8000)


def test_per_button_and_axis_pad_events_fold_into_the_pads_state() -> None:
    """What a client sends a host without HOST_CAP_GAMEPAD_STATE (GamepadSnapshot::fold)."""
    pads = Recorder()
    applier = InputApplier(None, pads)  # type: ignore[arg-type]
    for ev in [
        InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 1, flags=2),  # A down on pad 2
        InputEvent(InputKind.GAMEPAD_AXIS, 1, 20000, flags=2),  # left stick up
        InputEvent(InputKind.GAMEPAD_AXIS, 5, 999, flags=2),  # right trigger, clamped to 255
        InputEvent(InputKind.GAMEPAD_AXIS, 9, 1, flags=2),  # no such axis: dropped
        InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 0, flags=2),  # A up
        InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 1, flags=16),  # no such pad
    ]:
        applier.apply(ev)
    updates = [c[2] for c in pads.calls if c[0] == "update"]
    assert updates == [
        PadState(0x1000, 0, 0, 0, 0, 0, 0),
        PadState(0x1000, 0, 0, 0, 20000, 0, 0),
        PadState(0x1000, 0, 255, 0, 20000, 0, 0),
        PadState(0, 0, 255, 0, 20000, 0, 0),
    ]
    assert applier.ignored == 2


def test_grants_gate_each_class() -> None:
    inj, pads = Recorder(), Recorder()
    applier = InputApplier(inj, pads, grants=Grant.GAMEPAD)  # type: ignore[arg-type]
    applier.apply(InputEvent(InputKind.KEY_DOWN, 0x41))
    applier.apply(InputEvent(InputKind.MOUSE_MOVE, 0, 1, 1))
    applier.apply(InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 1))
    assert inj.calls == [] and [c[0] for c in pads.calls] == ["arrive", "update"]


def _route(host_caps: int, host_caps2: int) -> InputRoute:
    return InputRoute(ServerHello(host_caps=host_caps, host_caps2=host_caps2))


def test_the_client_routes_as_the_rust_client_does_for_each_host_answer() -> None:
    key = InputEvent(InputKind.KEY_DOWN, 0x41)
    move = InputEvent(InputKind.MOUSE_MOVE, 0, 1, 1)
    a_down = InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 1)
    stick = InputEvent(InputKind.GAMEPAD_AXIS, 0, -5)
    wheel = ScrollEvent(ScrollSource.WHEEL, ScrollPhase.NONE, 0, 120 * 256).to_event()
    remove = InputEvent(InputKind.GAMEPAD_REMOVE, flags=0)
    batch = [key, a_down, stick, move, wheel, remove]
    # An older host: every event a datagram, pads per transition, scroll in the legacy form.
    assert _route(0, 0).route(batch) == [
        (key, False), (a_down, False), (stick, False), (move, False),
        (InputEvent(InputKind.MOUSE_SCROLL, 0, 120), False), (remove, False),
    ]  # fmt: skip
    # This host's answer: keys on the control stream, one snapshot (seq 1) for the folded
    # button and axis, scroll unchanged, the removal takes the next seq.
    ours = _route(HostCap.GAMEPAD_STATE, HostCap2.INPUT_EDGES | HostCap2.SCROLL).route(batch)
    snap = InputEvent(InputKind.GAMEPAD_STATE, 0x1000, (0xFFFB << 16) - (1 << 32), 0, 1 << 24)
    assert ours == [
        (key, True), (snap, False), (move, False), (wheel, False),
        (InputEvent(InputKind.GAMEPAD_REMOVE, flags=2 << 24), False),
    ]  # fmt: skip
    # The grants gate on the way out too.
    viewer = InputRoute(ServerHello(grants=Grant.POINTER))
    assert viewer.route([key, move, a_down]) == [(move, False)]
