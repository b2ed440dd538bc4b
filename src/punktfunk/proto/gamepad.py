"""Gamepad shared-memory layouts: the bytes a pad consumer process (or another OS's driver) reads.

Byte-compatible with the original punktfunk pad sections: `XusbShm` (64 B, XInput state + rumble
back-channel) and `PadShm` (the 256-byte v2 layout: a 64-byte HID input report the host writes,
a 64-byte output report the consumer writes, `device_type` at offset 140).
"""

from __future__ import annotations

import ctypes
from enum import IntEnum

from ._layout import LE, pin

XUSB_MAGIC = 0x55584650  # "PFXU"
PAD_MAGIC = 0x50464453  # "PFDS"
GAMEPAD_PROTO_VERSION = 3
REPORT_LEN = 64


class DeviceType(IntEnum):
    """HID identity a `PadShm` section presents (0 is the zeroed-section default)."""

    DUALSENSE = 0
    DUALSHOCK4 = 1
    DUALSENSE_EDGE = 2


class XusbShm(LE):
    """Virtual Xbox 360 pad: the host writes XInput state, the consumer writes rumble."""

    _fields_ = (
        ("magic", ctypes.c_uint32),
        ("packet", ctypes.c_uint32),
        ("buttons", ctypes.c_uint16),
        ("left_trigger", ctypes.c_uint8),
        ("right_trigger", ctypes.c_uint8),
        ("thumb_lx", ctypes.c_int16),
        ("thumb_ly", ctypes.c_int16),
        ("thumb_rx", ctypes.c_int16),
        ("thumb_ry", ctypes.c_int16),
        ("_reserved0", ctypes.c_uint32),
        ("rumble_seq", ctypes.c_uint32),
        ("rumble_large", ctypes.c_uint8),
        ("rumble_small", ctypes.c_uint8),
        ("_pad0", ctypes.c_uint8 * 2),
        ("driver_proto", ctypes.c_uint32),
        ("driver_heartbeat", ctypes.c_uint32),
        ("pad_index", ctypes.c_uint32),
        ("_reserved1", ctypes.c_uint8 * 20),
    )


class PadShm(LE):
    """DualSense / DualShock 4 pad: raw HID input and output reports plus identity."""

    _fields_ = (
        ("magic", ctypes.c_uint32),
        ("_reserved0", ctypes.c_uint32),
        ("input", ctypes.c_uint8 * REPORT_LEN),
        ("out_seq", ctypes.c_uint32),
        ("output", ctypes.c_uint8 * REPORT_LEN),
        ("device_type", ctypes.c_uint8),
        ("_pad0", ctypes.c_uint8 * 3),
        ("driver_proto", ctypes.c_uint32),
        ("driver_heartbeat", ctypes.c_uint32),
        ("pad_index", ctypes.c_uint32),
        ("_reserved1", ctypes.c_uint8 * 12),
        ("input_gen", ctypes.c_uint32),
        ("driver_rev", ctypes.c_uint32),
        ("_reserved2", ctypes.c_uint8 * 80),
    )


pin(
    XusbShm,
    64,
    {
        "magic": 0,
        "packet": 4,
        "buttons": 8,
        "left_trigger": 10,
        "right_trigger": 11,
        "thumb_lx": 12,
        "thumb_ly": 14,
        "thumb_rx": 16,
        "thumb_ry": 18,
        "rumble_seq": 24,
        "rumble_large": 28,
        "rumble_small": 29,
        "driver_proto": 32,
        "driver_heartbeat": 36,
        "pad_index": 40,
    },
)
pin(
    PadShm,
    256,
    {
        "magic": 0,
        "input": 8,
        "out_seq": 72,
        "output": 76,
        "device_type": 140,
        "driver_proto": 144,
        "driver_heartbeat": 148,
        "pad_index": 152,
        "input_gen": 168,
        "driver_rev": 172,
    },
)
