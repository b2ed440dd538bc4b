"""Structured decision logging."""

from __future__ import annotations

import logging
from pathlib import Path

from punktfunk.log import Throttle, event, format_event, setup_logging


def test_format_event_quotes_only_when_needed() -> None:
    line = format_event("plan.resolved", mode="1920x1080@60", why="hdr off", empty="", q='a"b')
    assert line == 'plan.resolved mode=1920x1080@60 why="hdr off" empty="" q="a\\"b"'


def test_a_multi_line_value_stays_on_one_line() -> None:
    line = format_event("audio.fallback", reason="pactl info: refused\npa_context_connect() failed")
    assert line == 'audio.fallback reason="pactl info: refused\\npa_context_connect() failed"'
    assert "\n" not in line


def test_setup_logging_writes_to_stderr_and_state_dir(tmp_path: Path, capsys) -> None:
    path = setup_logging("info", tmp_path)
    log = logging.getLogger("punktfunk.test")
    event(log, "session.start", client="pc 1")
    log.debug("hidden")
    for handler in logging.getLogger("punktfunk").handlers:
        handler.flush()
    assert path == tmp_path / "logs" / "punktfunk.log"
    text = path.read_text()
    assert 'session.start client="pc 1"' in text and "hidden" not in text
    assert "session.start" in capsys.readouterr().err
    setup_logging("warning", None)


def test_unwritable_state_dir_falls_back_to_stderr(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert setup_logging("info", blocker) is None
    assert "log.file_unavailable" in capsys.readouterr().err
    setup_logging("warning", None)


def test_a_flood_gives_one_line_per_interval_and_counts_the_rest(caplog) -> None:
    now = [100.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    log = logging.getLogger("punktfunk.test.throttle")
    with caplog.at_level(logging.INFO, logger="punktfunk.test.throttle"):
        sent = [throttle.event(log, "tcp.refused", logging.WARNING, client="x") for _ in range(50)]
        assert throttle.event(log, "tcp.refused", throttle_key="other")  # its own budget
        now[0] += 10.0
        assert throttle.event(log, "tcp.refused", logging.WARNING, client="x")
    assert sent == [True] + [False] * 49
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "tcp.refused client=x since_last=1",
        "tcp.refused since_last=1",
        "tcp.refused client=x since_last=50",
    ]
