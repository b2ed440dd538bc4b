"""Normalized scroll (`InputKind.SCROLL`, `input/scroll.rs`) and the legacy wheel wire.

A SCROLL event: `code` = axis (0 vertical, 1 horizontal), `x` = signed Q24.8 delta in the
source's unit (120-per-detent "v120" for wheel/unknown sources, device-independent pixels for
the rest), `y` = 0, `flags` = source | phase << 8. Positive is up / right, as on the legacy
MOUSE_SCROLL (`code` = axis, `x` = delta in v120, `flags` bit 0 = precise).

`ScrollAccumulator` is the client's quantizer, `ScrollOutput` its one outbound seam (a host
without HOST_CAP2_SCROLL gets MOUSE_SCROLL), `HostScroll` what this host does with either:
whole v120 steps for the injector, the remainder kept per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from .dgram import InputEvent, InputKind

SCROLL_SCALE = 256.0  # Q24.8
SCROLL_DIP_PER_DETENT = 60.0
PRECISE_PX_PER_DETENT = 10.0  # `input.rs`: a precise MOUSE_SCROLL's x / 12 is pixels
SCROLL_FLAG_PRECISE = 1
_I32 = (-(2**31), 2**31 - 1)


class ScrollSource(IntEnum):
    UNKNOWN = 0
    WHEEL = 1
    FINGER = 2
    CONTINUOUS = 3
    TOUCH = 4
    CONTROLLER = 5


class ScrollPhase(IntEnum):
    NONE = 0
    BEGIN = 1
    UPDATE = 2
    END = 3
    CANCEL = 4
    MOMENTUM_BEGIN = 5
    MOMENTUM = 6
    MOMENTUM_END = 7


_STOPS = frozenset({ScrollPhase.END, ScrollPhase.CANCEL, ScrollPhase.MOMENTUM_END})
_MOMENTUM = frozenset({ScrollPhase.MOMENTUM_BEGIN, ScrollPhase.MOMENTUM, ScrollPhase.MOMENTUM_END})
_GLIDES = frozenset({ScrollSource.FINGER, ScrollSource.CONTINUOUS, ScrollSource.TOUCH})
_BOUNDARY = frozenset({ScrollPhase.BEGIN, ScrollPhase.MOMENTUM_BEGIN})


@dataclass(frozen=True)
class ScrollEvent:
    source: ScrollSource
    phase: ScrollPhase
    axis: int
    delta: int  # Q24.8 in `units`

    @property
    def is_wheel(self) -> bool:
        return self.source in (ScrollSource.WHEEL, ScrollSource.UNKNOWN)

    @property
    def is_stop(self) -> bool:
        return self.phase in _STOPS

    def to_event(self) -> InputEvent:
        flags = int(self.source) | int(self.phase) << 8
        return InputEvent(InputKind.SCROLL, self.axis, self.delta, 0, flags)

    @classmethod
    def from_event(cls, ev: InputEvent) -> ScrollEvent | None:
        """Decode and validate (`ScrollEvent::from_event`): None for any malformed body."""
        if ev.kind is not InputKind.SCROLL or ev.code > 1 or ev.y != 0 or ev.flags & ~0xFFFF:
            return None
        source, phase = ev.flags & 0xFF, ev.flags >> 8
        if source not in ScrollSource._value2member_map_:
            return None
        if phase not in ScrollPhase._value2member_map_:
            return None
        se = cls(ScrollSource(source), ScrollPhase(phase), ev.code, ev.x)
        if se.is_stop and se.delta != 0:
            return None  # a stop carries no distance
        if se.is_wheel and se.phase is not ScrollPhase.NONE:
            return None  # detent counters carry no gesture state
        if se.phase in _MOMENTUM and se.source not in _GLIDES:
            return None  # only a surface that can glide has a kinetic tail
        return se

    def v120(self) -> float:
        """The distance in 120-per-detent units (DIP: 60 per detent)."""
        scale = 1.0 if self.is_wheel else 120.0 / SCROLL_DIP_PER_DETENT
        return self.delta / SCROLL_SCALE * scale


def _split(total: float) -> tuple[int, float]:
    total = min(max(total, _I32[0]), _I32[1])  # saturate before the split
    out = math.trunc(total)
    return int(out), total - out


class ScrollAccumulator:
    """The client's quantizer: float deltas in the source's unit -> Q24.8 wire events. The
    unsent fraction rides per axis; a source switch or a gesture boundary drops it."""

    def __init__(self) -> None:
        self._rem = [0.0, 0.0]
        self._last: list[ScrollSource | None] = [None, None]

    def event(
        self, source: ScrollSource, phase: ScrollPhase, axis: int, delta: float
    ) -> InputEvent | None:
        if axis > 1 or axis < 0 or not math.isfinite(delta):
            return None
        stop = phase in _STOPS
        if stop and delta != 0.0:
            return None
        if ScrollEvent.from_event(ScrollEvent(source, phase, axis, 0).to_event()) is None:
            return None  # the pair itself is invalid (a phased wheel, a controller glide)
        boundary = stop or phase in _BOUNDARY
        if self._last[axis] != source or boundary:
            self._rem[axis] = 0.0
        self._last[axis] = source
        q = 0
        if not stop:
            q, self._rem[axis] = _split(delta * SCROLL_SCALE + self._rem[axis])
        if q == 0 and not boundary:
            return None
        return ScrollEvent(source, phase, axis, q).to_event()


class ScrollOutput:
    """The client's outbound seam: SCROLL passes unchanged toward a HOST_CAP2_SCROLL host and
    becomes MOUSE_SCROLL (v120, precise flag for DIP sources) toward any other."""

    def __init__(self, normalized: bool) -> None:
        self.normalized = normalized
        self._rem = [0.0, 0.0]
        self._last: list[ScrollSource | None] = [None, None]

    def prepare(self, ev: InputEvent) -> InputEvent | None:
        if ev.kind is not InputKind.SCROLL:
            return ev
        se = ScrollEvent.from_event(ev)
        if se is None or self.normalized:
            return None if se is None else ev
        a = se.axis
        if self._last[a] != se.source or se.phase in _BOUNDARY:
            self._rem[a] = 0.0
        self._last[a] = se.source
        if se.is_stop:
            self._rem[a] = 0.0
            return None
        scale = 1.0 if se.is_wheel else 120.0 / PRECISE_PX_PER_DETENT
        out, self._rem[a] = _split(se.delta / SCROLL_SCALE * scale + self._rem[a])
        if out == 0:
            return None
        flags = 0 if se.is_wheel else SCROLL_FLAG_PRECISE
        return InputEvent(InputKind.MOUSE_SCROLL, a, out, 0, flags)


class HostScroll:
    """What this host injects for MOUSE_SCROLL and SCROLL: whole v120 units per axis, the
    fraction kept for the next event of the same axis (the injector counts v120 into notches)."""

    def __init__(self) -> None:
        self._rem = [0.0, 0.0]

    def legacy(self, ev: InputEvent) -> tuple[int, int] | None:
        """(vertical, horizontal) v120 of a MOUSE_SCROLL; None for an axis that is neither.
        A precise delta is a distance already priced in v120: injected the same way."""
        if ev.code > 1:
            return None
        return (ev.x, 0) if ev.code == 0 else (0, ev.x)

    def normalized(self, ev: InputEvent) -> tuple[int, int] | None:
        se = ScrollEvent.from_event(ev)
        if se is None:
            return None
        if se.is_stop or se.phase in _BOUNDARY:
            self._rem[se.axis] = 0.0
        out, self._rem[se.axis] = _split(se.v120() + self._rem[se.axis])
        return (out, 0) if se.axis == 0 else (0, out)
