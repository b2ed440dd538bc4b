"""Clock sync (quic/clock.rs) and adaptive FEC (issue 7 rule, config.rs recovery count)."""

import pytest

from punktfunk.fec import video_parity
from punktfunk.native.wire.adaptive import (
    FEC_START_PERCENT,
    fec_percent_for_loss,
    fec_percent_for_ppm,
    recovery_shards,
)
from punktfunk.native.wire.clock import ClockSync, accept_resync, clock_offset_ns, echo
from punktfunk.native.wire.messages import ClockEcho, ClockProbe

OFF = 1_000_000  # host clock 1 ms ahead


def test_offset_takes_the_minimum_rtt_sample():
    # clock.rs `clock_offset_picks_min_rtt_and_recovers_offset`.
    t1 = 0
    t2 = t1 + 200_000 + OFF
    t3 = t2 + 50_000
    t4 = t3 - OFF + 200_000
    n1 = 1_000_000
    n2 = n1 + 200_000 + OFF
    n3 = n2 + 50_000
    n4 = n3 - OFF + 5_000_000  # a fat return path: a big RTT that must lose
    assert clock_offset_ns([(n1, n2, n3, n4), (t1, t2, t3, t4)]) == (OFF, 400_000)
    assert clock_offset_ns([]) is None


def test_offset_rounds_toward_zero_like_rust():
    assert clock_offset_ns([(0, 0, 0, 3)]) == (-1, 3)  # -3 / 2 is -1 in Rust, -2 with //


def test_a_batch_collects_rounds_and_ignores_stale_echoes():
    # clock.rs `clock_resync_collects_rounds_and_ignores_stale_echoes`.
    def reply(t1, one_way):
        t2 = t1 + one_way + OFF
        return ClockEcho(t1, t2, t2 + 10_000)

    sync = ClockSync()
    assert not sync.on_echo(reply(42, 100_000), 500_000)  # nothing in flight
    probe = sync.next_probe(1_000_000)
    for rnd in range(sync.rounds):
        one_way = 5_000_000 if rnd == 3 else 100_000
        e = reply(probe.t1_ns, one_way)
        t4 = e.t3_ns - OFF + one_way
        assert sync.on_echo(e, t4)
        assert not sync.on_echo(e, t4)  # a duplicate never records twice
        if not sync.done:
            probe = sync.next_probe(t4 + 7_000_000)  # the gap is not counted as RTT
    skew = sync.result()
    assert (skew.offset_ns, skew.rtt_ns, skew.rounds) == (OFF, 200_000, 8)


def test_host_echo_and_resync_guard():
    assert echo(ClockProbe(5), 6, 7) == ClockEcho(5, 6, 7)
    # clock.rs `clock_resync_acceptance_guard`.
    assert accept_resync(14_000_000, 10_000_000) and not accept_resync(16_000_000, 10_000_000)
    assert accept_resync(1_900_000, 200_000) and not accept_resync(2_100_000, 200_000)
    assert accept_resync(2_000_000, 0) and accept_resync(15_000_000, 10_000_000)


@pytest.mark.parametrize(
    ("loss", "percent"),
    [(0, 5), (2, 5), (2.9, 6), (5, 8), (10, 15), (20, 29), (34, 49), (35, 50), (90, 50)],
)
def test_adaptive_fec_rule(loss, percent):
    # ceil(loss% x 1.4) + 1, held in 5..50; 5% loss is exactly 7 + 1, not a float's 8 + 1.
    assert fec_percent_for_loss(loss) == percent


def test_adaptive_fec_from_feedback_ppm_and_start():
    assert FEC_START_PERCENT == 10
    assert fec_percent_for_ppm(50_000) == 8 and fec_percent_for_ppm(0) == 5


def test_recovery_shards_follow_config_rs():
    # config.rs `recovery_shards`: ceil(k x pct / 100), floored at MIN_RECOVERY_SHARDS (2).
    assert recovery_shards(200, 15) == 30 and recovery_shards(4, 10) == 2
    assert recovery_shards(0, 10) == 0 and recovery_shards(10, 0) == 0


def test_scheme_0_is_the_fec_package():
    # fec/gf8.rs @ 867f3f4 `nanors_exact_parity_vectors`: scheme 0 (GF8) parity is what
    # punktfunk.fec computes, so the host's FEC needs no second codec.
    parity = video_parity([b"\x0a", b"\x14", b"\x1e", b"\x28"], 2)
    assert [bytes(p) for p in parity] == [b"\x88", b"\x00"]
