"""Clock skew: NTP-style probe/echo rounds and the minimum-RTT estimate (`quic/clock.rs`).

The client stamps `t1` on a ClockProbe, the host answers a ClockEcho with its receive and send
instants `t2`/`t3`, and the client stamps `t4` on arrival. Each round gives
`offset = ((t2 - t1) + (t3 - t4)) / 2` (host minus client) and
`rtt = (t4 - t1) - (t3 - t2)`; the round with the smallest RTT wins: least queuing, and it
drops the first round's setup latency. Times are Unix nanoseconds (CLOCK_REALTIME), the basis
the host stamps capture times with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from .messages import ClockEcho, ClockProbe
from .registry import CLOCK_ROUNDS

Sample = tuple[int, int, int, int]  # (t1, t2, t3, t4)


def wall_clock_ns() -> int:
    return time.time_ns()


def clock_offset_ns(samples: Sequence[Sample]) -> tuple[int, int] | None:
    """`(offset_ns, rtt_ns)` of the minimum-RTT sample; add the offset to client time."""
    best: tuple[int, int] | None = None
    for t1, t2, t3, t4 in samples:
        rtt = max((t4 - t1) - (t3 - t2), 0)
        # Rust's i128 `/ 2` truncates toward zero; Python's // floors.
        total = (t2 - t1) + (t3 - t4)
        offset = -(-total // 2) if total < 0 else total // 2
        if best is None or rtt < best[1]:
            best = (offset, rtt)
    return best


def echo(probe: ClockProbe, received_ns: int, sent_ns: int) -> ClockEcho:
    """The host's answer to one probe."""
    return ClockEcho(t1_ns=probe.t1_ns, t2_ns=received_ns, t3_ns=sent_ns)


@dataclass(frozen=True)
class ClockSkew:
    offset_ns: int  # host minus client
    rtt_ns: int  # of the minimum-RTT round, not the last one
    rounds: int


class ClockSync:
    """Client side of one batch of CLOCK_ROUNDS rounds, one probe in flight at a time.

    Echoes are matched on `t1`; a stale or duplicate echo is ignored. Space the rounds out
    (the caller decides when to send the next probe) so they sample different moments.
    """

    def __init__(self, rounds: int = CLOCK_ROUNDS) -> None:
        self.rounds = rounds
        self._pending: int | None = None
        self._samples: list[Sample] = []

    def next_probe(self, now_ns: int) -> ClockProbe:
        """Stamp a probe at send time (a gap between rounds is not counted as RTT)."""
        self._pending = now_ns
        return ClockProbe(t1_ns=now_ns)

    def on_echo(self, reply: ClockEcho, now_ns: int) -> bool:
        """Record a matching echo; True when this one was taken."""
        if self._pending is None or reply.t1_ns != self._pending:
            return False
        self._pending = None
        self._samples.append((reply.t1_ns, reply.t2_ns, reply.t3_ns, now_ns))
        return True

    @property
    def done(self) -> bool:
        return len(self._samples) >= self.rounds

    def result(self) -> ClockSkew | None:
        """The estimate from the rounds so far (a silent host may answer fewer than all)."""
        got = clock_offset_ns(self._samples)
        return None if got is None else ClockSkew(got[0], got[1], len(self._samples))


def accept_resync(batch_rtt_ns: int, floor_rtt_ns: int) -> bool:
    """Take a mid-stream batch only if its RTT is within max(2 ms, 1.5 x the floor)."""
    return batch_rtt_ns <= max(floor_rtt_ns + floor_rtt_ns // 2, 2_000_000)
