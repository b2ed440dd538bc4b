"""Prometheus metrics (prometheus-client, on a registry of our own, never the global one).

Per-stage latency histograms are fed on a tick from each live session's StageStats (the samples
recorded since the previous tick), so the frame path only appends to its window as before.
Session counters and gauges are read at scrape time. Pairing attempts, failures, fallbacks and
encoder re-inits come from the event bus.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..session.stats import StageStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.012, 0.016, 0.025, 0.033, 0.05,
                     0.066, 0.1, 0.25, 0.5, 1.0)  # fmt: skip
_NAME = re.compile(r"[^a-zA-Z0-9_]")

disable_created_metrics()  # the *_created series only double the output here

Live = Callable[[], list[tuple[str, str, object]]]


def _metric_name(text: str) -> str:
    return _NAME.sub("_", text).lower()


class _SessionCollector(Collector):
    """Every live session's StageStats counters and gauges, read when scraped."""

    def __init__(self, live: Live) -> None:
        self._live = live

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        sessions = self._live()
        active = GaugeMetricFamily("punktfunk_sessions", "live streaming sessions",
                                   labels=["protocol"])  # fmt: skip
        for protocol in ("native", "gamestream"):
            active.add_metric([protocol], sum(1 for _, p, _ in sessions if p == protocol))
        yield active
        for name, protocol, stats in sessions:
            assert isinstance(stats, StageStats)
            snap = stats.snapshot()
            for key, value in snap["counters"].items():  # type: ignore[union-attr]
                metric = "punktfunk_session_" + _metric_name(key)
                family = counters.get(metric)
                if family is None:
                    family = counters[metric] = CounterMetricFamily(
                        metric, f"per-session count of {key}", labels=["session", "protocol"]
                    )
                family.add_metric([name, protocol], float(value))
            for key, value in snap["gauges"].items():  # type: ignore[union-attr]
                metric = "punktfunk_session_" + _metric_name(key)
                gfamily = gauges.get(metric)
                if gfamily is None:
                    gfamily = gauges[metric] = GaugeMetricFamily(
                        metric, f"per-session current {key}", labels=["session", "protocol"]
                    )
                gfamily.add_metric([name, protocol], float(value))
        yield from counters.values()
        yield from gauges.values()


class Metrics:
    def __init__(self, live: Live, paired_clients: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._live = live
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, int]] = {}  # session -> stage -> samples fed
        self.latency = Histogram(
            "punktfunk_stage_latency_seconds",
            "per-session, per-stage host latency (capture wait, convert, encode, send, total)",
            ["session", "protocol", "stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.pairing_attempts = Counter("punktfunk_pairing_attempts", "pairing attempts",
                                        ["protocol"], registry=self.registry)  # fmt: skip
        self.pairing_failures = Counter("punktfunk_pairing_failures", "failed pairing attempts",
                                        ["protocol"], registry=self.registry)  # fmt: skip
        self.fallbacks = Counter("punktfunk_fallbacks", "fallbacks taken (capture, audio)",
                                 ["kind"], registry=self.registry)  # fmt: skip
        self.encoder_reinits = Counter("punktfunk_encoder_reinits",
                                       "encoder re-opened for a new mode or codec",
                                       registry=self.registry)  # fmt: skip
        self.refusals = Counter("punktfunk_sessions_refused", "sessions refused",
                                registry=self.registry)  # fmt: skip
        clients = Gauge("punktfunk_paired_clients", "paired clients", ["protocol"],
                        registry=self.registry)  # fmt: skip
        for protocol in ("native", "gamestream"):
            clients.labels(protocol).set_function(lambda p=protocol: paired_clients().get(p, 0))
        self.registry.register(_SessionCollector(live))

    def on_event(self, item: dict[str, object]) -> None:
        """Bus listener: count pairing, fallbacks, re-inits and refusals."""
        kind, name = item.get("type"), str(item.get("event", ""))
        protocol = "native" if name.startswith("native.") else "gamestream"
        if kind == "pairing_requested" and name != "pairing.waiting_for_pin":
            self.pairing_attempts.labels(protocol).inc()
        elif kind == "pairing_failed" or (kind == "pairing_result" and item.get("ok") == "False"):
            self.pairing_failures.labels(protocol).inc()
        elif kind == "fallback":
            self.fallbacks.labels(name.partition(".")[0]).inc()
        elif kind == "encoder_reinit":
            self.encoder_reinits.inc()
        elif kind == "session_refused":
            self.refusals.inc()

    def tick(self) -> None:
        """Feed the histograms with what each live session recorded since the last tick."""
        with self._lock:
            live = self._live()
            names = {name for name, _, _ in live}
            for name, protocol, stats in live:
                assert isinstance(stats, StageStats)
                seen = self._seen.setdefault(name, {})
                for stage, samples in stats.samples_since(seen).items():
                    child = self.latency.labels(name, protocol, stage)
                    for ns in samples:
                        child.observe(ns / 1e9)
            for gone in set(self._seen) - names:  # an ended session's series go with it
                del self._seen[gone]
                for labels in list(self.latency._metrics):  # no public listing of children
                    if labels[0] == gone:
                        self.latency.remove(*labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)
