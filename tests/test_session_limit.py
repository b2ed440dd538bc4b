"""`max_sessions=auto`: the capacity rule, and what `punktfunk serve` resolves and logs."""

from __future__ import annotations

from punktfunk.session.limit import IN_PROCESS_CAP, SessionLimit, capacity


def test_capacity_follows_cores_and_encoder_and_one_process_stops_at_its_lock() -> None:
    assert capacity(2, workers=False, hardware=False)[0] == 4
    assert capacity(16, workers=False, hardware=False)[0] == IN_PROCESS_CAP
    assert capacity(16, workers=True, hardware=False)[0] == 32
    assert capacity(16, workers=True, hardware=True)[0] == 64  # the setting's own ceiling
    assert capacity(1, workers=True, hardware=True)[0] == 4
    n, why = capacity(8, workers=True, hardware=False)
    assert n == 16 and "8 core(s)" in why and "worker" in why


def test_a_session_over_the_limit_is_refused_with_the_reason() -> None:
    running = [0]
    limit = SessionLimit(2, lambda: running[0])
    assert limit.refusal("native", "a") is None
    running[0] = 2
    reason = limit.refusal("gamestream", "b")
    assert reason is not None and "limit of 2" in reason and "max_sessions" in reason
    assert limit.recent()[-1]["client"] == "b"
