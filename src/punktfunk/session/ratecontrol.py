"""Adaptive bitrate for one session, sans-I/O: feed it receive reports and a clock, poll it for
decisions. One controller serves both protocols (native Feedback windows and asks, GameStream
FEC status).

The rule, GCC/BBR-lite:
- congestion is a burst of frames the client could not repair (lost beyond FEC), shard loss above
  `loss_backoff` even where FEC repaired it (above the path's baseline: loss that a cut left
  as it was is random loss, answered by FEC, not by rate), or a one-way delay that keeps
  rising (the smoothed delay `delay_rise_ms` above its recent minimum for `delay_sustain_s`
  and `delay_trend_ms` higher at the end of that than at its start: a queue building, not a
  stall): the rate drops multiplicatively (x `decrease`, and at least to what the loss says
  got through, for delay to `headroom` x what was delivered where that is known), at most
  once per `decrease_gap_s` because reports lag the rate they describe;
- the rate that got through at a congestion event becomes a soft cap: probing stays below it
  until the session has run clean for `cap_hold_s`, so a fixed bottleneck is not hit again
  every few seconds;
- otherwise, `hold_s` after the last decrease, the rate climbs additively by `step` of the
  ceiling every `increase_gap_s` (after a cap hold, to `cap_resume` x the last congested rate
  at once);
- a step past the last congested rate is probed first, with parity rather than picture: the
  session sends extra FEC (`probe_percent`) so the wire carries what the higher rate would,
  for `probe_s`. Clean, the rate takes the step; loss above the baseline ends the probe and
  FEC repairs what it cost (the encoder's own bits never exceeded what got through), so a
  bottleneck still there costs no frames and one that has gone is found in one probe. Past
  `near` x that rate, steps grow by `growth` each (the bottleneck is gone or far);
- no probing while the delay stands that far above its minimum (a queue not yet drained);
- never above the client's ceiling, never below `floor_kbps`.
Delay samples need no synchronised clocks: any fixed offset cancels, only the rise counts
(native: frame sent -> the client's ack of it, `AckDelay`; GameStream reports no delay).
Every decision carries its reason, for the log and for the client (BitrateChanged).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..log import event
from .stats import StageStats

_log = logging.getLogger("punktfunk.session.ratecontrol")

FLOOR_KBPS = 500


class Reason(Enum):
    LOSS = "loss"  # frames FEC could not repair, or heavy shard loss
    DELAY = "delay"  # one-way delay rising: a queue is building
    PROBE = "probe"  # a clean stretch: try a little more
    CEILING = "ceiling"  # the client changed its ceiling


@dataclass(frozen=True)
class Tuning:
    decrease: float = 0.7
    decrease_gap_s: float = 0.5
    # Below what got through, room for what bursts: a recovery IDR from an encoder that cannot
    # invalidate references is many frames' worth of bits.
    headroom: float = 0.85
    hold_s: float = 1.5
    increase_gap_s: float = 1.0
    step: float = 0.08  # of the ceiling, per increase
    cap_hold_s: float = 6.0
    cap_margin: float = 0.8  # during a cap hold, stay below this fraction of the cap
    cap_resume: float = 0.95  # after it, straight to this fraction of the last congested rate
    near: float = 1.2  # steps ending past the last congested rate and below this multiple...
    probe_s: float = 2.5  # ...are probed this long with parity first (a policer's bucket drains)
    probe_max_percent: int = 50  # the parity a probe may use (what the clients accept)
    growth: float = 1.25  # beyond `near`: each clean step this much larger than the last
    # Without parity probes (GameStream: a policer's tail drop takes a frame's parity unseen,
    # so a probe learns nothing), steps near the last congested rate are this fraction of the
    # rate, each clean one past it `near_growth` x larger; one lost frame there steps back.
    near_step: float = 0.04
    near_growth: float = 1.5
    loss_backoff: float = 0.15  # shard loss that counts as congestion even when repaired
    burst_frames: int = 4  # frames lost beyond FEC within...
    burst_window_s: float = 0.5  # ...this long that count as congestion
    base_window_s: float = 3.0  # a cut this recent that left the loss as it was...
    base_margin: float = 0.02  # ...(within this) makes that loss the path's baseline
    delay_rise_ms: float = 25.0
    delay_sustain_s: float = 0.25  # a stall's late burst of samples is no queue...
    delay_trend_ms: float = 5.0  # ...nor a queue standing still: rising means by this much
    delay_window_s: float = 10.0  # the minimum delay is taken over this long...
    delay_warmup_s: float = 1.0  # ...once samples span this long (a session's first frames)


@dataclass(frozen=True)
class Decision:
    kbps: int
    was: int
    reason: Reason
    detail: str


@dataclass(frozen=True)
class Probe:
    """A step under trial: `target` kbps, carried meanwhile as `percent` parity."""

    since: float
    was: int
    target: int
    percent: int


class RateController:
    """Not thread-safe: one owner feeds and polls it (the session serialises calls)."""

    def __init__(
        self,
        ceiling_kbps: int,
        now: float,
        *,
        floor_kbps: int = FLOOR_KBPS,
        start_kbps: int | None = None,
        tuning: Tuning | None = None,
        parity_probes: bool = True,
    ) -> None:
        self.t = tuning or Tuning()
        self._parity_probes = parity_probes  # the client reports loss that FEC repaired
        self.ceiling = max(1, ceiling_kbps)
        self.floor = min(floor_kbps, self.ceiling)
        self.kbps = self._bound(start_kbps if start_kbps is not None else self.ceiling)
        self._last_decrease = -1e9
        self._last_increase = now
        self._cap: int | None = None
        self._last_cap: int | None = None
        self._before = self.kbps  # the rate before the last decrease
        self._cut_loss = 0.0  # the loss that caused it
        self._base = 0.0  # loss that does not answer to the rate (random, not congestion)
        self._cap_since = now
        self._streak = 0  # clean increases since the last decrease
        self._parity = 10  # the session's FEC percentage in use (`set_parity`)
        self.probe: Probe | None = None
        self.probe_result = ""  # how the last probe ended, for the log
        self._probe_end = -1e9
        self._probe_s = self.t.probe_s
        self._committed = -1e9  # when the last clean probe's step was taken
        # congestion evidence gathered since the last poll
        self._lost_frames = 0
        self._fed = False  # a loss report arrived since the last poll
        self._losses: deque[tuple[float, int]] = deque()
        self._loss = 0.0
        self._delays: deque[tuple[float, float]] = deque()
        self._smoothed: float | None = None
        self._over: tuple[float, float] | None = None  # since when, from what, above the rise
        self._delivered: tuple[float, float] | None = None  # when, kbps

    def _bound(self, kbps: float) -> int:
        return int(min(self.ceiling, max(self.floor, kbps)))

    # --- reports ----------------------------------------------------------------------------
    def on_loss(self, fraction: float) -> None:
        """Shard loss over a report window (0..1), repaired or not."""
        self._loss = max(self._loss, min(1.0, max(0.0, fraction)))
        self._fed = True

    def on_frame_lost(self, count: int = 1) -> None:
        """Frames the client could not reassemble even with FEC."""
        self._lost_frames += max(0, count)

    def on_delay(self, now: float, one_way_ms: float, sent_at: float | None = None) -> None:
        """A one-way delay sample (any fixed clock offset cancels: only its rise counts).
        `sent_at`, where known on this clock: a sample of what left before the last cut
        describes the old rate (a queue delays its own news) and is no evidence against
        the new one."""
        stale = sent_at is not None and sent_at < self._last_decrease
        self._delays.append((now, one_way_ms))
        while self._delays and now - self._delays[0][0] > self.t.delay_window_s:
            self._delays.popleft()
        self._smoothed = (
            one_way_ms if self._smoothed is None else 0.8 * self._smoothed + 0.2 * one_way_ms
        )
        if self._standing() is None:
            self._over = None
        elif self._over is None and not stale:
            self._over = now, self._smoothed

    def on_delivered(self, now: float, kbps: float) -> None:
        """What the path delivered lately (native: the encoded bits of acked frames); a cut
        for delay goes at once below it rather than by steps, each a queue's delay late."""
        self._delivered = now, kbps

    def set_parity(self, percent: int) -> None:
        """The FEC percentage the session uses apart from probes: the wire carries the
        encoder's bits x (1 + percent / 100)."""
        self._parity = max(0, percent)

    @property
    def probe_percent(self) -> int:
        """The parity the session should send with now (0: its own)."""
        return self.probe.percent if self.probe is not None else 0

    def set_ceiling(self, kbps: int) -> Decision | None:
        """The client's new ceiling; the rate follows it down at once, up by probing."""
        self.ceiling = max(1, kbps)
        self.floor = min(self.floor, self.ceiling)
        if self.kbps > self.ceiling:
            was, self.kbps = self.kbps, self.ceiling
            return Decision(self.kbps, was, Reason.CEILING, f"client ceiling {kbps} kbps")
        return None

    # --- decisions --------------------------------------------------------------------------
    def _standing(self) -> float | None:
        """How far the smoothed delay stands above its recent minimum, when that is more than
        `delay_rise_ms` (a queue), else None."""
        delays = self._delays
        if self._smoothed is None or len(delays) < 8:
            return None
        if delays[-1][0] - delays[0][0] < self.t.delay_warmup_s:
            return None
        above = self._smoothed - min(d for _, d in delays)
        return above if above > self.t.delay_rise_ms else None

    def _delay_rising(self, now: float) -> str | None:
        over, above = self._over, self._standing()
        if over is None or above is None or now - over[0] < self.t.delay_sustain_s:
            return None
        assert self._smoothed is not None
        if self._smoothed < over[1] + self.t.delay_trend_ms:
            return None  # high but not rising: a queue standing or draining, a stall's echo
        self._over = now, self._smoothed  # the next cut needs its own evidence
        return f"one-way delay {above:.0f} ms above its minimum and rising"

    def poll(self, now: float) -> Decision | None:
        """The change to make now, if any; call it a few times a second."""
        loss, fed = self._loss, self._fed
        self._loss, self._fed = 0.0, False
        if self._lost_frames:
            self._losses.append((now, self._lost_frames))
            self._lost_frames = 0
        while self._losses and now - self._losses[0][0] > self.t.burst_window_s:
            self._losses.popleft()
        # One frame now and then is FEC's miss on a lossy link (the client recovers it); a
        # burst of them is a queue overflowing.
        lost = any_lost = sum(n for _, n in self._losses)
        if lost < self.t.burst_frames:
            lost = 0
        if fed:  # a cleaner window: the path's own loss went down
            self._base = min(self._base, loss)
        excess = loss - self._base
        # A probe's loss is its parity's, repaired: no reason to cut (reports lag the end of
        # one that failed).
        probing = self.probe is not None or now - self._probe_end < self.t.decrease_gap_s
        why: tuple[Reason, str] | None = None
        if lost and (self._base == 0.0 or excess > self.t.base_margin):
            why = Reason.LOSS, f"{lost} frame(s) lost beyond FEC, shard loss {loss:.1%}"
        elif excess > self.t.loss_backoff and not probing:
            why = Reason.LOSS, f"shard loss {loss:.1%}"
        elif (rising := self._delay_rising(now)) is not None:
            why = Reason.DELAY, rising
        if why is not None:
            self._end_probe(now, f"ended by {why[0].value}")
            return self._decrease(now, loss, *why)
        probe = self.probe
        if probe is not None:
            if fed and excess > self.t.base_margin:
                # The path cannot carry the step; FEC repaired what finding that out cost.
                self._end_probe(now, f"loss {loss:.1%}: stays at {self.kbps} kbps")
                self._cap, self._cap_since = self._last_cap, now
                self._streak = 0
                return None
            if now - probe.since < self._probe_s:
                return None
            self.probe, self.probe_result = None, "clean"  # no _probe_end: nothing to discount
            self._streak += 1
            self._last_increase = self._committed = now
            was, self.kbps = self.kbps, probe.target
            return Decision(self.kbps, was, Reason.PROBE, f"clean with {probe.percent}% parity")
        last = self._last_cap
        near = last is not None and last < self.kbps < self.t.near * last
        if near and not probing and (any_lost or (fed and excess > self.t.base_margin)):
            # A rate just past a bottleneck seen before (probed, but a deep bucket can hide
            # it a while) found loss that FEC still repairs: back below it before frames go
            # too, and hold there a while.
            self._fooled(now)
            was, self.kbps = self.kbps, self._bound(self.t.cap_margin * last)
            self._cap, self._cap_since = last, now
            self._last_decrease = self._last_increase = now
            self._streak = 0
            self._losses.clear()
            detail = f"{any_lost} frame(s) lost" if any_lost else f"loss {loss:.1%}"
            return Decision(self.kbps, was, Reason.LOSS, f"probe past {last} kbps: {detail}")
        return self._increase(now)

    def _decrease(self, now: float, loss: float, reason: Reason, detail: str) -> Decision | None:
        if now - self._last_decrease < self.t.decrease_gap_s:
            # Reports lag: heavy loss measured just after a cut still describes the rate before
            # it. What that rate got through bounds the rate now (a deeper cut, no new gap).
            through = int(self._before * (1.0 - loss))
            if loss <= self.t.loss_backoff or self.t.headroom * through >= self.kbps:
                return None
            self._cut_loss = max(self._cut_loss, loss)  # what the rate before the cut met
            self._cap = self._last_cap = min(self._cap or through, through)
            was, self.kbps = self.kbps, self._bound(self.t.headroom * through)
            if self.kbps == was:
                return None
            return Decision(self.kbps, was, reason, f"{detail}; {through} kbps got through")
        if (
            now - self._last_decrease < self.t.base_window_s
            and self._cut_loss > self.t.base_margin  # a cut for lost frames alone proves nothing
            and self.kbps <= self.t.decrease * self._before * 1.05
            and loss > self.t.base_margin
            and loss >= self._cut_loss - self.t.base_margin
        ):
            # A cut of 30 % left the loss where it was: it is the path's own (radio, a lossy
            # link), not a queue overflowing. It becomes the baseline; FEC answers it.
            self._base = loss
            return None
        self._fooled(now)
        self._cut_loss = loss
        self._losses.clear()
        self._over = None
        self._before = self.kbps
        target = self.kbps * min(self.t.decrease, self.t.headroom * (1.0 - loss))
        got = self._delivered
        if reason is Reason.DELAY and got is not None and now - got[0] <= 1.0:
            # Behind a queue, what arrives is the path's rate; the queue drains below it.
            target = min(target, self.t.headroom * got[1])
            detail = f"{detail}; {got[1]:.0f} kbps delivered"
        new = self._bound(target)
        # What got through (a policer passes rate x (1 - loss)) caps the probing after this;
        # with no loss measured yet (lost frames came first), the rate after the cut does.
        through = int(self.kbps * (1.0 - loss)) if loss > self.t.base_margin else new
        if self._cap is not None:
            through = min(through, self._cap)  # a cap still in force only comes down
        self._cap = self._last_cap = through
        self._cap_since = now
        self._last_decrease = self._last_increase = now
        self._streak = 0
        if new == self.kbps:
            return None
        was, self.kbps = self.kbps, new
        return Decision(new, was, reason, detail)

    def _fooled(self, now: float) -> None:
        """Congestion soon after a clean probe's step: a deep bucket (a policer's burst) hid
        the bottleneck for the probe's length; probe longer from now on."""
        if now - self._committed < 2 * self._probe_s:
            self._probe_s = min(4 * self.t.probe_s, 2 * self._probe_s)

    def _end_probe(self, now: float, result: str) -> None:
        """A probe that failed or gave way: the loss reports just after it describe it."""
        if self.probe is not None:
            self.probe, self.probe_result, self._probe_end = None, result, now

    def congested(self, now: float) -> bool:
        """Backing off or probing right now: loss meanwhile is the path's answer to the rate
        (or the probe), which they answer; more parity would only add to it (adaptive FEC
        holds while this is so)."""
        recent = max(self._last_decrease, self._probe_end)
        return self.probe is not None or now - recent < self.t.hold_s

    def _increase(self, now: float) -> Decision | None:
        if now - self._last_decrease < self.t.hold_s or self._standing() is not None:
            return None
        if now - self._last_increase < self.t.increase_gap_s:
            return None
        last = self._last_cap
        if self._cap is not None and now - self._cap_since >= self.t.cap_hold_s:
            self._cap = None  # clean long enough: the bottleneck may have gone
            if last is not None and self.kbps < self.t.cap_resume * last:
                # What got through at the congestion event: back near it at once.
                return self._step(
                    now, self._bound(self.t.cap_resume * last), "clean after the hold"
                )
        step = self.t.step * self.ceiling
        if self._cap is not None:
            new = min(self.kbps + step, self._cap * self.t.cap_margin)
            return self._step(
                now, self._bound(new), f"clean, below the last congested rate {self._cap}"
            )
        if last is None or self.kbps >= self.t.near * last:
            # Far from any bottleneck seen: steps grow while clean (it has gone, or is far).
            new = self.kbps + step * self.t.growth**self._streak
            self._streak += last is not None
            return self._step(now, self._bound(new), "clean")
        if not self._parity_probes:
            near = self.t.near_step * self.t.near_growth**self._streak * self.kbps
            self._streak += self.kbps > last
            return self._step(
                now, self._bound(self.kbps + near), "clean, near the last congested rate"
            )
        # Near the last congested rate: the step (as large as parity can carry) is probed.
        target = self._bound(self.kbps * (100 + self.t.probe_max_percent) / (100 + self._parity))
        if target <= self.kbps:
            return None
        percent = math.ceil((target / self.kbps * (100 + self._parity)) - 100 - 1e-9)
        self.probe = Probe(now, self.kbps, target, min(self.t.probe_max_percent, percent))
        self._last_increase = now
        return None

    def _step(self, now: float, new: int, detail: str) -> Decision | None:
        if new <= self.kbps:
            return None
        self._last_increase = now
        was, self.kbps = self.kbps, new
        return Decision(new, was, Reason.PROBE, detail)


@dataclass(frozen=True)
class AckSample:
    delay_ms: float  # frame sent -> acked, on the host's clock
    delivered_kbps: float | None  # encoded bits of the frames acked over the last second


class AckDelay:
    """Native delay samples: from a frame's last packet handed to the kernel to the client's
    Feedback naming it the newest frame completed (`acked`). Both ends are the host's clock;
    the sample also holds the way back and the client's reassembly, which stay about constant,
    so its rise is the queue on the path. The encoded bits of the frames acked per second are
    what the path delivers: behind a queue, its rate. Each newest frame counts once; a frame
    not sent lately (a hostile or confused number) gives no sample. Thread-safe (sent on the
    send thread, acked on the socket thread)."""

    def __init__(self, keep: int = 256, window_s: float = 1.0) -> None:
        self._keep, self._window_ns = keep, int(window_s * 1e9)
        self._lock = threading.Lock()
        self._sent: dict[int, tuple[int, int]] = {}  # frame -> (sent_ns, encoded bytes)
        self._order: deque[int] = deque()
        self._got: deque[tuple[int, int]] = deque()  # (acked at ns, encoded bytes)
        self._newest = -1

    def sent(self, frame: int, sent_ns: int, size: int = 0) -> None:
        with self._lock:
            self._sent[frame] = sent_ns, size
            self._order.append(frame)
            while len(self._order) > self._keep:
                self._sent.pop(self._order.popleft(), None)

    def acked(self, frame: int, now_ns: int) -> AckSample | None:
        """The sample for a newly acked newest frame, else None."""
        with self._lock:
            known = self._sent.get(frame)
            if known is None or frame <= self._newest:
                return None
            self._newest = frame
            got = self._got
            got.append((now_ns, known[1]))
            while now_ns - got[0][0] > self._window_ns:
                got.popleft()
            span = now_ns - got[0][0]
            delivered = None
            if span >= self._window_ns // 2:  # the first ack opens the span, its bytes before it
                delivered = sum(n for _, n in got) - got[0][1]
                delivered = delivered * 8e6 / span  # bytes per ns -> kbps
            return AckSample(max(0.0, (now_ns - known[0]) / 1e6), delivered)


class SessionRate:
    """One session's controller wired to its encoder: reports in (any thread), each change
    applied to the encoder, shown in the session's stats (`bitrate_kbps` gauge, the status
    line) and logged with its reason. `notify` tells the client where the protocol can."""

    def __init__(
        self,
        session: str,
        ceiling_kbps: int,
        stats: StageStats,
        apply: Callable[[int], None],
        notify: Callable[[Decision], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        parity_probes: bool = True,
    ) -> None:
        self._session = session
        self._stats = stats
        self._apply = apply
        self._notify = notify
        self._clock = clock
        self._lock = threading.Lock()
        self.controller = RateController(ceiling_kbps, clock(), parity_probes=parity_probes)
        stats.set_gauge("bitrate_kbps", self.controller.kbps)

    @property
    def kbps(self) -> int:
        return self.controller.kbps

    def loss(self, fraction: float) -> None:
        with self._lock:
            self.controller.on_loss(fraction)

    def frames_lost(self, count: int = 1) -> None:
        with self._lock:
            self.controller.on_frame_lost(count)

    def delay(self, one_way_ms: float, timed_here: bool = False) -> None:
        """A delay sample; `timed_here`: both its ends are this host's clock (`AckDelay`)."""
        with self._lock:
            now = self._clock()
            sent_at = now - one_way_ms / 1000 if timed_here else None
            self.controller.on_delay(now, one_way_ms, sent_at)

    def acked(self, sample: AckSample) -> None:
        """A native ack's delay and delivered rate (`AckDelay`)."""
        self.delay(sample.delay_ms, timed_here=True)
        if sample.delivered_kbps is not None:
            with self._lock:
                self.controller.on_delivered(self._clock(), sample.delivered_kbps)

    def set_ceiling(self, kbps: int) -> int:
        """The client's new ceiling; returns the rate in force after it."""
        with self._lock:
            decision = self.controller.set_ceiling(kbps)
        if decision is not None:
            self._enact(decision)
        return self.controller.kbps

    def congested(self) -> bool:
        with self._lock:
            return self.controller.congested(self._clock())

    def fec_percent(self, own: int) -> int:
        """The parity to send with: the session's own (adaptive FEC), or more while a probe
        carries a step as parity."""
        with self._lock:
            self.controller.set_parity(own)
            return max(own, self.controller.probe_percent)

    def tick(self) -> Decision | None:
        """Decide and enact; call a few times a second (on each report is fine)."""
        with self._lock:
            ctl = self.controller
            before = ctl.probe
            decision = ctl.poll(self._clock())
            after = ctl.probe
        if after is not None and after is not before:
            event(_log, "session.probe", session=self._session, kbps=after.was,
                  target=after.target, parity=after.percent)  # fmt: skip
        elif before is not None and after is None:
            event(_log, "session.probe", session=self._session, kbps=before.was,
                  target=before.target, result=ctl.probe_result)  # fmt: skip
        if decision is not None:
            self._enact(decision)
        return decision

    def _enact(self, decision: Decision) -> None:
        self._apply(decision.kbps)
        self._stats.set_gauge("bitrate_kbps", decision.kbps)
        self._stats.count("bitrate_changes")
        event(_log, "session.bitrate", session=self._session, kbps=decision.kbps,
              was=decision.was, reason=decision.reason.value, detail=decision.detail)  # fmt: skip
        if self._notify is not None:
            self._notify(decision)
