"""The adaptive-bitrate controller against simulated links (pure: no sockets, a fake clock)."""

from __future__ import annotations

from punktfunk.session.ratecontrol import FLOOR_KBPS, RateController, Reason

TICK = 0.1


class Link:
    """A policer at `kbps` (None: none) with a token bucket of `bucket_s` of its rate, as the
    e2e tests' SendLimiter: what finds the bucket empty is lost."""

    def __init__(self, kbps: float | None, bucket_s: float = 0.4) -> None:
        self.bucket_s = bucket_s
        self.lost_frames = 0
        self.set(kbps)

    def set(self, kbps: float | None) -> None:
        self.kbps = kbps
        self.tokens = (kbps or 0) * self.bucket_s

    def carry(self, kbit: float) -> float:
        if self.kbps is None:
            return kbit
        self.tokens = min(self.kbps * self.bucket_s, self.tokens + self.kbps * TICK)
        passed = min(kbit, self.tokens)
        self.tokens -= passed
        return passed


def _run(
    ctl: RateController,
    start: float,
    seconds: float,
    link: Link | float | None,
    parity: int = 10,
    tail_blind: bool = False,
) -> list[tuple[float, int]]:
    """The session's view: the wire carries the encoder's bits plus parity (the session's own
    or a probe's); the client reports the shard loss every tick, and the tick's frames as lost
    when fewer bits got through than the encoder made (FEC needs as many shards as there
    were data shards). `tail_blind`: Moonlight's view of a policer's tail drop, which takes a
    frame's parity unseen: loss shows only with lost frames."""
    if not isinstance(link, Link):
        link = Link(link)
    trace = []
    now = start
    while now < start + seconds:
        ctl.set_parity(parity)
        sent = ctl.kbps * (100 + max(parity, ctl.probe_percent)) / 100 * TICK
        passed = link.carry(sent)
        frames_lost = passed < ctl.kbps * TICK * 0.999
        ctl.on_loss(1 - passed / sent if frames_lost or not tail_blind else 0.0)
        if frames_lost:
            ctl.on_frame_lost(3)
            link.lost_frames += 3
        decision = ctl.poll(now)
        if decision is not None:
            assert decision.was != decision.kbps
        trace.append((now, ctl.kbps))
        now = round(now + TICK, 6)
    return trace


def test_starts_at_the_ceiling_and_stays_there_on_a_clean_link() -> None:
    ctl = RateController(8000, 0.0)
    trace = _run(ctl, 0.0, 30, None)
    assert {k for _, k in trace} == {8000}


def test_settles_below_a_bottleneck_quickly_then_stays_mostly_clean() -> None:
    ctl = RateController(8000, 0.0)
    trace = _run(ctl, 0.0, 40, 2000)
    settled = next(t for t, k in trace if k * 1.1 <= 2000)
    assert settled <= 2.5
    after = [k for t, k in trace if t >= 5]
    assert all(k <= 2000 for k in after)  # the encoder's own bits stay under the bottleneck
    assert min(after) >= 2000 * 0.45  # ...and do not collapse below it


def test_probing_a_bottleneck_still_there_costs_no_frames() -> None:
    """Probes go on (a bottleneck may lift any time) but carry their step as parity: the
    loss they meet is repaired, the rate stays, no frame is lost."""
    for parity in (5, 10, 20):
        ctl = RateController(4000, 0.0)
        link = Link(1500)
        _run(ctl, 0.0, 8, link, parity)
        link.lost_frames = 0
        probes = 0
        for second in range(60):
            _run(ctl, 8 + second, 1, link, parity)
            probes += ctl.probe_percent > 0
        assert link.lost_frames == 0, parity
        assert probes >= 5


def test_a_probes_repaired_loss_ends_it_without_a_cut() -> None:
    ctl = RateController(4000, 0.0)
    _run(ctl, 0.0, 30, 1500)
    now = 30.0
    while ctl.probe is None:
        assert ctl.poll(now) is None or ctl.kbps <= 1500
        now = round(now + TICK, 6)
    kbps = ctl.kbps
    ctl.set_parity(10)
    assert ctl.probe_percent == 50 and ctl.congested(now)
    ctl.on_loss(0.25)  # heavy, but its parity repairs it
    assert ctl.poll(now + TICK) is None and ctl.probe is None and ctl.kbps == kbps
    assert "loss" in ctl.probe_result and ctl.congested(now + 0.2)
    ctl.on_loss(0.25)  # the next report still describes the probe
    assert ctl.poll(now + 0.2) is None and ctl.kbps == kbps


def test_a_deep_bucket_fools_a_probe_once_then_probes_last_longer() -> None:
    """A policer that lets 1 s of its rate burst through hides a bottleneck from a 2.5 s
    probe: the step taken meets it and costs frames once; later probes run long enough."""
    ctl = RateController(4000, 0.0)
    link = Link(1500, bucket_s=1.0)
    _run(ctl, 0.0, 8, link)
    link.lost_frames = 0
    events = 0
    for second in range(90):
        before = link.lost_frames
        _run(ctl, 8 + second, 1, link)
        events += link.lost_frames > before
    assert events <= 1


def test_climbs_back_to_the_ceiling_once_the_bottleneck_is_gone() -> None:
    # Wherever in its probing cycle the lift finds the controller. Worst: a lift just after a
    # congestion event or a failed probe waits out the cap hold, then one probe finds the way
    # clear (13.5 s here; the e2e bound is 20 s).
    for ceiling, bottleneck in ((4000, 1500), (8000, 2000)):
        for phase in range(25):
            lift = 20 + phase * 0.37
            ctl = RateController(ceiling, 0.0)
            _run(ctl, 0.0, lift, bottleneck)
            trace = _run(ctl, lift, 30, None)
            reached = next(t for t, k in trace if k >= 0.9 * ceiling)
            assert reached - lift <= 14, (lift, trace)
            assert trace[-1][1] == ceiling


def test_without_parity_probes_a_bottleneck_is_crossed_seldom_and_left_behind_in_time() -> None:
    """GameStream: loss shows only as lost frames. Small steps near the bottleneck, back at
    the first lost frame: one crossing per probing cycle, and the climb after a lift still
    within the e2e bound (20 s)."""
    for ceiling, bottleneck in ((4000, 1500), (8000, 2000)):
        for phase in range(25):
            lift = 20 + phase * 0.37
            ctl = RateController(ceiling, 0.0, parity_probes=False)
            link = Link(bottleneck)
            _run(ctl, 0.0, 8, link, tail_blind=True)
            link.lost_frames = 0
            _run(ctl, 8.0, lift - 8, link, tail_blind=True)
            # A crossing costs two ticks' frames here (found in one, answered the next); at
            # most one per 10 s.
            assert link.lost_frames <= 6 * (1 + (lift - 8) // 10), phase
            link.set(None)
            trace = _run(ctl, lift, 30, link, tail_blind=True)
            reached = next(t for t, k in trace if k >= 0.9 * ceiling)
            assert reached - lift <= 16, (lift, trace)


def test_repaired_light_loss_is_not_congestion() -> None:
    ctl = RateController(8000, 0.0)
    for i in range(100):
        ctl.on_loss(0.05)
        assert ctl.poll(i * TICK) is None


def test_heavy_repaired_loss_backs_off_with_its_reason() -> None:
    ctl = RateController(8000, 0.0)
    ctl.on_loss(0.25)
    decision = ctl.poll(1.0)
    assert decision is not None and decision.reason is Reason.LOSS
    assert decision.kbps <= 8000 * 0.75 * 0.95 and decision.was == 8000


def test_a_burst_of_lost_frames_backs_off_once_per_gap() -> None:
    ctl = RateController(8000, 0.0)
    ctl.on_frame_lost(4)
    first = ctl.poll(1.0)
    ctl.on_frame_lost(4)
    assert first is not None and ctl.poll(1.1) is None  # the report still describes the old rate
    ctl.on_frame_lost(4)
    assert ctl.poll(1.6) is not None


def test_an_isolated_lost_frame_is_left_to_fec_and_recovery() -> None:
    ctl = RateController(8000, 0.0)
    for i in range(20):
        ctl.on_frame_lost()
        assert ctl.poll(1.0 + i) is None
    ctl.on_frame_lost(2)
    ctl.poll(30.0)
    ctl.on_frame_lost(2)
    assert ctl.poll(30.2) is not None  # four within half a second: a burst


def test_never_below_the_floor_nor_above_the_ceiling() -> None:
    ctl = RateController(3000, 0.0)
    for i in range(200):
        ctl.on_frame_lost(4)
        ctl.poll(i * 0.6)
    assert ctl.kbps == FLOOR_KBPS
    for i in range(200):
        ctl.poll(200 + i)
    assert ctl.kbps == 3000


def test_rising_one_way_delay_backs_off_and_a_steady_offset_does_not() -> None:
    ctl = RateController(8000, 0.0)
    now = 0.0
    for _ in range(50):  # a constant 400 ms clock offset is no queue
        ctl.on_delay(now, 400.0)
        assert ctl.poll(now) is None
        now += TICK
    decision = None
    for i in range(30):  # a queue building: +10 ms per report
        ctl.on_delay(now, 400.0 + 10 * i)
        decision = decision or ctl.poll(now)
        now += TICK
    assert decision is not None and decision.reason is Reason.DELAY


def test_a_stall_is_no_queue_and_a_standing_queue_holds_probing() -> None:
    ctl = RateController(8000, 0.0, start_kbps=4000)
    now = 0.0
    for _ in range(40):
        ctl.on_delay(now, 20.0)
        now += 0.05
    # The host stalled 200 ms: the acks of that time arrive at once, late, then all is normal.
    for late in (220.0, 190.0, 160.0, 130.0):
        ctl.on_delay(now, late)
    assert ctl.poll(now) is None
    for _ in range(20):
        now += 0.05
        ctl.on_delay(now, 20.0)
        assert ctl.poll(now) is None or ctl.kbps > 4000  # probing, never a delay cut
    # A queue builds to 80 ms (cut while it rises), then stands, neither rising nor draining:
    # no further cut, and no probing into it either.
    cuts = []
    for _ in range(20):
        now += 0.05
        ctl.on_delay(now, 100.0)
        cuts.append(ctl.poll(now))
    assert any(c is not None and c.reason is Reason.DELAY for c in cuts), cuts
    for _ in range(100):
        now += 0.05
        ctl.on_delay(now, 100.0)
        assert ctl.poll(now) is None


def test_a_lower_client_ceiling_applies_at_once() -> None:
    ctl = RateController(8000, 0.0)
    decision = ctl.set_ceiling(3000)
    assert decision is not None and decision.kbps == 3000 and decision.reason is Reason.CEILING
    assert ctl.set_ceiling(6000) is None and ctl.kbps == 3000
    _run(ctl, 0.0, 60, None)
    assert ctl.kbps == 6000


def test_heavy_loss_reported_just_after_a_cut_cuts_to_what_got_through() -> None:
    ctl = RateController(8000, 0.0)
    ctl.on_frame_lost(4)
    first = ctl.poll(1.0)
    assert first is not None and first.kbps == 5600
    ctl.on_loss(0.6)  # the window before the cut: 8000 kbps sent, 3200 got through
    second = ctl.poll(1.1)
    assert second is not None and second.kbps <= 3200 and second.reason is Reason.LOSS
    assert ctl.congested(1.2) and not ctl.congested(5.0)


def test_random_loss_that_a_cut_does_not_change_is_not_congestion() -> None:
    """20 % loss whatever the rate (a lossy radio): one or two cuts, then back to the ceiling."""
    ctl = RateController(8000, 0.0)
    low = 8000
    for i in range(400):
        ctl.on_loss(0.2)
        ctl.on_frame_lost()  # FEC misses a frame now and then at this loss
        ctl.poll(i * TICK)
        low = min(low, ctl.kbps)
    assert low >= 8000 * 0.7 * 0.7
    assert ctl.kbps == 8000


def test_the_random_loss_baseline_survives_polls_without_a_report() -> None:
    """GameStream polls every 100 ms but measures loss every 250 ms."""
    ctl = RateController(8000, 0.0)
    for i in range(400):
        if i % 3 == 0:
            ctl.on_loss(0.2)
        ctl.poll(i * TICK)
    assert ctl.kbps == 8000


def test_repaired_loss_just_past_a_known_bottleneck_steps_back_before_frames_go() -> None:
    ctl = RateController(4000, 0.0)
    _run(ctl, 0.0, 20, 1500)
    last = ctl._last_cap
    assert last is not None
    ctl.kbps = int(last * 1.1)  # a clean probe's step that a deep bucket let through
    ctl.on_loss(0.04)  # FEC repairs this; the controller still heeds it
    decision = ctl.poll(40.0)
    assert decision is not None and decision.reason is Reason.LOSS and ctl.kbps < last


def test_a_cut_for_lost_frames_then_lagging_heavy_loss_is_congestion_not_baseline() -> None:
    # Seen on a real link: frames were lost before any shard-loss window arrived (cut 1), the
    # next report described the old rate (cut 2 to what got through); the loss that followed
    # must keep cutting until below the bottleneck, not be taken for the path's own loss.
    ctl = RateController(4000, 0.0)
    ctl.on_frame_lost(4)
    assert ctl.poll(1.0) is not None  # 4000 -> 2800 for lost frames, loss not yet measured
    ctl.on_loss(0.46)
    assert ctl.poll(1.2) is not None  # the old rate's report: cut to what got through
    trace = []
    now = 1.2
    while now < 6.0:
        now = round(now + 0.1, 6)
        if ctl.kbps * 1.2 > 1500:  # a 1500 kbps policer, 20 % FEC on the wire
            ctl.on_loss(1 - 1500 / (ctl.kbps * 1.2))
        ctl.poll(now)
        trace.append((now, ctl.kbps))
    settled = next(t for t, k in trace if k * 1.2 <= 1500)
    assert settled <= 3.5, trace
