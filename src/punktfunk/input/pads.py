"""Virtual gamepads: the shared-memory backend, and the choice of backend for a session.

Each pad is one file (`<dir>/punktfunk-<session>-pad<index>-<pid>-<token>`, mode 0600) holding
exactly one `proto.gamepad` struct, which a consumer process (a pad driver, possibly on another
OS) maps. The random token keeps other local users from planting a symlink at the name before we
create it (creation is O_EXCL|O_NOFOLLOW anyway); a consumer finds the pad with `find_pad`
(or the same pattern, the newest regular file of the host's user), the pid lets the next host
remove what a killed one left (`sweep_stale`).

- Xbox 360 -> `XusbShm`: the host writes buttons/triggers/sticks, then bumps `packet`
  (a reader that sees `packet` unchanged across its copy has a consistent state). The consumer
  writes `rumble_large`/`rumble_small`, then bumps `rumble_seq`.
- DualSense / DualShock 4 -> `PadShm` with `device_type`: the host writes the real USB input
  report 0x01 into `input` under a seqlock (`input_gen` odd while writing, even when done; a
  reader retries on odd or changed). The consumer writes a USB output report into `output`,
  then bumps `out_seq`.

`magic` is written last on arrival and cleared first on removal, so a consumer never maps a
half-built pad. Feedback is polled and handed to `on_feedback` callbacks as `PadFeedback`: its
rumble fields always carry the pad's current rumble (0-65535); `led_rgb` and `trigger_effect`
are set only when the consumer changed them. `trigger_effect` is 23 bytes: a flags byte
(`reports.TRIGGER_RIGHT` 0x04 | `TRIGGER_LEFT` 0x08, which effects changed), then the right and
the left 11-byte DualSense trigger effects — what GameStream's 0x5503 message carries.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..log import event
from ..ownfiles import create_exclusive, owned, pid_alive, token, unlink_own
from ..proto.gamepad import (
    GAMEPAD_PROTO_VERSION,
    PAD_MAGIC,
    XUSB_MAGIC,
    DeviceType,
    PadShm,
    XusbShm,
)
from . import reports
from .base import PadFeedback, PadKind, PadManager, PadState
from .uinput import UINPUT_PATH, UinputPadManager, unavailable_reason

_log = logging.getLogger("punktfunk.input.pads")

SHM_DIR = Path("/dev/shm")
POLL_INTERVAL = 0.004  # feedback latency bound; ~250 wakeups/s only while pads exist
_DEVICE_TYPE = {PadKind.DUALSENSE: DeviceType.DUALSENSE, PadKind.DUALSHOCK4: DeviceType.DUALSHOCK4}
_TOUCHPAD = {
    PadKind.DUALSENSE: (reports.DS_TOUCH_W, reports.DS_TOUCH_H),
    PadKind.DUALSHOCK4: (reports.DS4_TOUCH_W, reports.DS4_TOUCH_H),
}
_U32 = struct.Struct("<I")
_XUSB_STATE = struct.Struct("<HBBhhhh")  # buttons .. thumb_ry, contiguous from offset 8
_IDLE = PadState(0, 0, 0, 0, 0, 0, 0)


_PAD_NAME = re.compile(
    r"^punktfunk-(?P<session>[A-Za-z0-9_-]+)-pad(?P<index>\d+)-(?P<pid>\d+)-[0-9a-f]{16}$"
)


def _safe(session: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", session)


def new_shm_path(directory: Path, session: str, index: int) -> Path:
    """A fresh, unguessable name for pad `index` of `session` (names reduced to [A-Za-z0-9_-])."""
    return directory / f"punktfunk-{_safe(session)}-pad{index}-{os.getpid()}-{token()}"


def find_pad(directory: Path, session: str, index: int) -> Path | None:
    """Where a consumer finds pad `index` of `session`: the newest regular file of our own user
    with its name (None if there is none); a symlink or another user's file never matches."""
    found: list[tuple[int, Path]] = []
    for path in directory.glob(f"punktfunk-{_safe(session)}-pad{index}-*"):
        match = _PAD_NAME.match(path.name)
        if match is None or match["session"] != _safe(session) or int(match["index"]) != index:
            continue
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if owned(path):
                found.append((st.st_mtime_ns, path))
    return max(found)[1] if found else None


def stale_pads(directory: Path = SHM_DIR) -> list[Path]:
    """Pads of ours whose host process is gone (killed before it could remove them)."""
    stale = []
    for path in directory.glob("punktfunk-*-pad*-*-*"):
        match = _PAD_NAME.match(path.name)
        pid = int(match["pid"]) if match else 0
        if match and pid != os.getpid() and not pid_alive(pid) and owned(path):
            stale.append(path)
    return stale


def sweep_stale(directory: Path = SHM_DIR) -> list[Path]:
    """Remove `stale_pads`; returns what was removed."""
    return [path for path in stale_pads(directory) if unlink_own(path)]


@dataclass
class _Pad:
    index: int
    kind: PadKind
    path: Path
    mm: mmap.mmap
    state: PadState = _IDLE
    extras: reports.PadExtras = field(default_factory=reports.PadExtras)
    counter: int = 0  # packet / report sequence
    feedback_seq: int = 0
    rumble: tuple[int, int] = (0, 0)
    triggers: tuple[bytes, bytes] = (bytes(11), bytes(11))
    driver_proto: int = 0

    def u32(self, offset: int) -> int:
        return _U32.unpack_from(self.mm, offset)[0]

    def put_u32(self, offset: int, value: int) -> None:
        _U32.pack_into(self.mm, offset, value & 0xFFFFFFFF)


class ShmPadManager:
    """`PadManager` that lays each pad out in `proto.gamepad` shared memory."""

    def __init__(
        self, session: str, directory: Path = SHM_DIR, poll_interval: float = POLL_INTERVAL
    ) -> None:
        self._session = session
        self._dir = directory
        self._interval = poll_interval
        self._pads: dict[int, _Pad] = {}
        self._paths: dict[int, Path] = {}
        self._callbacks: list[Callable[[PadFeedback], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reason = ""
        if not (directory.is_dir() and os.access(directory, os.W_OK)):
            self._reason = f"pad shared-memory directory {directory} is not writable"
            event(_log, "pads.unavailable", logging.WARNING, backend="shm", reason=self._reason)

    @property
    def available(self) -> bool:
        return not self._reason

    def reason(self) -> str:
        return self._reason

    def path(self, index: int) -> Path | None:
        """The file pad `index` has (or last had); None before it ever arrived."""
        with self._lock:
            return self._paths.get(index)

    def arrive(self, index: int, kind: PadKind) -> None:
        if not self.available:
            event(_log, "pads.dropped", logging.DEBUG, op="arrive", index=index)
            return
        with self._lock:
            old = self._pads.get(index)
            if old is not None and old.kind == kind:
                return
            if old is not None:
                del self._pads[index]
                self._destroy(old)
            try:
                self._pads[index] = self._create(index, kind)
            except OSError as exc:
                event(_log, "pads.create_failed", logging.WARNING, index=index, reason=str(exc))
                return
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._poll, name=f"pads-{self._session}", daemon=True
                )
                self._thread.start()
        event(_log, "pads.arrive", session=self._session, index=index, kind=kind.name)

    def update(self, index: int, state: PadState) -> None:
        with self._lock:
            pad = self._pads.get(index)
            if pad is not None:
                pad.state = state
                self._publish(pad)

    def touch(self, index: int, finger: int, active: bool, x: float, y: float) -> None:
        """A touchpad contact (finger 0/1) at normalized (x, y) in [0, 1]; PlayStation pads."""
        with self._lock:
            pad = self._pads.get(index)
            if pad is not None and pad.kind in _TOUCHPAD and finger in (0, 1):
                pad.extras.touch(finger, active, x, y, *_TOUCHPAD[pad.kind])
                self._publish(pad)

    def motion(
        self,
        index: int,
        accel: tuple[float, float, float] | None = None,
        gyro: tuple[float, float, float] | None = None,
    ) -> None:
        """Accelerometer (m/s^2) and/or gyroscope (deg/s) sample; PlayStation pads."""
        with self._lock:
            pad = self._pads.get(index)
            if pad is not None and pad.kind in _TOUCHPAD:
                pad.extras.motion(accel, gyro)
                self._publish(pad)

    def battery(self, index: int, percent: int, charging: bool) -> None:
        with self._lock:
            pad = self._pads.get(index)
            if pad is not None and pad.kind in _TOUCHPAD:
                pad.extras.battery_percent, pad.extras.charging = percent, charging
                self._publish(pad)

    def remove(self, index: int) -> None:
        with self._lock:
            pad = self._pads.pop(index, None)
            if pad is not None:
                self._destroy(pad)
        if pad is not None:
            event(_log, "pads.remove", session=self._session, index=index)

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None
        with self._lock:
            for pad in self._pads.values():
                self._destroy(pad)
            self._pads.clear()

    # --- shared memory (lock held) --------------------------------------------------------

    def _create(self, index: int, kind: PadKind) -> _Pad:
        size = ctypes.sizeof(XusbShm if kind is PadKind.XBOX360 else PadShm)
        path = new_shm_path(self._dir, self._session, index)
        fd = create_exclusive(path)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            unlink_own(path)
            raise
        os.close(fd)
        self._paths[index] = path
        pad = _Pad(index, kind, path, mm)
        if kind is PadKind.XBOX360:
            pad.put_u32(XusbShm.pad_index.offset, index)
            self._publish(pad)
            pad.put_u32(XusbShm.magic.offset, XUSB_MAGIC)
        else:
            mm[PadShm.device_type.offset] = _DEVICE_TYPE[kind]
            pad.put_u32(PadShm.pad_index.offset, index)
            self._publish(pad)
            pad.put_u32(PadShm.magic.offset, PAD_MAGIC)
        return pad

    def _publish(self, pad: _Pad) -> None:
        pad.counter += 1
        s = pad.state
        if pad.kind is PadKind.XBOX360:
            _XUSB_STATE.pack_into(
                pad.mm, XusbShm.buttons.offset, s.buttons & 0xFFFF, s.left_trigger,
                s.right_trigger, s.thumb_lx, s.thumb_ly, s.thumb_rx, s.thumb_ry,
            )  # fmt: skip
            pad.put_u32(XusbShm.packet.offset, pad.counter)
            return
        build = (
            reports.dualsense_report
            if pad.kind is PadKind.DUALSENSE
            else (reports.dualshock4_report)
        )
        report = build(s, pad.extras, pad.counter, time.monotonic_ns())
        gen = pad.u32(PadShm.input_gen.offset)
        pad.put_u32(PadShm.input_gen.offset, gen | 1)  # odd: writing
        pad.mm[PadShm.input.offset : PadShm.input.offset + len(report)] = report
        pad.put_u32(PadShm.input_gen.offset, (gen | 1) + 1)  # even: consistent

    def _destroy(self, pad: _Pad) -> None:
        pad.put_u32(0, 0)  # magic first: consumers stop trusting the section
        pad.mm.close()
        unlink_own(pad.path)

    # --- feedback -------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                out = [fb for pad in self._pads.values() if (fb := self._feedback(pad))]
                if not self._pads:
                    self._thread = None
                    return
            for feedback in out:
                for callback in self._callbacks:
                    try:
                        callback(feedback)
                    except Exception:
                        _log.exception("pads.feedback_callback_failed")

    def _feedback(self, pad: _Pad) -> PadFeedback | None:
        xusb = pad.kind is PadKind.XBOX360
        layout = XusbShm if xusb else PadShm
        proto = pad.u32(layout.driver_proto.offset)
        if proto != pad.driver_proto:
            pad.driver_proto = proto
            level = logging.INFO if proto == GAMEPAD_PROTO_VERSION else logging.WARNING
            event(_log, "pads.consumer", level, index=pad.index, proto=proto,
                  expected=GAMEPAD_PROTO_VERSION)  # fmt: skip
        seq = pad.u32(XusbShm.rumble_seq.offset if xusb else PadShm.out_seq.offset)
        if seq == pad.feedback_seq:
            return None
        pad.feedback_seq = seq
        if xusb:
            large = pad.mm[XusbShm.rumble_large.offset]
            small = pad.mm[XusbShm.rumble_small.offset]
            pad.rumble = (large, small)
            return PadFeedback(pad.index, large * 257, small * 257)
        output = bytes(pad.mm[PadShm.output.offset : PadShm.output.offset + 64])
        update = reports.parse_output(output)
        if update is None:
            event(_log, "pads.unknown_output", logging.DEBUG, index=pad.index, id=output[0])
            return None
        if update.rumble is not None:
            pad.rumble = update.rumble
        effect = None
        if update.triggers is not None:
            right, left = update.triggers
            pad.triggers = (
                right if update.trigger_flags & reports.TRIGGER_RIGHT else pad.triggers[0],
                left if update.trigger_flags & reports.TRIGGER_LEFT else pad.triggers[1],
            )
            effect = bytes([update.trigger_flags]) + pad.triggers[0] + pad.triggers[1]
        return PadFeedback(
            pad.index, pad.rumble[0] * 257, pad.rumble[1] * 257, update.led_rgb, effect,
            update.player_leds, update.mic_led,
        )  # fmt: skip


def open_pad_manager(
    session: str, backend: str = "auto", shm_dir: Path = SHM_DIR, uinput_path: Path = UINPUT_PATH
) -> PadManager:
    """The session's pads: uinput where it is usable (auto), else shared memory.

    When auto cannot use uinput it says so once per session, with the reason, and goes on with
    shared-memory pads (which need a consumer process to become devices).
    """
    if backend == "auto":
        why = unavailable_reason(uinput_path)
        backend = "shm" if why else "uinput"
        if why:
            event(_log, "pads.uinput_unavailable", logging.WARNING, session=session, reason=why,
                  fallback="shared-memory pads")  # fmt: skip
    if backend == "uinput":
        manager: PadManager = UinputPadManager(session, uinput_path)
    elif backend == "shm":
        manager = ShmPadManager(session, shm_dir)
    else:
        raise ValueError(f"unknown pad backend {backend!r} (auto, uinput, shm)")
    event(_log, "pads.backend", session=session, backend=type(manager).__name__,
          available=manager.available, reason=manager.reason() or "-")  # fmt: skip
    return manager
