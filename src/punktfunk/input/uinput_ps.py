"""The companion evdev devices of a PlayStation pad: motion sensors and touchpad (pure, no I/O).

hid-playstation presents one DualSense / DualShock 4 as three input devices: the gamepad, a
"<name> Motion Sensors" device (INPUT_PROP_ACCELEROMETER: ABS_X/Y/Z acceleration at 8192 per
g, ABS_RX/RY/RZ angular rate at 1024 per deg/s, MSC_TIMESTAMP in us) and a "<name> Touchpad"
(INPUT_PROP_POINTER | BUTTONPAD, two multitouch slots, BTN_LEFT for the click). SDL and Steam
pair them with the gamepad by name and USB identity, so the uinput backend builds the same
three with the same shapes; these functions give their ioctl sequences and event bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import reports as r
from . import uinput_abi as abi

# hid-playstation: DS_ACC_RANGE = 4 g, DS_GYRO_RANGE = 2048 deg/s (same for the DualShock 4).
ACC_RANGE = 4 * r.ACC_RES_PER_G
GYRO_RANGE = 2048 * r.GYRO_RES_PER_DEG_S
SENSOR_FUZZ = 16
MT_SLOTS = 2
TRACKING_ID_MAX = 0xFFFF
_ACCEL = (abi.ABS_X, abi.ABS_Y, abi.ABS_Z)
_GYRO = (abi.ABS_RX, abi.ABS_RY, abi.ABS_RZ)

Calls = list[tuple[int, bytes | int]]


def sensor_ioctls(name: str, vendor: int, product: int, version: int) -> Calls:
    """The ioctl sequence that creates `<name> Motion Sensors` (before UI_DEV_CREATE)."""
    calls: Calls = [
        (abi.UI_SET_PROPBIT, abi.INPUT_PROP_ACCELEROMETER),
        (abi.UI_SET_EVBIT, abi.EV_ABS),
    ]
    for codes, limit, res in ((_ACCEL, ACC_RANGE, r.ACC_RES_PER_G),
                              (_GYRO, GYRO_RANGE, r.GYRO_RES_PER_DEG_S)):  # fmt: skip
        for code in codes:
            calls.append((abi.UI_SET_ABSBIT, code))
            calls.append((abi.UI_ABS_SETUP,
                          abi.abs_setup(code, -limit, limit, SENSOR_FUZZ, 0, res)))  # fmt: skip
    calls += [(abi.UI_SET_EVBIT, abi.EV_MSC), (abi.UI_SET_MSCBIT, abi.MSC_TIMESTAMP)]
    setup = abi.setup(abi.BUS_USB, vendor, product, version, f"{name} Motion Sensors", 0)
    calls.append((abi.UI_DEV_SETUP, setup))
    return calls


def touchpad_ioctls(name: str, vendor: int, product: int, version: int, w: int, h: int) -> Calls:
    """The ioctl sequence that creates `<name> Touchpad`: what hid-playstation's
    input_mt_init_slots(INPUT_MT_POINTER) sets up, spelled out for uinput."""
    calls: Calls = [
        (abi.UI_SET_PROPBIT, abi.INPUT_PROP_POINTER),
        (abi.UI_SET_PROPBIT, abi.INPUT_PROP_BUTTONPAD),
        (abi.UI_SET_EVBIT, abi.EV_KEY),
    ]
    for key in (abi.BTN_LEFT, abi.BTN_TOOL_FINGER, abi.BTN_TOUCH, abi.BTN_TOOL_DOUBLETAP):
        calls.append((abi.UI_SET_KEYBIT, key))
    calls.append((abi.UI_SET_EVBIT, abi.EV_ABS))
    axes = [
        (abi.ABS_X, 0, w - 1), (abi.ABS_Y, 0, h - 1), (abi.ABS_MT_SLOT, 0, MT_SLOTS - 1),
        (abi.ABS_MT_POSITION_X, 0, w - 1), (abi.ABS_MT_POSITION_Y, 0, h - 1),
        (abi.ABS_MT_TRACKING_ID, 0, TRACKING_ID_MAX),
    ]  # fmt: skip
    for code, lo, hi in axes:
        calls.append((abi.UI_SET_ABSBIT, code))
        calls.append((abi.UI_ABS_SETUP, abi.abs_setup(code, lo, hi)))
    setup = abi.setup(abi.BUS_USB, vendor, product, version, f"{name} Touchpad", 0)
    calls.append((abi.UI_DEV_SETUP, setup))
    return calls


def motion_events(
    accel: tuple[int, int, int], gyro: tuple[int, int, int], timestamp_us: int
) -> bytes:
    """One sensor sample (raw units as `reports.PadExtras` keeps them), closed by SYN_REPORT."""
    out = [abi.input_event(abi.EV_ABS, code, v) for code, v in zip(_ACCEL, accel, strict=True)]
    out += [abi.input_event(abi.EV_ABS, code, v) for code, v in zip(_GYRO, gyro, strict=True)]
    stamp = timestamp_us & 0xFFFFFFFF  # a wrapping u32 as hid-playstation sends it, carried
    if stamp >= 1 << 31:  # in input_event's s32 value
        stamp -= 1 << 32
    out.append(abi.input_event(abi.EV_MSC, abi.MSC_TIMESTAMP, stamp))
    out.append(abi.input_event(abi.EV_SYN, abi.SYN_REPORT, 0))
    return b"".join(out)


def touch_events(touches: Sequence[r.Touch], click: bool) -> bytes:
    """The touchpad's whole state: every slot, the single-touch emulation, the click.

    Sending unchanged values is harmless (the input core drops repeats per slot), and a full
    frame can never leave a contact stuck after a lost update.
    """
    out: list[bytes] = []
    active = [t for t in touches if t.active]
    for slot, t in enumerate(touches[:MT_SLOTS]):
        out.append(abi.input_event(abi.EV_ABS, abi.ABS_MT_SLOT, slot))
        tracking = t.tracking_id & TRACKING_ID_MAX if t.active else -1
        out.append(abi.input_event(abi.EV_ABS, abi.ABS_MT_TRACKING_ID, tracking))
        if t.active:
            out.append(abi.input_event(abi.EV_ABS, abi.ABS_MT_POSITION_X, t.x))
            out.append(abi.input_event(abi.EV_ABS, abi.ABS_MT_POSITION_Y, t.y))
    out.append(abi.input_event(abi.EV_KEY, abi.BTN_TOUCH, int(bool(active))))
    out.append(abi.input_event(abi.EV_KEY, abi.BTN_TOOL_FINGER, int(len(active) == 1)))
    out.append(abi.input_event(abi.EV_KEY, abi.BTN_TOOL_DOUBLETAP, int(len(active) == 2)))
    if active:  # pointer emulation follows the first contact, as input_mt_report_pointer...
        out.append(abi.input_event(abi.EV_ABS, abi.ABS_X, active[0].x))
        out.append(abi.input_event(abi.EV_ABS, abi.ABS_Y, active[0].y))
    out.append(abi.input_event(abi.EV_KEY, abi.BTN_LEFT, int(click)))
    out.append(abi.input_event(abi.EV_SYN, abi.SYN_REPORT, 0))
    return b"".join(out)
