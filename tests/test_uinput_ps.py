"""PlayStation companion devices (motion sensors, touchpad) of the uinput backend.

No /dev/uinput here, so: every event and property code is checked against the installed
linux/input-event-codes.h, the ioctl sequences against hid-playstation's shapes, and the
manager's wiring by standing pipes in for the device nodes (what it writes to each device is
read back and decoded as `struct input_event`s).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from punktfunk.input import uinput as uinput_module
from punktfunk.input import uinput_abi as abi
from punktfunk.input import uinput_ps as ps
from punktfunk.input.base import PadKind, PadState
from punktfunk.input.reports import BUTTON_A, TOUCHPAD_CLICK, Touch
from punktfunk.input.uinput import IDENTITIES, UinputPadManager, companion_ioctls

HEADER = Path("/usr/include/linux/input-event-codes.h")
NAMES = [
    "EV_SYN", "EV_KEY", "EV_ABS", "EV_MSC", "EV_FF", "SYN_REPORT", "MSC_TIMESTAMP",
    "ABS_X", "ABS_Y", "ABS_Z", "ABS_RX", "ABS_RY", "ABS_RZ", "ABS_HAT0X", "ABS_HAT0Y",
    "ABS_MT_SLOT", "ABS_MT_POSITION_X", "ABS_MT_POSITION_Y", "ABS_MT_TRACKING_ID",
    "BTN_LEFT", "BTN_TOOL_FINGER", "BTN_TOUCH", "BTN_TOOL_DOUBLETAP", "BTN_SOUTH", "BTN_EAST",
    "BTN_NORTH", "BTN_WEST", "BTN_TL", "BTN_TR", "BTN_TL2", "BTN_TR2", "BTN_SELECT",
    "BTN_START", "BTN_MODE", "BTN_THUMBL", "BTN_THUMBR", "FF_RUMBLE", "BUS_USB",
    "INPUT_PROP_POINTER", "INPUT_PROP_BUTTONPAD", "INPUT_PROP_ACCELEROMETER",
]  # fmt: skip


def _header_values() -> dict[str, int]:
    text = HEADER.read_text() + Path("/usr/include/linux/input.h").read_text()
    return {
        m.group(1): int(m.group(2), 0)
        for m in re.finditer(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", text, re.M)
    }


def test_codes_match_the_installed_kernel_headers() -> None:
    assert HEADER.exists(), "linux-libc-dev is not installed (scripts/setup.sh installs it)"
    values = _header_values()
    for name in NAMES:
        assert getattr(abi, name) == values[name], name


def _events(raw: bytes) -> list[tuple[int, int, int]]:
    size = 24
    assert len(raw) % size == 0
    out = []
    for off in range(0, len(raw), size):
        ev = abi.InputEvent.from_buffer_copy(raw, off)
        out.append((ev.type, ev.code, ev.value))
    return out


def _setups(calls: list[tuple[int, bytes | int]]) -> dict[int, abi.InputAbsinfo]:
    return {
        abi.UinputAbsSetup.from_buffer_copy(arg).code: abi.UinputAbsSetup.from_buffer_copy(
            arg
        ).absinfo
        for request, arg in calls
        if request == abi.UI_ABS_SETUP and isinstance(arg, bytes)
    }


def test_sensor_device_is_shaped_like_hid_playstation() -> None:
    ds = IDENTITIES[PadKind.DUALSENSE]
    calls = ps.sensor_ioctls(ds.name, ds.vendor, ds.product, ds.version)
    assert (abi.UI_SET_PROPBIT, abi.INPUT_PROP_ACCELEROMETER) in calls
    assert (abi.UI_SET_MSCBIT, abi.MSC_TIMESTAMP) in calls
    setup = abi.UinputSetup.from_buffer_copy(calls[-1][1])  # type: ignore[arg-type]
    assert calls[-1][0] == abi.UI_DEV_SETUP
    assert setup.name == ds.name.encode() + b" Motion Sensors"
    assert (setup.id.vendor, setup.id.product) == (0x054C, 0x0CE6)
    axes = _setups(calls)
    for code in (abi.ABS_X, abi.ABS_Y, abi.ABS_Z):
        a = axes[code]
        assert (a.minimum, a.maximum, a.fuzz, a.resolution) == (-32768, 32768, 16, 8192)
    for code in (abi.ABS_RX, abi.ABS_RY, abi.ABS_RZ):
        a = axes[code]
        assert (a.minimum, a.maximum, a.resolution) == (-2048 * 1024, 2048 * 1024, 1024)


def test_touchpad_device_is_shaped_like_hid_playstation() -> None:
    for kind, height in ((PadKind.DUALSENSE, 1080), (PadKind.DUALSHOCK4, 942)):
        sensors, touchpad = companion_ioctls(kind)
        assert sensors[-1][0] == touchpad[-1][0] == abi.UI_DEV_SETUP
        setup = abi.UinputSetup.from_buffer_copy(touchpad[-1][1])  # type: ignore[arg-type]
        assert setup.name.endswith(b" Touchpad")
        assert (abi.UI_SET_PROPBIT, abi.INPUT_PROP_POINTER) in touchpad
        assert (abi.UI_SET_PROPBIT, abi.INPUT_PROP_BUTTONPAD) in touchpad
        keys = {arg for req, arg in touchpad if req == abi.UI_SET_KEYBIT}
        assert keys == {abi.BTN_LEFT, abi.BTN_TOUCH, abi.BTN_TOOL_FINGER, abi.BTN_TOOL_DOUBLETAP}
        axes = _setups(touchpad)
        assert (axes[abi.ABS_MT_POSITION_X].maximum, axes[abi.ABS_MT_POSITION_Y].maximum) == (
            1919,
            height - 1,
        )
        assert (axes[abi.ABS_MT_SLOT].minimum, axes[abi.ABS_MT_SLOT].maximum) == (0, 1)
        assert axes[abi.ABS_Y].maximum == height - 1
    assert companion_ioctls(PadKind.XBOX360) == []


def test_motion_and_touch_event_bytes() -> None:
    raw = ps.motion_events((1, -2, 8192), (1024, 0, -1024), (1 << 32) + 0xFFFFFFFF)
    assert _events(raw) == [
        (abi.EV_ABS, abi.ABS_X, 1), (abi.EV_ABS, abi.ABS_Y, -2), (abi.EV_ABS, abi.ABS_Z, 8192),
        (abi.EV_ABS, abi.ABS_RX, 1024), (abi.EV_ABS, abi.ABS_RY, 0),
        (abi.EV_ABS, abi.ABS_RZ, -1024),
        (abi.EV_MSC, abi.MSC_TIMESTAMP, -1),  # u32 0xffffffff in the s32 value
        (abi.EV_SYN, abi.SYN_REPORT, 0),
    ]  # fmt: skip
    touches = [Touch(True, 5, 100, 200), Touch(False, 0, 0, 0)]
    assert _events(ps.touch_events(touches, click=True)) == [
        (abi.EV_ABS, abi.ABS_MT_SLOT, 0), (abi.EV_ABS, abi.ABS_MT_TRACKING_ID, 5),
        (abi.EV_ABS, abi.ABS_MT_POSITION_X, 100), (abi.EV_ABS, abi.ABS_MT_POSITION_Y, 200),
        (abi.EV_ABS, abi.ABS_MT_SLOT, 1), (abi.EV_ABS, abi.ABS_MT_TRACKING_ID, -1),
        (abi.EV_KEY, abi.BTN_TOUCH, 1), (abi.EV_KEY, abi.BTN_TOOL_FINGER, 1),
        (abi.EV_KEY, abi.BTN_TOOL_DOUBLETAP, 0),
        (abi.EV_ABS, abi.ABS_X, 100), (abi.EV_ABS, abi.ABS_Y, 200),
        (abi.EV_KEY, abi.BTN_LEFT, 1), (abi.EV_SYN, abi.SYN_REPORT, 0),
    ]  # fmt: skip


class FakeNodes:
    """Stands in for /dev/uinput: each created device is a pipe; ioctls are recorded."""

    def __init__(self) -> None:
        self.devices: list[tuple[str, int]] = []  # (name, read end)
        self.destroyed: list[str] = []
        self._names: dict[int, str] = {}

    def create(self, path: Path, calls: list[tuple[int, bytes | int]]) -> int:
        setup = abi.UinputSetup.from_buffer_copy(calls[-1][1])  # type: ignore[arg-type]
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.devices.append((setup.name.decode(), read))
        self._names[write] = setup.name.decode()
        return write

    def destroy(self, fd: int) -> None:
        self.destroyed.append(self._names.pop(fd))
        os.close(fd)

    def read(self, suffix: str) -> list[tuple[int, int, int]]:
        fd = next(fd for name, fd in self.devices if name.endswith(suffix))
        try:
            return _events(os.read(fd, 65536))
        except BlockingIOError:
            return []


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNodes]:
    fake = FakeNodes()
    monkeypatch.setattr(uinput_module, "_create", fake.create)
    monkeypatch.setattr(uinput_module, "_destroy", fake.destroy)
    yield fake
    for _, fd in fake.devices:
        os.close(fd)


def test_manager_drives_all_three_devices(tmp_path: Path, nodes: FakeNodes) -> None:
    node = tmp_path / "uinput"
    node.touch()  # present and writable: the manager is available
    pads = UinputPadManager("ps", path=node)
    assert pads.available
    try:
        pads.arrive(0, PadKind.DUALSENSE)
        names = [name for name, _ in nodes.devices]
        ds = IDENTITIES[PadKind.DUALSENSE].name
        assert names == [ds, f"{ds} Motion Sensors", f"{ds} Touchpad"]
        pads.update(0, PadState(BUTTON_A | TOUCHPAD_CLICK, 0, 0, 0, 0, 0, 0))
        assert (abi.EV_KEY, abi.BTN_SOUTH, 1) in nodes.read(ds)
        assert (abi.EV_KEY, abi.BTN_LEFT, 1) in nodes.read("Touchpad")  # the click
        pads.touch(0, 1, True, 0.5, 1.0)
        touch = nodes.read("Touchpad")
        assert (abi.EV_ABS, abi.ABS_MT_SLOT, 1) in touch
        assert (abi.EV_ABS, abi.ABS_MT_POSITION_X, 960) in touch  # 0.5 * 1919, rounded
        assert (abi.EV_ABS, abi.ABS_MT_POSITION_Y, 1079) in touch
        assert (abi.EV_KEY, abi.BTN_LEFT, 1) in touch  # the click is still held
        pads.motion(0, accel=(0.0, 9.80665, 0.0), gyro=(-1.0, 0.0, 2.0))
        motion = nodes.read("Motion Sensors")
        assert motion[:6] == [
            (abi.EV_ABS, abi.ABS_X, 0), (abi.EV_ABS, abi.ABS_Y, 8192), (abi.EV_ABS, abi.ABS_Z, 0),
            (abi.EV_ABS, abi.ABS_RX, -1024), (abi.EV_ABS, abi.ABS_RY, 0),
            (abi.EV_ABS, abi.ABS_RZ, 2048),
        ]  # fmt: skip
        pads.battery(0, 50, False)  # no power_supply through uinput: a logged no-op
        pads.remove(0)
        assert sorted(nodes.destroyed) == sorted(names)
        pads.arrive(1, PadKind.XBOX360)
        assert nodes.devices[-1][0] == "Microsoft X-Box 360 pad"
        pads.touch(1, 0, True, 0.1, 0.1)  # an Xbox pad has no touchpad: ignored
    finally:
        pads.close()
    assert "Microsoft X-Box 360 pad" in nodes.destroyed
