"""Virtual gamepads through Linux uinput, with the real controllers' USB identities.

Each pad is one evdev device shaped like the kernel driver of the real controller presents it
(xpad for the Xbox 360 pad, hid-playstation for DualSense and DualShock 4), so SDL and games
match it by vendor/product/version and name. PlayStation pads also get hid-playstation's
companion devices, "<name> Motion Sensors" and "<name> Touchpad" (`uinput_ps`). Rumble arrives
as force-feedback uploads and plays, and goes back out as `PadFeedback`. Lightbar, trigger
effects and battery need HID output reports / a power_supply, which uinput cannot carry (that
takes uhid or the shared-memory backend).

Where /dev/uinput is missing (this kernel has no uinput) or not writable, the manager says so in
`reason()` and every call is a no-op logged at debug level: the session goes on without pads.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..log import event
from . import reports as r
from . import uinput_abi as abi
from . import uinput_ps as ps
from .base import PadFeedback, PadKind, PadState

_log = logging.getLogger("punktfunk.input.uinput")

UINPUT_PATH = Path("/dev/uinput")
FF_EFFECTS_MAX = 16


@dataclass(frozen=True)
class Identity:
    name: str
    vendor: int
    product: int
    version: int
    buttons: dict[int, int]  # XInput bit -> evdev key code
    stick_range: tuple[int, int]  # evdev sticks are +Y down, XInput's are +Y up
    digital_triggers: bool  # hid-playstation also reports L2/R2 as buttons


_COMMON = {
    r.LEFT_SHOULDER: abi.BTN_TL, r.RIGHT_SHOULDER: abi.BTN_TR, r.BACK: abi.BTN_SELECT,
    r.START: abi.BTN_START, r.GUIDE: abi.BTN_MODE, r.LEFT_THUMB: abi.BTN_THUMBL,
    r.RIGHT_THUMB: abi.BTN_THUMBR,
}  # fmt: skip
_XPAD = {r.BUTTON_A: abi.BTN_A, r.BUTTON_B: abi.BTN_B, r.BUTTON_X: abi.BTN_X, r.BUTTON_Y: abi.BTN_Y}
_PS = {
    r.BUTTON_A: abi.BTN_SOUTH, r.BUTTON_B: abi.BTN_EAST,
    r.BUTTON_X: abi.BTN_WEST, r.BUTTON_Y: abi.BTN_NORTH,
}  # fmt: skip

IDENTITIES = {
    PadKind.XBOX360: Identity(
        "Microsoft X-Box 360 pad", 0x045E, 0x028E, 0x0114, {**_XPAD, **_COMMON},
        (-32768, 32767), False,
    ),
    PadKind.DUALSENSE: Identity(
        "Sony Interactive Entertainment DualSense Wireless Controller", 0x054C, 0x0CE6, 0x8111,
        {**_PS, **_COMMON}, (0, 255), True,
    ),
    PadKind.DUALSHOCK4: Identity(
        "Sony Interactive Entertainment Wireless Controller", 0x054C, 0x09CC, 0x8111,
        {**_PS, **_COMMON}, (0, 255), True,
    ),
}  # fmt: skip
_STICKS = (abi.ABS_X, abi.ABS_Y, abi.ABS_RX, abi.ABS_RY)


def device_ioctls(identity: Identity) -> list[tuple[int, bytes | int]]:
    """The ioctl sequence that creates `identity` on an open /dev/uinput (before UI_DEV_CREATE)."""
    calls: list[tuple[int, bytes | int]] = [(abi.UI_SET_EVBIT, abi.EV_KEY)]
    keys = sorted(set(identity.buttons.values()))
    if identity.digital_triggers:
        keys += [abi.BTN_TL2, abi.BTN_TR2]
    calls += [(abi.UI_SET_KEYBIT, key) for key in keys]
    calls.append((abi.UI_SET_EVBIT, abi.EV_ABS))
    lo, hi = identity.stick_range
    fuzz, flat = (16, 128) if lo < 0 else (0, 0)
    axes = [(code, lo, hi, fuzz, flat) for code in _STICKS]
    axes += [(abi.ABS_Z, 0, 255, 0, 0), (abi.ABS_RZ, 0, 255, 0, 0)]
    axes += [(abi.ABS_HAT0X, -1, 1, 0, 0), (abi.ABS_HAT0Y, -1, 1, 0, 0)]
    for code, *limits in axes:
        calls.append((abi.UI_SET_ABSBIT, code))
        calls.append((abi.UI_ABS_SETUP, abi.abs_setup(code, *limits)))
    calls += [(abi.UI_SET_EVBIT, abi.EV_FF), (abi.UI_SET_FFBIT, abi.FF_RUMBLE)]
    setup = abi.setup(abi.BUS_USB, identity.vendor, identity.product, identity.version,
                      identity.name, FF_EFFECTS_MAX)  # fmt: skip
    calls.append((abi.UI_DEV_SETUP, setup))
    return calls


def state_values(identity: Identity, state: PadState) -> dict[tuple[int, int], int]:
    """Every (type, code) -> value the device reports for `state`."""
    values = {(abi.EV_KEY, code): int(bool(state.buttons & bit))
              for bit, code in identity.buttons.items()}  # fmt: skip
    if identity.digital_triggers:
        values[(abi.EV_KEY, abi.BTN_TL2)] = int(state.left_trigger > 0)
        values[(abi.EV_KEY, abi.BTN_TR2)] = int(state.right_trigger > 0)
    sticks = (state.thumb_lx, state.thumb_ly, state.thumb_rx, state.thumb_ry)
    for i, (code, value) in enumerate(zip(_STICKS, sticks, strict=True)):
        invert = i % 2 == 1  # Y axes
        if identity.stick_range[0] == 0:
            values[(abi.EV_ABS, code)] = r.stick_byte(value, invert)
        else:  # xpad reports ~y: 32767 -> -32768, -32768 -> 32767
            values[(abi.EV_ABS, code)] = ~value if invert else value
    values[(abi.EV_ABS, abi.ABS_Z)] = state.left_trigger
    values[(abi.EV_ABS, abi.ABS_RZ)] = state.right_trigger
    b = state.buttons
    values[(abi.EV_ABS, abi.ABS_HAT0X)] = bool(b & r.DPAD_RIGHT) - bool(b & r.DPAD_LEFT)
    values[(abi.EV_ABS, abi.ABS_HAT0Y)] = bool(b & r.DPAD_DOWN) - bool(b & r.DPAD_UP)
    return values


def state_events(identity: Identity, old: PadState | None, new: PadState) -> bytes:
    """input_events for what changed from `old` to `new`, closed by SYN_REPORT ('' if nothing)."""
    before = state_values(identity, old) if old is not None else {}
    after = state_values(identity, new)
    changed = [abi.input_event(t, c, v) for (t, c), v in after.items() if before.get((t, c)) != v]
    if not changed:
        return b""
    return b"".join(changed) + abi.input_event(abi.EV_SYN, abi.SYN_REPORT, 0)


_TOUCHPAD = {
    PadKind.DUALSENSE: (r.DS_TOUCH_W, r.DS_TOUCH_H),
    PadKind.DUALSHOCK4: (r.DS4_TOUCH_W, r.DS4_TOUCH_H),
}


def companion_ioctls(kind: PadKind) -> list[list[tuple[int, bytes | int]]]:
    """Ioctl sequences of the extra devices hid-playstation gives `kind` (none for Xbox)."""
    if kind not in _TOUCHPAD:
        return []
    i = IDENTITIES[kind]
    ident = (i.name, i.vendor, i.product, i.version)
    return [ps.sensor_ioctls(*ident), ps.touchpad_ioctls(*ident, *_TOUCHPAD[kind])]


def _create(path: Path, calls: list[tuple[int, bytes | int]]) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        for request, arg in calls:
            fcntl.ioctl(fd, request, arg)
        fcntl.ioctl(fd, abi.UI_DEV_CREATE)
    except OSError:
        os.close(fd)
        raise
    return fd


def _destroy(fd: int) -> None:
    try:
        fcntl.ioctl(fd, abi.UI_DEV_DESTROY)
    finally:
        os.close(fd)


class _Device:
    def __init__(self, index: int, kind: PadKind, path: Path) -> None:
        self.index, self.kind, self.identity = index, kind, IDENTITIES[kind]
        self.state: PadState | None = None
        self.extras = r.PadExtras()
        self.effects: dict[int, tuple[int, int]] = {}  # effect id -> (strong, weak)
        self.fd = _create(path, device_ioctls(self.identity))
        self.sensors: int | None = None
        self.touchpad: int | None = None
        try:
            companions = [_create(path, calls) for calls in companion_ioctls(kind)]
        except OSError:
            _destroy(self.fd)
            raise
        if companions:
            self.sensors, self.touchpad = companions

    def close(self) -> None:
        for fd in (self.sensors, self.touchpad):
            if fd is not None:
                _destroy(fd)
        _destroy(self.fd)


def unavailable_reason(path: Path = UINPUT_PATH) -> str:
    """Why uinput pads cannot be created through `path` ("" when they can)."""
    if not path.exists():
        return (
            f"{path} does not exist: this kernel has no uinput (CONFIG_INPUT_UINPUT), "
            "so virtual gamepads are unavailable; the session continues without them"
        )
    if not os.access(path, os.R_OK | os.W_OK):
        return f"no read/write access to {path}; virtual gamepads are unavailable"
    return ""


class UinputPadManager:
    """`PadManager` over /dev/uinput; unavailable (with a reason) where uinput is missing."""

    def __init__(self, session: str, path: Path = UINPUT_PATH) -> None:
        self._session, self._path = session, path
        self._devices: dict[int, _Device] = {}
        self._callbacks: list[Callable[[PadFeedback], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reason = unavailable_reason(path)
        if self._reason:
            event(_log, "pads.unavailable", logging.WARNING, backend="uinput", reason=self._reason)

    @property
    def available(self) -> bool:
        return not self._reason

    def reason(self) -> str:
        return self._reason

    def _skip(self, op: str, index: int) -> bool:
        if self._reason:
            event(_log, "pads.noop", logging.DEBUG, op=op, index=index, reason="unavailable")
        return bool(self._reason)

    def arrive(self, index: int, kind: PadKind) -> None:
        if self._skip("arrive", index):
            return
        with self._lock:
            old = self._devices.pop(index, None)
            if old is not None:
                old.close()
            try:
                self._devices[index] = _Device(index, kind, self._path)
            except OSError as exc:
                event(_log, "pads.create_failed", logging.WARNING, index=index, reason=exc)
                return
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._read_ff, daemon=True,
                                                name=f"uinput-ff-{self._session}")  # fmt: skip
                self._thread.start()
        event(_log, "pads.arrive", backend="uinput", index=index, kind=kind.name)

    def update(self, index: int, state: PadState) -> None:
        if self._skip("update", index):
            return
        with self._lock:
            dev = self._devices.get(index)
            if dev is None:
                return
            old, dev.state = dev.state, state
            data = state_events(dev.identity, old, state)
            if data:
                os.write(dev.fd, data)
            click = bool(state.buttons & r.TOUCHPAD_CLICK)
            if dev.touchpad is not None and click != bool(old and old.buttons & r.TOUCHPAD_CLICK):
                os.write(dev.touchpad, ps.touch_events(dev.extras.touches, click))

    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        if self._skip("touch", index):
            return
        with self._lock:
            dev = self._devices.get(index)
            if dev is None or dev.touchpad is None or finger not in (0, 1):
                return
            dev.extras.touch(finger, active, x, y, *_TOUCHPAD[dev.kind])
            click = bool(dev.state and dev.state.buttons & r.TOUCHPAD_CLICK)
            os.write(dev.touchpad, ps.touch_events(dev.extras.touches, click))

    def motion(
        self,
        index: int,
        accel: tuple[float, float, float] | None = None,
        gyro: tuple[float, float, float] | None = None,
    ) -> None:
        if self._skip("motion", index):
            return
        with self._lock:
            dev = self._devices.get(index)
            if dev is None or dev.sensors is None:
                return
            dev.extras.motion(accel, gyro)
            stamp = time.monotonic_ns() // 1000
            os.write(dev.sensors, ps.motion_events(dev.extras.accel, dev.extras.gyro, stamp))

    def battery(self, index: int, percent: int, charging: bool) -> None:
        # hid-playstation reports battery through a power_supply, which uinput cannot create.
        if not self._skip("battery", index):
            event(_log, "pads.unsupported", logging.DEBUG, backend="uinput", op="battery",
                  index=index)  # fmt: skip

    def remove(self, index: int) -> None:
        if self._skip("remove", index):
            return
        with self._lock:
            dev = self._devices.pop(index, None)
            if dev is not None:
                dev.close()

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        with self._lock:
            for dev in self._devices.values():
                dev.close()
            self._devices.clear()

    def _read_ff(self) -> None:
        """Answer force-feedback uploads/erases and turn effect plays into rumble feedback."""
        size = len(abi.input_event(0, 0, 0))
        while not self._stop.is_set():
            with self._lock:
                fds = {dev.fd: dev for dev in self._devices.values()}
            ready = select.select(list(fds), [], [], 0.1)[0] if fds else []
            if not fds:
                self._stop.wait(0.1)
            for fd in ready:
                try:
                    data = os.read(fd, size * 16)
                except OSError:
                    continue
                for off in range(0, len(data) - size + 1, size):
                    ev = abi.InputEvent.from_buffer_copy(data, off)
                    self._ff_event(fds[fd], ev)

    def _ff_event(self, dev: _Device, ev: abi.InputEvent) -> None:
        if ev.type == abi.EV_UINPUT and ev.code == abi.UI_FF_UPLOAD:
            upload = abi.UinputFfUpload(request_id=ev.value)
            fcntl.ioctl(dev.fd, abi.UI_BEGIN_FF_UPLOAD, upload)
            rumble = upload.effect.u.rumble
            dev.effects[upload.effect.id] = (rumble.strong_magnitude, rumble.weak_magnitude)
            upload.retval = 0
            fcntl.ioctl(dev.fd, abi.UI_END_FF_UPLOAD, upload)
        elif ev.type == abi.EV_UINPUT and ev.code == abi.UI_FF_ERASE:
            erase = abi.UinputFfErase(request_id=ev.value)
            fcntl.ioctl(dev.fd, abi.UI_BEGIN_FF_ERASE, erase)
            dev.effects.pop(erase.effect_id, None)
            erase.retval = 0
            fcntl.ioctl(dev.fd, abi.UI_END_FF_ERASE, erase)
        elif ev.type == abi.EV_FF:
            strong, weak = dev.effects.get(ev.code, (0, 0)) if ev.value else (0, 0)
            for callback in self._callbacks:
                callback(PadFeedback(dev.index, rumble_low=strong, rumble_high=weak))
