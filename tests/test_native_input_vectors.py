"""The Rust punktfunk's own input test data and `input.rs` round-trip cases, replayed.

Each test names the Rust file it reproduces; the JSON files are copied into tests/data/rust/
(source path and commit in its README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from punktfunk.input import reports
from punktfunk.input.base import PadKind
from punktfunk.input.uinput import IDENTITIES
from punktfunk.input.vk import VK_EVDEV, VK_KEYSYMS, evdev_to_vk, key_vk
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.native.wire.input import (
    AXIS_LS_Y,
    AXIS_LT,
    NEUTRAL,
    Grant,
    classify,
    fold,
    grant_level,
    normalize_grants,
)
from punktfunk.native.wire.registry import DgramTag
from punktfunk.native.wire.scroll import (
    ScrollAccumulator,
    ScrollEvent,
    ScrollOutput,
    ScrollPhase,
    ScrollSource,
)

DATA = Path(__file__).parent / "data" / "rust"


def _vectors(name: str) -> dict:
    return json.loads((DATA / name).read_text())


# --- crates/core/punktfunk-core/testdata/key-vk-vectors.json (input.rs `key_vk`) -----------


def test_key_vk_vectors() -> None:
    cases = _vectors("key-vk-vectors.json")["cases"]
    assert len(cases) == 228
    wrong = [(c["name"], c["vk"], key_vk(c["name"])) for c in cases if key_vk(c["name"]) != c["vk"]]
    assert wrong == []


# --- crates/core/punktfunk-core/testdata/evdev-vk-vectors.json (input.rs `evdev_to_vk`) -----


def test_evdev_vk_vectors_and_the_host_maps_each_back() -> None:
    cases = _vectors("evdev-vk-vectors.json")["cases"]
    assert [c["evdev"] for c in cases] == list(range(256))
    assert [(c["evdev"], evdev_to_vk(c["evdev"])) for c in cases] == [
        (c["evdev"], c["vk"]) for c in cases
    ]
    # input.rs `roundtrips_through_the_host_table`: the host puts every wire VK back on the
    # key it came from; numpad digits it types by keysym (its NumLock is not the client's).
    for c in cases:
        vk = c["vk"]
        if vk is None:
            continue
        if 0x60 <= vk <= 0x69:
            assert vk in VK_KEYSYMS, vk
        else:
            assert VK_EVDEV[vk] == c["evdev"], c
    assert evdev_to_vk(113) is None  # KEY_MUTE: not in the wire contract


# --- crates/core/punktfunk-core/testdata/gamepad-button-vectors.json -----------------------

_OURS = {
    "A": reports.BUTTON_A, "B": reports.BUTTON_B, "X": reports.BUTTON_X, "Y": reports.BUTTON_Y,
    "LB": reports.LEFT_SHOULDER, "RB": reports.RIGHT_SHOULDER, "BACK": reports.BACK,
    "START": reports.START, "GUIDE": reports.GUIDE, "LS_CLICK": reports.LEFT_THUMB,
    "RS_CLICK": reports.RIGHT_THUMB, "DPAD_UP": reports.DPAD_UP, "DPAD_DOWN": reports.DPAD_DOWN,
    "DPAD_LEFT": reports.DPAD_LEFT, "DPAD_RIGHT": reports.DPAD_RIGHT,
    "TOUCHPAD": reports.TOUCHPAD_CLICK, "MISC1": reports.MISC,
}  # fmt: skip


def test_gamepad_button_vectors_match_our_bits_and_the_generic_pad() -> None:
    rows = _vectors("gamepad-button-vectors.json")["buttons"]
    assert {r["name"] for r in rows} >= set(_OURS)
    generic = IDENTITIES[PadKind.XBOX360].buttons  # our generic (evdev) virtual pad
    for row in rows:
        if row["name"] in _OURS:
            assert _OURS[row["name"]] == row["bit"], row
        # The D-pad is a hat; paddles have no key on our generic pad (they are dropped there).
        if row["code"] is not None and not row["name"].startswith("PADDLE"):
            assert generic[row["bit"]] == row["code"], row


# --- crates/core/punktfunk-core/testdata/scroll-vectors.json (input/scroll.rs) -------------


@pytest.mark.parametrize("case", _vectors("scroll-vectors.json")["cases"], ids=lambda c: c["name"])
def test_scroll_vectors(case: dict) -> None:
    acc = ScrollAccumulator()
    for step in case["steps"]:
        ev = acc.event(
            ScrollSource(step["source"]), ScrollPhase(step["phase"]), step["axis"], step["delta"]
        )
        wire = step["wire"]
        if wire is None:
            assert ev is None, step
            continue
        assert ev is not None, step
        flags = wire["source"] | wire["phase"] << 8
        assert ev == InputEvent(InputKind.SCROLL, wire["axis"], wire["delta"], 0, flags)
        encoded = ev.encode()
        assert encoded[:2] == bytes((DgramTag.INPUT, 16))
        back = ScrollEvent.from_event(InputEvent.decode(encoded))  # type: ignore[arg-type]
        assert back is not None
        assert (back.source, back.phase, back.axis, back.delta) == (
            wire["source"], wire["phase"], wire["axis"], wire["delta"],
        )  # fmt: skip


def test_scroll_rs_malformed_bodies_reject_and_legacy_seam() -> None:
    base = ScrollEvent(ScrollSource.WHEEL, ScrollPhase.NONE, 0, 120 * 256).to_event()
    for bad in (
        InputEvent(InputKind.SCROLL, 2, base.x, 0, base.flags),  # axis
        InputEvent(InputKind.SCROLL, 0, base.x, 1, base.flags),  # y
        InputEvent(InputKind.SCROLL, 0, base.x, 0, base.flags | 0x1_0000),  # reserved flags
        InputEvent(InputKind.SCROLL, 0, base.x, 0, 6),  # source
        InputEvent(InputKind.SCROLL, 0, base.x, 0, 1 | 8 << 8),  # phase
        InputEvent(InputKind.SCROLL, 0, base.x, 0, 1 | 2 << 8),  # a wheel with a phase
        InputEvent(InputKind.SCROLL, 0, 5, 0, 2 | 3 << 8),  # a stop with distance
        InputEvent(InputKind.SCROLL, 0, 5, 0, 5 | 6 << 8),  # controller momentum
    ):
        assert ScrollEvent.from_event(bad) is None, bad
    # Toward a host without HOST_CAP2_SCROLL: one detent down is MOUSE_SCROLL axis 0, x -120;
    # a finger's DIP re-prices at 12 per pixel with the precise flag.
    out = ScrollOutput(normalized=False)
    down = ScrollEvent(ScrollSource.WHEEL, ScrollPhase.NONE, 0, -120 * 256).to_event()
    assert out.prepare(down) == InputEvent(InputKind.MOUSE_SCROLL, 0, -120, 0, 0)
    finger = ScrollEvent(ScrollSource.FINGER, ScrollPhase.UPDATE, 1, 5 * 256).to_event()
    assert out.prepare(finger) == InputEvent(InputKind.MOUSE_SCROLL, 1, 60, 0, 1)
    assert ScrollOutput(normalized=True).prepare(down) == down


# --- crates/core/punktfunk-core/testdata/grant-vectors.json (quic/access.rs) ---------------


def test_grant_vectors() -> None:
    v = _vectors("grant-vectors.json")
    assert {g.name: int(g) for g in Grant} == v["bits"]
    assert (v["all"], v["all_pre_power"], v["all_pre_manage"]) == (255, 63, 127)
    for row in v["masks"]:
        assert normalize_grants(row["mask"]) == row["normalized"], row
        assert grant_level(row["mask"]) == row["level"], row
    # quic::classify: which grant each input kind needs.
    assert classify(InputKind.KEY_UP) is classify(InputKind.TEXT_INPUT) is Grant.KEYBOARD
    assert classify(InputKind.SCROLL) is classify(InputKind.TOUCH_UP) is Grant.POINTER
    assert classify(InputKind.GAMEPAD_AXIS) is classify(InputKind.GAMEPAD_ARRIVAL) is Grant.GAMEPAD


# --- crates/core/punktfunk-core/src/input.rs tests -----------------------------------------


def test_input_rs_wire_roundtrip() -> None:
    e = InputEvent(InputKind.MOUSE_MOVE, 0, -12, 34, 0xABCD)
    wire = e.encode()
    assert wire == bytes.fromhex("c80200000000f4ffffff22000000cdab0000")
    assert InputEvent.decode(wire) == e
    assert InputEvent.decode(bytes(18)) is None
    for kind in (InputKind.TOUCH_DOWN, InputKind.TOUCH_MOVE, InputKind.TOUCH_UP):
        t = InputEvent(kind, 2, 640, 360, 1280 << 16 | 720)
        assert InputEvent.decode(t.encode()) == t
    assert [InputKind(k).name for k in (13, 14, 15, 16)] == [
        "GAMEPAD_REMOVE", "GAMEPAD_ARRIVAL", "TEXT_INPUT", "SCROLL",
    ]  # fmt: skip
    assert InputEvent.decode(bytes((0xC8, 17)) + bytes(16)) is None  # one past the last kind
    for cp in (ord("a"), ord("ß"), ord("語"), 0x1F600):
        t = InputEvent(InputKind.TEXT_INPUT, cp)
        assert InputEvent.decode(t.encode()) == t


def test_input_rs_gamepad_remove_and_arrival_flags() -> None:
    from punktfunk.input.padroute import native_arrival, native_remove

    for pad, seq in ((0, 0), (3, 200), (15, 255), (7, 1)):
        assert native_remove(seq << 24 | pad) == (pad, seq)
    for pad in (0, 3, 15, 7):
        for caps in (0, 1, 2, 3):
            assert native_arrival(1, pad | caps << 8)[0] == pad
    assert native_arrival(1, 0xFFFF_0000 | 1 << 8 | 9)[0] == 9  # high bits never the index


def test_input_rs_gamepad_snapshot_roundtrip() -> None:
    from punktfunk.input.padroute import native_state

    buttons = 0x1000 | 0x8_0000 | 0x20_0000  # A, PADDLE4, MISC1
    x, y = (0x8000 << 16 | 0x7FFF), (0xFFFF << 16 | 12345)
    ev = InputEvent(InputKind.GAMEPAD_STATE, buttons, x - (1 << 32), y - (1 << 32),
                    200 << 24 | 255 << 16 | 1 << 8 | 3)  # fmt: skip
    back = InputEvent.decode(ev.encode())
    assert back == ev
    pad, seq, st = native_state(back.code, back.x, back.y, back.flags)
    assert (pad, seq, st.buttons, st.left_trigger, st.right_trigger) == (3, 200, buttons, 255, 1)
    assert (st.thumb_lx, st.thumb_ly, st.thumb_rx, st.thumb_ry) == (-32768, 32767, -1, 12345)


def test_input_rs_gamepad_snapshot_fold() -> None:
    def ev(kind: InputKind, code: int, x: int) -> InputEvent:
        return InputEvent(kind, code, x)

    s = fold(NEUTRAL, ev(InputKind.GAMEPAD_BUTTON, 0x1000, 1))  # A
    s = fold(s, ev(InputKind.GAMEPAD_BUTTON, 0x0200, 1))  # RB
    assert s is not None and s.buttons == 0x1200
    s = fold(s, ev(InputKind.GAMEPAD_BUTTON, 0x1000, 0))
    assert s is not None and s.buttons == 0x0200
    s = fold(s, ev(InputKind.GAMEPAD_AXIS, AXIS_LT, 300))
    assert s is not None and s.left_trigger == 255
    s = fold(s, ev(InputKind.GAMEPAD_AXIS, AXIS_LS_Y, -40000))
    assert s is not None and s.thumb_ly == -32768
    assert fold(s, ev(InputKind.GAMEPAD_AXIS, 99, 1)) is None
    assert fold(s, ev(InputKind.KEY_DOWN, 30, 1)) is None


def test_input_rs_gamepad_snapshot_seq_gate() -> None:
    from punktfunk.input.padroute import seq_newer

    assert seq_newer(6, 5) and not seq_newer(5, 5) and not seq_newer(4, 5)
    assert seq_newer(2, 250) and not seq_newer(250, 2)
    assert not seq_newer(133, 5)  # distance 128 is stale


def test_input_rs_key_names() -> None:
    assert key_vk("ctrl") == 0x11 and key_vk(" Meta ") == 0x5B and key_vk("F4") == 0x73
    assert key_vk("z") == 0x5A and key_vk("f25") is None and key_vk("") is None
