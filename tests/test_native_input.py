"""Native input events -> the InputInjector/PadManager seams (field use per input.rs)."""

from __future__ import annotations

from punktfunk.input.base import PadFeedback, PadKind, PadState
from punktfunk.input.padroute import native_pref
from punktfunk.native.dgram import InputEvent, InputKind
from punktfunk.native.input import InputApplier, decode_rumble, rumble_of


class Recorder:
    """Records seam calls (the real injectors need an X server or /dev/uinput)."""

    available = True

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args: self.calls.append((name, *args))


def test_events_map_onto_the_injector_and_pads() -> None:
    inj, pads = Recorder(), Recorder()
    applier = InputApplier(inj, pads, (1280, 720))  # type: ignore[arg-type]
    for ev in [
        InputEvent(InputKind.KEY_DOWN, 0x41, flags=0x01),
        InputEvent(InputKind.KEY_UP, 0x41),
        InputEvent(InputKind.MOUSE_MOVE, 0, -3, 4),
        InputEvent(InputKind.MOUSE_MOVE_ABS, 1920 << 16 | 1080, 960, 540),
        InputEvent(InputKind.MOUSE_MOVE_ABS, 0, 10, 20),
        InputEvent(InputKind.MOUSE_BUTTON_DOWN, 1),
        InputEvent(InputKind.SCROLL, 0, 0, -120),
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
        ("mouse_move_abs", 10, 20, 1280, 720),
        ("mouse_button", 1, True),
        ("scroll", -120, 0),
        ("text", "ß"),
    ]
    assert pads.calls == [
        ("arrive", 1, PadKind.DUALSENSE),
        ("update", 1, PadState(0x1000, 255, 0, 5, 7, 0, 0)),
        ("remove", 1),
    ]
    assert applier.ignored == 2  # the lone surrogate and the touch; the stale state never
    # reaches the pads (see pads.calls above)
    applier.close()
    assert inj.calls[-2:] == [("release_all",), ("close",)] and pads.calls[-1] == ("close",)


def test_pad_feedback_becomes_a_rumble_datagram() -> None:
    wire = rumble_of(PadFeedback(2, rumble_low=0x4000, rumble_high=0x8000))
    assert decode_rumble(wire[1:]) == (2, 0x4000, 0x8000)
