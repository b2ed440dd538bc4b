"""The pieces around the rate controller: Moonlight's FEC status, GameStream's FEC percentage,
the test-only send-path limiter and its admin command."""

from __future__ import annotations

import struct
import time

import pytest

from punktfunk import serve
from punktfunk.gamestream.control import ControlError, parse_fec_status
from punktfunk.gamestream.video import fec_percent_for_loss, plan_blocks
from punktfunk.service import admin
from punktfunk.session import sendlimit
from punktfunk.session.ratecontrol import AckDelay, RateController, Reason
from punktfunk.session.sendlimit import SendLimiter

# SS_FRAME_FEC_STATUS as moonlight-common-c's RtpVideoQueue.c fills it (Video.h, packed, BE):
# frame 77, seq 1200/1190, 3 missing, 40 data + 8 parity, 37 + 8 received, 20 %, block 0 of 1.
FEC_STATUS = struct.pack(">IHHHHHHHBBB", 77, 1200, 1190, 3, 40, 8, 37, 8, 20, 0, 1)


def test_fec_status_parses_moonlights_layout() -> None:
    status = parse_fec_status(FEC_STATUS)
    assert len(FEC_STATUS) == 21
    assert (status.frame_index, status.total_data, status.total_parity) == (77, 40, 8)
    assert (status.fec_percentage, status.block_count) == (20, 1)
    assert not status.unrecoverable and status.lost == 3


def test_an_unrecoverable_block_counts_every_shard_that_never_came() -> None:
    status = parse_fec_status(struct.pack(">IHHHHHHHBBB", 5, 9, 1, 2, 40, 8, 30, 5, 20, 0, 1))
    assert status.unrecoverable and status.lost == 13


def test_hostile_fec_status_is_bounded_or_refused() -> None:
    with pytest.raises(ControlError):
        parse_fec_status(FEC_STATUS[:20])
    status = parse_fec_status(struct.pack(">IHHHHHHHBBB", 1, 0, 0, 65535, 4, 1, 0, 0, 0, 0, 1))
    assert status.lost == 5  # never more than the block holds


@pytest.mark.parametrize(
    ("loss", "percent"), [(0.0, 10), (0.02, 14), (0.05, 20), (0.10, 30), (0.3, 50), (1.0, 50)]
)
def test_gamestream_fec_follows_loss_within_10_to_50(loss: float, percent: int) -> None:
    assert fec_percent_for_loss(loss) == percent


def test_the_clients_minimum_parity_still_applies_at_the_lowest_percentage() -> None:
    (block,) = plan_blocks(4, fec_percent_for_loss(0.0), min_parity=2)
    assert block.parity == 2


def test_the_limiter_passes_its_rate_and_drops_the_rest() -> None:
    now = [0.0]
    limiter = SendLimiter(burst_s=0.1, clock=lambda: now[0])
    packet = bytes(1250)  # 10 kbit
    assert len(limiter.admit([packet] * 100)) == 100  # off: everything
    limiter.set(1000)  # 1000 kbit/s: 100 packets a second, 10 in the bucket
    sent = 0
    for _ in range(100):  # 1 s at 10 ms steps, 5 packets offered each (500 a second)
        now[0] += 0.01
        sent += len(limiter.admit([packet] * 5))
    assert 100 <= sent <= 115 and limiter.dropped == 500 - sent
    limiter.set(None)
    assert len(limiter.admit([packet] * 50)) == 50


def test_send_limiter_queue_delays_then_drops_only_what_overflows() -> None:
    """A link of 1000 kbps (125 bytes/ms) behind a 100 ms FIFO: a 100-packet burst of 1000 bytes
    leaves ~12 packets queued (the rest tail-dropped), sent later at the link's pace."""
    limiter = SendLimiter()
    got: list[float] = []
    limiter.set(1000, 0.1)
    start = time.monotonic()
    packet = bytes(1000)
    assert limiter.admit([packet] * 100, lambda d: got.extend(time.monotonic() for _ in d)) == ()
    assert 11 <= 100 - limiter.dropped <= 13, limiter.dropped
    deadline = time.monotonic() + 5
    while len(got) < 100 - limiter.dropped and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(got) == 100 - limiter.dropped
    assert got[0] - start >= 0.007 and got[-1] - start >= 0.09  # never faster than the link
    # A sink without a way to send later gets the policer.
    assert len(limiter.admit([packet] * 100)) < 100
    limiter.set(None)
    assert len(limiter.admit([packet] * 5, got.extend)) == 5


def test_testlimit_exists_only_when_the_test_setting_enables_it() -> None:
    assert sendlimit.test_limiter is None
    assert "testlimit" not in serve._admin_commands(None, None, None)
    limiter = SendLimiter()
    command = admin.testlimit_command(limiter)
    assert command("1500") == "limit 1500 dropped 0" and limiter.kbps == 1500
    assert command("1500 queue 300") == "limit 1500 queue 300 ms dropped 0"
    assert limiter.queue_s == 0.3
    assert command("off") == "limit off dropped 0" and limiter.kbps is None
    assert limiter.queue_s is None
    for bad in ("", "-5", "0", "fast", "99999999999", "1500 queue", "1500 queue 0", "1 q 5"):
        with pytest.raises(ValueError):
            command(bad)
    try:
        sendlimit.test_limiter = limiter
        assert "testlimit" in serve._admin_commands(None, None, None)
    finally:
        sendlimit.test_limiter = None


def test_ack_delay_times_frames_and_measures_what_arrives() -> None:
    acks = AckDelay()
    ms = 1_000_000
    for frame in range(100):  # 30 fps, 5000 encoded bytes each: 1200 kbps offered
        acks.sent(frame, frame * 33 * ms, 5000)
    # Behind a queue the acks come every 50 ms, later and later: 800 kbps delivered.
    samples = [acks.acked(frame, frame * 50 * ms + 20 * ms) for frame in range(40)]
    assert all(s is not None for s in samples)
    delays = [s.delay_ms for s in samples if s is not None]
    assert delays[0] == 20 and delays == sorted(delays) and delays[-1] == 20 + 39 * 17
    assert samples[5] is not None and samples[5].delivered_kbps is None  # under half a window
    last = samples[-1]
    assert last is not None and last.delivered_kbps is not None
    assert abs(last.delivered_kbps - 800) < 1
    assert acks.acked(39, 10**12) is None  # each newest frame once
    assert acks.acked(10**6, 10**12) is None  # never sent: no sample (a hostile number)
    assert acks.acked(50, 10**12) is not None


def test_a_delay_cut_goes_below_what_was_delivered() -> None:
    ctl = RateController(4000, 0.0)
    now = 0.0
    for _ in range(40):
        ctl.on_delay(now, 10.0)
        now += 0.05
    decision = None
    for i in range(20):  # a queue building behind a link that delivers 1000 kbps
        now += 0.05
        ctl.on_delay(now, 10.0 + 30 * i, sent_at=now - (10 + 30 * i) / 1000)
        ctl.on_delivered(now, 1000.0)
        decision = decision or ctl.poll(now)
    assert decision is not None and decision.reason is Reason.DELAY, decision
    assert decision.kbps == 850 and "1000 kbps delivered" in decision.detail, decision
