"""The protocol-neutral entry for controllers: what a wire protocol calls for one session.

Both wire protocols describe pads the same way once their bytes are parsed: a pad index
(0..15), an optional arrival that says which controller it is, full XInput-style states, and
for PlayStation pads touchpad contacts, motion samples and battery. They differ in how pads go
away (GameStream clears a bit in the active mask of the next state; punktfunk/2 sends a removal)
and in ordering (punktfunk/2 states ride unreliable datagrams with a wrapping u8 `seq`).
`PadRouter` absorbs those differences so each protocol stays a thin translation:

    router = PadRouter(open_pad_manager(session), default_kind=PadKind.XBOX360)
    router.on_feedback(send_to_client)        # rumble / LED / trigger effects, any thread
    router.arrive(i, kind)                    # optional; a state for an unknown pad plugs it
    router.state(i, state, active_mask=m)     # GameStream 0x0C (mask unplugs the others)
    router.state(i, state, seq=s)             # punktfunk/2 GAMEPAD_STATE (stale seq dropped)
    router.touch(i, pointer, active, x, y) / router.motion(i, accel=..., gyro=...) /
    router.battery(i, percent, charging)
    router.remove(i, seq=s)                   # punktfunk/2 GAMEPAD_REMOVE
    router.close()                            # session end: every pad is unplugged

The helpers below turn each protocol's field values into these calls' arguments; parsing the
packets themselves stays in the protocol packages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..log import event
from .base import PadFeedback, PadKind, PadManager, PadState

_log = logging.getLogger("punktfunk.input.padroute")

MAX_PADS = 16  # both protocols: index 0..15 (GameStream's active mask is 16 bits)


class PadRouter:
    """One session's pads behind a `PadManager`; thread-safe (input arrives on several threads).

    A `None` manager (pads disabled) makes every call a no-op, so protocols never branch.
    """

    def __init__(self, pads: PadManager | None, default_kind: PadKind = PadKind.XBOX360) -> None:
        self._pads = pads
        self._default = default_kind
        self._kinds: dict[int, PadKind] = {}  # plugged pads
        self._declared: dict[int, PadKind] = {}  # arrivals, kept across unplug/replug
        self._seq: dict[int, int] = {}  # last applied punktfunk/2 seq per pad
        self._touch: dict[int, dict[int, int]] = {}  # pad -> client pointer id -> finger slot
        self._lock = threading.Lock()
        if pads is not None and not pads.available:
            event(_log, "pads.router_unavailable", logging.INFO, reason=pads.reason())

    @property
    def plugged(self) -> dict[int, PadKind]:
        with self._lock:
            return dict(self._kinds)

    def on_feedback(self, callback: Callable[[PadFeedback], None]) -> None:
        """`callback` gets every rumble/LED/trigger change, from the manager's own thread."""
        if self._pads is not None:
            self._pads.on_feedback(callback)

    def arrive(self, index: int, kind: PadKind | None = None) -> None:
        """A controller announced itself (`kind` None: the session default). Idempotent; a
        different kind for a plugged pad replugs it as that kind."""
        if not self._valid(index, "arrive"):
            return
        kind = self._default if kind is None else kind
        with self._lock:
            self._declared[index] = kind
            if self._kinds.get(index) != kind:
                self._plug(index, kind)

    def state(
        self,
        index: int,
        state: PadState,
        *,
        active_mask: int | None = None,
        seq: int | None = None,
    ) -> None:
        """A full controller state. `active_mask` (GameStream): pads whose bit is clear are
        unplugged, and a clear bit for `index` itself means this state is its last word.
        `seq` (punktfunk/2, wrapping u8): a state not newer than the last one is dropped."""
        if not self._valid(index, "state"):
            return
        with self._lock:
            if active_mask is not None:
                for gone in [i for i in self._kinds if not active_mask & (1 << i)]:
                    self._unplug(gone)
                if not active_mask & (1 << index):
                    return
            if seq is not None:
                last = self._seq.get(index)
                if last is not None and not seq_newer(seq, last):
                    return
                self._seq[index] = seq & 0xFF
            if index not in self._kinds:
                self._plug(index, self._declared.get(index, self._default))
            pads = self._pads
        if pads is not None:
            pads.update(index, state)

    def touch(self, index: int, pointer: int, active: bool, x: float, y: float) -> None:
        """Touchpad contact `pointer` (the client's contact id, any integer) at normalized
        (x, y) in [0, 1]; `active` False lifts it. Contacts get the pad's two finger slots in
        arrival order; a third concurrent contact is dropped, as a real touchpad would."""
        if not self._live(index):
            return
        with self._lock:
            slots = self._touch.setdefault(index, {})
            finger = slots.get(pointer)
            if finger is None:
                free = [f for f in (0, 1) if f not in slots.values()]
                if not active or not free:
                    return
                finger = slots[pointer] = free[0]
            if not active:
                del slots[pointer]
        assert self._pads is not None
        self._pads.touch(index, finger, active, min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0))

    def motion(
        self,
        index: int,
        accel: tuple[float, float, float] | None = None,
        gyro: tuple[float, float, float] | None = None,
    ) -> None:
        """Accelerometer in m/s^2 and/or gyroscope in deg/s."""
        if self._live(index):
            assert self._pads is not None
            self._pads.motion(index, accel, gyro)

    def battery(self, index: int, percent: int, charging: bool) -> None:
        if self._live(index):
            assert self._pads is not None
            self._pads.battery(index, min(max(percent, 0), 100), charging)

    def remove(self, index: int, seq: int | None = None) -> None:
        """The controller went away. With `seq` (punktfunk/2) a later state older than the
        removal cannot plug it again."""
        if not self._valid(index, "remove"):
            return
        with self._lock:
            if seq is not None:
                self._seq[index] = seq & 0xFF
            self._declared.pop(index, None)
            self._unplug(index)

    def close(self) -> None:
        """Session end: unplug every pad and stop the manager."""
        with self._lock:
            for index in list(self._kinds):
                self._unplug(index)
            self._declared.clear()
            self._seq.clear()
        if self._pads is not None:
            self._pads.close()

    # --- internals (lock held where noted) ------------------------------------------------

    def _valid(self, index: int, op: str) -> bool:
        if self._pads is None:
            return False
        if not 0 <= index < MAX_PADS:
            event(_log, "pads.bad_index", logging.DEBUG, op=op, index=index)
            return False
        return True

    def _live(self, index: int) -> bool:
        with self._lock:
            return self._pads is not None and index in self._kinds

    def _plug(self, index: int, kind: PadKind) -> None:  # lock held
        assert self._pads is not None
        self._pads.arrive(index, kind)  # a manager replaces a pad of another kind itself
        self._kinds[index] = kind

    def _unplug(self, index: int) -> None:  # lock held
        self._touch.pop(index, None)
        if self._kinds.pop(index, None) is not None:
            assert self._pads is not None
            self._pads.remove(index)


def seq_newer(seq: int, last: int) -> bool:
    """punktfunk/2's wrapping u8 compare: `seq` supersedes `last` within a 127-step window."""
    diff = (seq - last) & 0xFF
    return 0 < diff < 0x80


# --- field values -> arguments ---------------------------------------------------------------

# GameStream controller arrival `type` (moonlight-common-c LI_CTYPE_*): 0 unknown, 1 Xbox,
# 2 PlayStation, 3 Nintendo. Nintendo pads are presented as Xbox pads (button positions are
# the client's business); unknown takes the session default.
_GAMESTREAM_KIND = {1: PadKind.XBOX360, 2: PadKind.DUALSENSE, 3: PadKind.XBOX360}

# punktfunk/2 GAMEPAD_ARRIVAL `code` (config.rs GamepadPref wire byte): 1 Xbox 360, 2 DualSense,
# 3 Xbox One (the 360 pad with another identity), 4 DualShock 4, 7 DualSense Edge. 0 (auto)
# and the Steam/Switch pads we cannot present take the session default.
_NATIVE_KIND = {
    1: PadKind.XBOX360,
    2: PadKind.DUALSENSE,
    3: PadKind.XBOX360,
    4: PadKind.DUALSHOCK4,
    7: PadKind.DUALSENSE,
}


_NATIVE_PREF = {PadKind.XBOX360: 1, PadKind.DUALSENSE: 2, PadKind.DUALSHOCK4: 4}


def native_pref(kind: PadKind) -> int:
    """The GamepadPref byte a punktfunk/2 client sends in GAMEPAD_ARRIVAL for `kind`."""
    return _NATIVE_PREF[kind]


def gamestream_kind(controller_type: int) -> PadKind | None:
    """PadKind for a GameStream arrival's controller type; None = session default."""
    return _GAMESTREAM_KIND.get(controller_type)


def native_kind(pref: int) -> PadKind | None:
    """PadKind for a punktfunk/2 arrival's GamepadPref byte; None = session default."""
    return _NATIVE_KIND.get(pref)


def _i16(value: int) -> int:
    value &= 0xFFFF
    return value - 0x10000 if value & 0x8000 else value


def native_state(code: int, x: int, y: int, flags: int) -> tuple[int, int, PadState]:
    """(pad, seq, state) of a punktfunk/2 GAMEPAD_STATE event (`input.rs` GamepadSnapshot):
    code = buttons, x = ls_x << 16 | ls_y, y = rs_x << 16 | rs_y (i16 halves, +y up),
    flags = seq << 24 | lt << 16 | rt << 8 | pad."""
    state = PadState(
        code & 0xFFFFFFFF,
        (flags >> 16) & 0xFF,
        (flags >> 8) & 0xFF,
        _i16(x >> 16),
        _i16(x),
        _i16(y >> 16),
        _i16(y),
    )
    return flags & 0xFF, (flags >> 24) & 0xFF, state


def native_arrival(code: int, flags: int) -> tuple[int, PadKind | None]:
    """(pad, kind) of a punktfunk/2 GAMEPAD_ARRIVAL: code = GamepadPref, pad = flags & 0xFF
    (bits 8/9 are pad-audio capabilities, never part of the index)."""
    return flags & 0xFF, native_kind(code)


def native_remove(flags: int) -> tuple[int, int]:
    """(pad, seq) of a punktfunk/2 GAMEPAD_REMOVE: flags = seq << 24 | pad."""
    return flags & 0xFF, (flags >> 24) & 0xFF


# GameStream controller battery state (LI_BATTERY_STATE_*): 0 unknown, 1 not present,
# 2 discharging, 3 charging, 4 on power but not charging, 5 full. The pad reports only a level
# and "cable connected", so 3-5 are all "charging" (on cable) there.
_ON_CABLE = {3, 4, 5}
BATTERY_STATE_FULL = 5
BATTERY_PERCENT_UNKNOWN = 0xFF


def gamestream_battery(state: int, percent: int) -> tuple[int, bool]:
    """(percent, on_cable) for a GameStream battery packet. An unknown percentage (0xFF)
    reads as 100 for a full pad and 50 otherwise: the report must carry some level."""
    if percent == BATTERY_PERCENT_UNKNOWN:
        percent = 100 if state == BATTERY_STATE_FULL else 50
    return min(percent, 100), state in _ON_CABLE


# punktfunk/2 rich input (0xCC, `quic/datagram.rs` RichInput) and motion units (`input.rs`
# gamepad::MOTION_*): touch x/y are 0..65535 over the pad's surface, motion is raw i16 at
# 20 LSB per deg/s (gyro) and 10000 LSB per g (accel).
NATIVE_GYRO_LSB_PER_DEG_S = 20
NATIVE_ACCEL_LSB_PER_G = 10_000
STANDARD_G = 9.80665


def native_touch(x: int, y: int) -> tuple[float, float]:
    """Normalized (x, y) of a punktfunk/2 RichInput::Touchpad contact."""
    return (x & 0xFFFF) / 0xFFFF, (y & 0xFFFF) / 0xFFFF


def native_motion(
    gyro: tuple[int, int, int], accel: tuple[int, int, int]
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(accel m/s^2, gyro deg/s) of a punktfunk/2 RichInput::Motion sample, ready for
    `PadRouter.motion(index, accel=..., gyro=...)`."""
    g = tuple(v / NATIVE_GYRO_LSB_PER_DEG_S for v in gyro)
    a = tuple(v * STANDARD_G / NATIVE_ACCEL_LSB_PER_G for v in accel)
    return (a[0], a[1], a[2]), (g[0], g[1], g[2])


def trigger_effects(trigger_effect: bytes) -> list[tuple[int, bytes]]:
    """`PadFeedback.trigger_effect` as punktfunk/2 HidOutput::Trigger pairs (`which` 0 = L2,
    1 = R2; 11 effect bytes), only for the sides the game changed."""
    flags, right, left = trigger_effect[0], trigger_effect[1:12], trigger_effect[12:23]
    out = []
    if flags & 0x08:  # reports.TRIGGER_LEFT
        out.append((0, bytes(left)))
    if flags & 0x04:  # reports.TRIGGER_RIGHT
        out.append((1, bytes(right)))
    return out
