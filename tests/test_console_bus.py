"""The console's event bus: publishing never blocks, a slow subscriber loses its oldest events
(counted), the structured log lines feed it, and their fields survive the round trip."""

from __future__ import annotations

import logging
import threading

from punktfunk.console.bus import QUEUE_LEN, BusLogHandler, EventBus, parse_event_line
from punktfunk.log import event, format_event


def test_a_subscriber_that_never_reads_keeps_only_the_newest() -> None:
    bus = EventBus()
    stuck = bus.subscribe(lambda: None)  # never drains
    lively = bus.subscribe(lambda: None)
    for i in range(QUEUE_LEN * 4):
        bus.publish("stats", n=i)
        if i % 10 == 0:
            lively.drain()
    kept = stuck.drain()
    assert [e["n"] for e in kept] == list(range(QUEUE_LEN * 3, QUEUE_LEN * 4))
    assert stuck.dropped == QUEUE_LEN * 3 and lively.dropped == 0
    stuck.close()
    bus.publish("stats", n=-1)
    assert stuck.drain() == [] and bus.subscribers() == 1


def test_publish_from_many_threads_with_a_wake_that_fails() -> None:
    bus = EventBus()

    def gone() -> None:
        raise RuntimeError("Event loop is closed")  # what call_soon_threadsafe says then

    sub = bus.subscribe(gone)
    threads = [threading.Thread(target=lambda: [bus.publish("x") for _ in range(500)])
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert bus.counts["x"] == 2000 and len(sub.drain()) == QUEUE_LEN


def test_event_lines_round_trip() -> None:
    fields = {"client": "Steam Deck", "reason": 'said "no"\nthen=left', "plain": "a=b", "n": 3}
    name, parsed = parse_event_line(format_event("session.end", **fields))
    assert name == "session.end"
    assert parsed == {k: str(v) for k, v in fields.items()}


def test_the_log_feeds_the_bus() -> None:
    bus = EventBus()
    sub = bus.subscribe(lambda: None)
    logger = logging.getLogger("punktfunk.test_console_bus")
    logger.setLevel(logging.INFO)
    handler = BusLogHandler(bus)
    logger.addHandler(handler)
    try:
        event(logger, "session.start", session="gs-deck-0001", client="Steam Deck")
        event(logger, "session.plan", session="gs-deck-0001")  # not a bus event
        event(logger, "trust.paired", client="Steam Deck", fingerprint="ab12")
    finally:
        logger.removeHandler(handler)
    got = sub.drain()
    assert [e["type"] for e in got] == ["session_started", "pairing_completed"]
    assert got[0]["session"] == "gs-deck-0001" and got[0]["client"] == "Steam Deck"
