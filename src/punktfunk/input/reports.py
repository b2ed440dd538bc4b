"""HID reports of the real controllers, built from XInput-style state (pure, no I/O).

Layouts as Linux's hid-playstation.c reads them (USB, report ID in byte 0):
- DualSense input 0x01 (64 B): 1-4 sticks, 5-6 triggers, 7 seq, 8-11 buttons, 16-21 gyro,
  22-27 accel, 28-31 sensor time (1/3 us), 33-40 two touch points, 53 status (battery).
- DualShock 4 input 0x01 (64 B): 1-4 sticks, 5-7 buttons (+6-bit counter), 8-9 triggers,
  10-11 sensor time (5.33 us), 13-18 gyro, 19-24 accel, 30 status, 33 touch-report count,
  34-42 first touch report.
- DualSense output 0x02 (SDL's DS5EffectsState_t after the ID): 1-2 valid flags, 3 right
  (weak) motor, 4 left (strong) motor, 9 mic-mute LED, 11-21 right trigger effect, 22-32
  left trigger effect, 39 valid flag 2, 44 player LEDs, 45-47 lightbar RGB.
- DualShock 4 output 0x05: 1 valid flags, 4 right (weak) motor, 5 left (strong) motor, 6-8 RGB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .base import PadState

# XInput button bits (both wire protocols), plus Moonlight's extended bits above 16.
DPAD_UP, DPAD_DOWN, DPAD_LEFT, DPAD_RIGHT = 0x0001, 0x0002, 0x0004, 0x0008
START, BACK, LEFT_THUMB, RIGHT_THUMB = 0x0010, 0x0020, 0x0040, 0x0080
LEFT_SHOULDER, RIGHT_SHOULDER, GUIDE = 0x0100, 0x0200, 0x0400
BUTTON_A, BUTTON_B, BUTTON_X, BUTTON_Y = 0x1000, 0x2000, 0x4000, 0x8000
TOUCHPAD_CLICK, MISC = 0x100000, 0x200000  # Moonlight TOUCHPAD_FLAG / MISC_FLAG (mic, share)

REPORT_LEN = 64
DS_TOUCH_W, DS_TOUCH_H = 1920, 1080
DS4_TOUCH_W, DS4_TOUCH_H = 1920, 942
ACC_RES_PER_G, GYRO_RES_PER_DEG_S = 8192, 1024  # both pads
STANDARD_G = 9.80665

# Trigger-effect feedback flags (DualSense valid_flag0 bits, also GameStream 0x5503's flags).
TRIGGER_RIGHT, TRIGGER_LEFT = 0x04, 0x08

# (up, down, left, right) -> hat switch value; 8 = centred.
_HAT: dict[tuple[int, ...], int] = {
    (1, 0, 0, 0): 0, (1, 0, 0, 1): 1, (0, 0, 0, 1): 2, (0, 1, 0, 1): 3,
    (0, 1, 0, 0): 4, (0, 1, 1, 0): 5, (0, 0, 1, 0): 6, (1, 0, 1, 0): 7,
}  # fmt: skip
# XInput bit -> (byte index within buttons[], bit) shared by both PlayStation pads.
_PS_BITS = {
    BUTTON_X: (0, 4), BUTTON_A: (0, 5), BUTTON_B: (0, 6), BUTTON_Y: (0, 7),
    LEFT_SHOULDER: (1, 0), RIGHT_SHOULDER: (1, 1), BACK: (1, 4), START: (1, 5),
    LEFT_THUMB: (1, 6), RIGHT_THUMB: (1, 7), GUIDE: (2, 0), TOUCHPAD_CLICK: (2, 1),
}  # fmt: skip


@dataclass
class Touch:
    active: bool = False
    tracking_id: int = 0
    x: int = 0
    y: int = 0


@dataclass
class PadExtras:
    """What a PlayStation pad reports beyond XInput state: touchpad, motion, battery."""

    touches: list[Touch] = field(default_factory=lambda: [Touch(), Touch()])
    accel: tuple[int, int, int] = (0, ACC_RES_PER_G, 0)  # at rest, gravity on +Y
    gyro: tuple[int, int, int] = (0, 0, 0)
    battery_percent: int = 100
    charging: bool = False
    _next_id: int = 0

    def touch(self, finger: int, active: bool, x: float, y: float, w: int, h: int) -> None:
        """Finger 0/1 at normalized (x, y) in [0, 1] on a w x h touchpad."""
        point = self.touches[finger]
        if active and not point.active:
            point.tracking_id = self._next_id
            self._next_id = (self._next_id + 1) & 0x7F
        point.active = active
        point.x = min(max(round(x * (w - 1)), 0), w - 1)
        point.y = min(max(round(y * (h - 1)), 0), h - 1)

    def motion(
        self, accel: tuple[float, float, float] | None, gyro: tuple[float, float, float] | None
    ) -> None:
        """Accelerometer in m/s^2 and gyroscope in deg/s (what GameStream clients send)."""
        if accel is not None:
            self.accel = _vec(accel, ACC_RES_PER_G / STANDARD_G)
        if gyro is not None:
            self.gyro = _vec(gyro, GYRO_RES_PER_DEG_S)


def _vec(values: tuple[float, float, float], scale: float) -> tuple[int, int, int]:
    x, y, z = (min(max(round(v * scale), -32768), 32767) for v in values)
    return x, y, z


def stick_byte(value: int, invert: bool = False) -> int:
    """XInput stick axis (-32768..32767, +Y up) -> HID byte (0..255, centre 128, +Y down)."""
    return min(max(((-value if invert else value) + 32768) >> 8, 0), 255)


def _ps_buttons(state: PadState) -> list[int]:
    b = state.buttons
    dpad = tuple(int(bool(b & m)) for m in (DPAD_UP, DPAD_DOWN, DPAD_LEFT, DPAD_RIGHT))
    out = [_HAT.get(dpad, 8), 0, 0]
    for bit, (index, shift) in _PS_BITS.items():
        if b & bit:
            out[index] |= 1 << shift
    if state.left_trigger:
        out[1] |= 1 << 2
    if state.right_trigger:
        out[1] |= 1 << 3
    return out


def _sticks(state: PadState) -> bytes:
    return bytes(
        (
            stick_byte(state.thumb_lx),
            stick_byte(state.thumb_ly, invert=True),
            stick_byte(state.thumb_rx),
            stick_byte(state.thumb_ry, invert=True),
        )
    )


def _touch_point(t: Touch) -> bytes:
    contact = (t.tracking_id & 0x7F) | (0 if t.active else 0x80)
    return bytes((contact, t.x & 0xFF, (t.x >> 8) & 0x0F | (t.y & 0x0F) << 4, t.y >> 4))


def dualsense_report(state: PadState, extras: PadExtras, seq: int, time_ns: int) -> bytes:
    """USB input report 0x01 of a DualSense."""
    report = bytearray(REPORT_LEN)
    report[0] = 0x01
    report[1:5] = _sticks(state)
    report[5], report[6] = state.left_trigger, state.right_trigger
    report[7] = seq & 0xFF
    buttons = _ps_buttons(state)
    if state.buttons & MISC:
        buttons[2] |= 1 << 2  # mic mute
    report[8:11] = bytes(buttons)
    struct.pack_into(
        "<3h3hI", report, 16, *extras.gyro, *extras.accel, (time_ns * 3 // 1000) & 0xFFFFFFFF
    )
    report[33:41] = b"".join(_touch_point(t) for t in extras.touches)
    # status: capacity (0-10) in the low nibble, charging state 1 / discharging 0 above it.
    level = min(max(extras.battery_percent, 0), 100) // 10
    report[53] = level | (0x10 if extras.charging else 0)
    return bytes(report)


def dualshock4_report(state: PadState, extras: PadExtras, counter: int, time_ns: int) -> bytes:
    """USB input report 0x01 of a DualShock 4 (v2, 054c:09cc)."""
    report = bytearray(REPORT_LEN)
    report[0] = 0x01
    report[1:5] = _sticks(state)
    buttons = _ps_buttons(state)
    buttons[2] |= (counter & 0x3F) << 2
    report[5:8] = bytes(buttons)
    report[8], report[9] = state.left_trigger, state.right_trigger
    struct.pack_into("<H", report, 10, (time_ns * 3 // 16000) & 0xFFFF)  # 5.33 us units
    struct.pack_into("<3h3h", report, 13, *extras.gyro, *extras.accel)
    # status[0]: capacity 0-10 (11 = full while cabled), bit 4 = cable connected.
    level = min(max(extras.battery_percent, 0), 100) // 10
    report[30] = (11 if extras.charging and level == 10 else level) | (
        0x10 if extras.charging else 0
    )
    report[33] = 1  # one touch report follows
    report[34] = counter & 0xFF
    report[35:43] = b"".join(_touch_point(t) for t in extras.touches)
    return bytes(report)


@dataclass(frozen=True)
class OutputUpdate:
    """What one HID output report asked for; None where the report left it unchanged."""

    rumble: tuple[int, int] | None = None  # (strong/low-frequency, weak/high-frequency), 0-255
    led_rgb: tuple[int, int, int] | None = None
    trigger_flags: int = 0  # TRIGGER_RIGHT | TRIGGER_LEFT: which effects are in `triggers`
    triggers: tuple[bytes, bytes] | None = None  # (right, left) 11-byte effects
    player_leds: int | None = None  # low 5 bits: the player-indicator LEDs
    mic_led: int | None = None  # 0 off, 1 on, 2 pulse


def parse_output(report: bytes) -> OutputUpdate | None:
    """Decode a DualSense (0x02) or DualShock 4 (0x05) USB output report; None if neither."""
    if len(report) >= 48 and report[0] == 0x02:
        flag0, flag1, flag2 = report[1], report[2], report[39]
        rumble = (report[4], report[3]) if flag0 & 0x01 or flag2 & 0x04 else None
        led = _rgb(report, 45) if flag1 & 0x04 else None
        trig = flag0 & (TRIGGER_RIGHT | TRIGGER_LEFT)
        triggers = (bytes(report[11:22]), bytes(report[22:33])) if trig else None
        players = report[44] & 0x1F if flag1 & 0x10 else None
        mic = report[9] if flag1 & 0x01 else None
        return OutputUpdate(rumble, led, trig, triggers, players, mic)
    if len(report) >= 11 and report[0] == 0x05:
        flags = report[1]
        rumble = (report[5], report[4]) if flags & 0x01 else None
        led = _rgb(report, 6) if flags & 0x02 else None
        return OutputUpdate(rumble, led)
    return None


def _rgb(report: bytes, at: int) -> tuple[int, int, int]:
    return report[at], report[at + 1], report[at + 2]
