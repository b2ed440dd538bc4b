"""Adaptive FEC from client feedback, as pure functions (issue 7; recovery rule: config.rs).

The host starts at FEC_START_PERCENT and, for each feedback window, sets the percentage to
`ceil(loss% x 1.4) + 1` held inside [FEC_MIN_PERCENT, FEC_MAX_PERCENT]. A block of `k` data
shards then carries `ceil(k x percent / 100)` recovery shards, at least MIN_RECOVERY_SHARDS.
"""

from __future__ import annotations

from fractions import Fraction

from .registry import MIN_RECOVERY_SHARDS

FEC_START_PERCENT = 10
FEC_MIN_PERCENT = 5
FEC_MAX_PERCENT = 50
_GAIN = Fraction(14, 10)


def fec_percent_for_loss(loss_percent: float | Fraction) -> int:
    """The FEC percentage for an observed shard loss percentage.

    Exact arithmetic: in floats 5 x 1.4 is 7.000000000000001, which would ceil to 8 + 1.
    """
    loss = Fraction(loss_percent).limit_denominator(1_000_000)
    need = -(-loss * _GAIN // 1) + 1
    return int(min(max(need, FEC_MIN_PERCENT), FEC_MAX_PERCENT))


def fec_percent_for_ppm(loss_ppm: int) -> int:
    """The same rule for a feedback datagram's `loss_ppm` (parts per million)."""
    return fec_percent_for_loss(Fraction(loss_ppm, 10_000))


def recovery_shards(data_shards: int, fec_percent: int) -> int:
    """Recovery shards for a block; 0 when FEC is off or the block is empty."""
    if fec_percent <= 0 or data_shards <= 0:
        return 0
    return max(-(-data_shards * fec_percent // 100), MIN_RECOVERY_SHARDS)
