"""The Linux uinput ABI, byte for byte (linux/uinput.h, linux/input.h; x86_64 layouts).

Structs use native alignment exactly as the kernel headers declare them (`struct input_event`
is 24 bytes: a 16-byte timeval, u16 type, u16 code, s32 value). ioctl numbers come from the
`_IOC` encoding: dir << 30 | size << 16 | type << 8 | nr.
"""

from __future__ import annotations

import ctypes

# --- ioctl encoding (asm-generic/ioctl.h) --------------------------------------------------
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord(kind) << 8 | nr


def io(kind: str, nr: int) -> int:
    return ioc(_IOC_NONE, kind, nr, 0)


def iow(kind: str, nr: int, size: int) -> int:
    return ioc(_IOC_WRITE, kind, nr, size)


def iowr(kind: str, nr: int, size: int) -> int:
    return ioc(_IOC_READ | _IOC_WRITE, kind, nr, size)


# --- structs --------------------------------------------------------------------------------
class Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class InputEvent(ctypes.Structure):
    _fields_ = (
        ("time", Timeval),
        ("type", ctypes.c_uint16),
        ("code", ctypes.c_uint16),
        ("value", ctypes.c_int32),
    )


class InputId(ctypes.Structure):
    _fields_ = (
        ("bustype", ctypes.c_uint16),
        ("vendor", ctypes.c_uint16),
        ("product", ctypes.c_uint16),
        ("version", ctypes.c_uint16),
    )


UINPUT_MAX_NAME_SIZE = 80


class UinputSetup(ctypes.Structure):
    _fields_ = (
        ("id", InputId),
        ("name", ctypes.c_char * UINPUT_MAX_NAME_SIZE),
        ("ff_effects_max", ctypes.c_uint32),
    )


class InputAbsinfo(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_int32)
        for name in ("value", "minimum", "maximum", "fuzz", "flat", "resolution")
    )


class UinputAbsSetup(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("absinfo", InputAbsinfo))


class FfEnvelope(ctypes.Structure):
    _fields_ = tuple(
        (name, ctypes.c_uint16)
        for name in ("attack_length", "attack_level", "fade_length", "fade_level")
    )


class FfConstantEffect(ctypes.Structure):
    _fields_ = (("level", ctypes.c_int16), ("envelope", FfEnvelope))


class FfRampEffect(ctypes.Structure):
    _fields_ = (
        ("start_level", ctypes.c_int16),
        ("end_level", ctypes.c_int16),
        ("envelope", FfEnvelope),
    )


class FfConditionEffect(ctypes.Structure):
    _fields_ = (
        ("right_saturation", ctypes.c_uint16),
        ("left_saturation", ctypes.c_uint16),
        ("right_coeff", ctypes.c_int16),
        ("left_coeff", ctypes.c_int16),
        ("deadband", ctypes.c_uint16),
        ("center", ctypes.c_int16),
    )


class FfPeriodicEffect(ctypes.Structure):
    _fields_ = (
        ("waveform", ctypes.c_uint16),
        ("period", ctypes.c_uint16),
        ("magnitude", ctypes.c_int16),
        ("offset", ctypes.c_int16),
        ("phase", ctypes.c_uint16),
        ("envelope", FfEnvelope),
        ("custom_len", ctypes.c_uint32),
        ("custom_data", ctypes.c_void_p),  # __s16 __user *: gives the union 8-byte alignment
    )


class FfRumbleEffect(ctypes.Structure):
    _fields_ = (("strong_magnitude", ctypes.c_uint16), ("weak_magnitude", ctypes.c_uint16))


class FfEffectUnion(ctypes.Union):
    _fields_ = (
        ("constant", FfConstantEffect),
        ("ramp", FfRampEffect),
        ("periodic", FfPeriodicEffect),
        ("condition", FfConditionEffect * 2),
        ("rumble", FfRumbleEffect),
    )


class FfEffect(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_uint16),
        ("id", ctypes.c_int16),
        ("direction", ctypes.c_uint16),
        ("trigger_button", ctypes.c_uint16),  # struct ff_trigger {button, interval}
        ("trigger_interval", ctypes.c_uint16),
        ("replay_length", ctypes.c_uint16),  # struct ff_replay {length, delay}
        ("replay_delay", ctypes.c_uint16),
        ("u", FfEffectUnion),
    )


class UinputFfUpload(ctypes.Structure):
    _fields_ = (
        ("request_id", ctypes.c_uint32),
        ("retval", ctypes.c_int32),
        ("effect", FfEffect),
        ("old", FfEffect),
    )


class UinputFfErase(ctypes.Structure):
    _fields_ = (
        ("request_id", ctypes.c_uint32),
        ("retval", ctypes.c_int32),
        ("effect_id", ctypes.c_uint32),
    )


# --- ioctls (linux/uinput.h) ---------------------------------------------------------------
UI_DEV_CREATE = io("U", 1)
UI_DEV_DESTROY = io("U", 2)
UI_DEV_SETUP = iow("U", 3, ctypes.sizeof(UinputSetup))
UI_ABS_SETUP = iow("U", 4, ctypes.sizeof(UinputAbsSetup))
UI_SET_EVBIT = iow("U", 100, ctypes.sizeof(ctypes.c_int))
UI_SET_KEYBIT = iow("U", 101, ctypes.sizeof(ctypes.c_int))
UI_SET_ABSBIT = iow("U", 103, ctypes.sizeof(ctypes.c_int))
UI_SET_MSCBIT = iow("U", 104, ctypes.sizeof(ctypes.c_int))
UI_SET_FFBIT = iow("U", 107, ctypes.sizeof(ctypes.c_int))
UI_SET_PROPBIT = iow("U", 110, ctypes.sizeof(ctypes.c_int))
UI_BEGIN_FF_UPLOAD = iowr("U", 200, ctypes.sizeof(UinputFfUpload))
UI_END_FF_UPLOAD = iow("U", 201, ctypes.sizeof(UinputFfUpload))
UI_BEGIN_FF_ERASE = iowr("U", 202, ctypes.sizeof(UinputFfErase))
UI_END_FF_ERASE = iow("U", 203, ctypes.sizeof(UinputFfErase))

# --- event codes (linux/input-event-codes.h) -------------------------------------------------
EV_SYN, EV_KEY, EV_ABS, EV_MSC, EV_FF = 0x00, 0x01, 0x03, 0x04, 0x15
EV_UINPUT = 0x0101
SYN_REPORT = 0
UI_FF_UPLOAD, UI_FF_ERASE = 1, 2
BUS_USB = 0x03
FF_RUMBLE = 0x50
BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST = 0x130, 0x131, 0x133, 0x134
BTN_A, BTN_B, BTN_X, BTN_Y = BTN_SOUTH, BTN_EAST, BTN_NORTH, BTN_WEST
BTN_TL, BTN_TR, BTN_TL2, BTN_TR2 = 0x136, 0x137, 0x138, 0x139
BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL, BTN_THUMBR = 0x13A, 0x13B, 0x13C, 0x13D, 0x13E
ABS_X, ABS_Y, ABS_Z, ABS_RX, ABS_RY, ABS_RZ = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
ABS_HAT0X, ABS_HAT0Y = 0x10, 0x11
ABS_MT_SLOT, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_TRACKING_ID = 0x2F, 0x35, 0x36, 0x39
BTN_LEFT, BTN_TOOL_FINGER, BTN_TOUCH, BTN_TOOL_DOUBLETAP = 0x110, 0x145, 0x14A, 0x14D
MSC_TIMESTAMP = 0x05
INPUT_PROP_POINTER, INPUT_PROP_BUTTONPAD, INPUT_PROP_ACCELEROMETER = 0x00, 0x02, 0x06


def setup(bustype: int, vendor: int, product: int, version: int, name: str, ff_max: int) -> bytes:
    """A `struct uinput_setup` for UI_DEV_SETUP."""
    raw = name.encode()[: UINPUT_MAX_NAME_SIZE - 1]
    return bytes(UinputSetup(InputId(bustype, vendor, product, version), raw, ff_max))


def abs_setup(
    code: int, minimum: int, maximum: int, fuzz: int = 0, flat: int = 0, resolution: int = 0
) -> bytes:
    """A `struct uinput_abs_setup` for UI_ABS_SETUP."""
    info = InputAbsinfo(0, minimum, maximum, fuzz, flat, resolution)
    return bytes(UinputAbsSetup(code, info))


def input_event(kind: int, code: int, value: int) -> bytes:
    """A `struct input_event` with a zero timestamp (the kernel stamps injected events)."""
    return bytes(InputEvent(Timeval(0, 0), kind, code, value))
