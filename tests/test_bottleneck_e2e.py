"""End to end: adaptive bitrate under a simulated bottleneck (issue 13, acceptance 3).

Native (the probe's receiver, in process) and GameStream (an unmodified Moonlight client)
alike: the host runs with `test_send_limit`, which puts a token bucket on every session's video send
path; the admin command `testlimit KBPS|off` sets and lifts it mid-stream. A real client
streams the pattern display throughout; the host's status (polled) gives the encoder bitrate
over time and the client's frame timeline (same monotonic clock) what it decoded when:
- within 5 s of the limit the controller's rate is below the bottleneck and stays there but
  for brief probes;
- from then on until the limit is lifted >= 98 % of the frames the host sent are decoded;
- within 20 s of the lift the rate is back near the client's ceiling.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.service.admin import request
from test_native_stream import NativeHost

PIN = "4321"

CEILING_KBPS = 4000
BOTTLENECK_KBPS = 1500
LIMIT_AT_S = 5.0  # after the first frame: the stream runs at its ceiling first
LIFT_AT_S = 16.0
SETTLE_S = 5.0
CLIMB_S = 20.0
# The stream ends once the rate has climbed back (the recorder says so); this is only its cap,
# well past the climb's deadline so a slow machine never cuts the climb short.
STREAM_S = LIFT_AT_S + CLIMB_S + 15.0


class Recorder:
    """Polls the host for the session's encoder bitrate; sets and lifts the bottleneck."""

    def __init__(
        self, rate_of: Callable[[], int | None], state: Path, done: Callable[[], None]
    ) -> None:
        self._rate_of = rate_of
        self._state = state
        self._done = done
        self.rates: list[tuple[float, int]] = []
        self.limit_at = self.lift_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        first = None
        while not self._stop.is_set():
            rate = self._rate_of()
            now = time.monotonic()
            if rate is not None:
                self.rates.append((now, rate))
                first = first or now
            if first and not self.limit_at and now - first >= LIMIT_AT_S:
                request(self._state, f"testlimit {BOTTLENECK_KBPS}")  # AdminError if refused
                self.limit_at = time.monotonic()
            if self.limit_at and not self.lift_at and now - first >= LIFT_AT_S:
                request(self._state, "testlimit off")
                self.lift_at = time.monotonic()
            if self.lift_at and (rate == CEILING_KBPS or now - self.lift_at > CLIMB_S + 10.0):
                self._done()  # climbed all the way back, or long past the deadline
                return
            self._stop.wait(0.2)


def check(rec: Recorder, fraction_between: Callable[[float, float], float], log: str) -> None:
    assert rec.limit_at and rec.lift_at, "the stream ended before the bottleneck was lifted"
    before = [k for t, k in rec.rates if t < rec.limit_at]
    assert before and before[-1] >= 0.9 * CEILING_KBPS, rec.rates  # no bottleneck, no backoff
    during = [(t, k) for t, k in rec.rates if rec.limit_at <= t < rec.lift_at]
    settled = next((t for t, k in during if k <= BOTTLENECK_KBPS), None)
    assert settled is not None and settled - rec.limit_at <= SETTLE_S, (rec.limit_at, during)
    # Probing touches the bottleneck now and then; the rate stays below it nearly throughout.
    after = [k for t, k in during if t >= settled]
    assert sum(k <= BOTTLENECK_KBPS for k in after) >= 0.75 * len(after), during
    fraction = fraction_between(settled, rec.lift_at)
    assert fraction >= 0.98, fraction
    climbed = next((t for t, k in rec.rates if t >= rec.lift_at and k >= 0.9 * CEILING_KBPS), None)
    assert climbed is not None and climbed - rec.lift_at <= CLIMB_S, (
        rec.lift_at,
        [r for r in rec.rates if r[0] >= rec.lift_at],
    )
    assert "session.bitrate" in log and "reason=loss" in log and "reason=probe" in log


def _timeline_fraction(timeline: list[list[float]]) -> Callable[[float, float], float]:
    """Decoded / sent from the Moonlight driver's [monotonic s, host frame number] list."""

    def between(start: float, end: float) -> float:
        frames = [n for t, n in timeline if start <= t < end]
        assert frames, timeline[-5:]
        return len(set(frames)) / (max(frames) - min(frames) + 1)

    return between


def test_moonlight_settles_under_a_bottleneck_and_climbs_back(tmp_path: Path) -> None:
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern", "--test-send-limit")
    try:
        assert "test_send_limit is set" in host.log.read_text()
        assert drive(tmp_path, "--pin", "4321", "--pair-only")["paired"] is True

        def rate() -> int | None:
            sessions = host.status()["sessions"]
            return sessions[0]["gauges"].get("bitrate_kbps") if sessions else None

        stop_file = tmp_path / "stop"
        rec = Recorder(rate, host.state, stop_file.touch)
        proc = start_drive(
            tmp_path,
            "--pin",
            "4321",
            "--seconds",
            str(STREAM_S),
            "--mode",
            "640x480x30",
            "--bitrate",
            str(CEILING_KBPS),
            "--timeline",
            "--stop-file",
            str(stop_file),
        )
        rec.start()
        try:
            result = finish_drive(proc, timeout=STREAM_S + 90)
        finally:
            rec.stop()
        (tmp_path / "rates.json").write_text(json.dumps([rec.rates, rec.limit_at, rec.lift_at]))
        (tmp_path / "timeline.json").write_text(json.dumps(result["timeline"]))
        check(rec, _timeline_fraction(result["timeline"]), host.log.read_text())
    finally:
        host.kill()


def test_native_client_settles_under_a_bottleneck_and_climbs_back(tmp_path: Path) -> None:
    from punktfunk.native.client.dial import pair
    from punktfunk.native.client.probe import ClientStore, client_hello, parse_mode
    from punktfunk.native.client.receiver import NativeReceiver
    from punktfunk.native.wire.registry import AckReason

    host = NativeHost(tmp_path, "--test-send-limit")
    port, log = host.port, host.log
    try:
        assert "test_send_limit is set" in log.read_text()
        store = ClientStore(tmp_path / "client")
        addr = ("127.0.0.1", port)
        host_fp = pair(addr, store.identity, PIN, "bottleneck")
        hello = client_hello(parse_mode("640x480@30"), "bottleneck", bitrate_kbps=CEILING_KBPS)
        receiver = NativeReceiver(addr, store.identity, host_fp, hello)
        # (monotonic s, frames decoded, frames sent) sampled alongside the host's rate
        counts: list[tuple[float, int, int]] = []

        def rate() -> int | None:
            sessions = json.loads(request(tmp_path / "state", "status"))["native"]["sessions"]
            asm = receiver.assembler.stats
            counts.append(
                (time.monotonic(), receiver.stats.frames_decoded, asm.frames + asm.frames_lost)
            )
            return sessions[0]["bitrate_kbps"] if sessions else None

        def between(start: float, end: float) -> float:
            inside = [c for c in counts if start <= c[0] < end]
            assert len(inside) >= 2, counts[-5:]
            (_, d0, s0), (_, d1, s1) = inside[0], inside[-1]
            assert s1 > s0, inside
            return (d1 - d0) / (s1 - s0)

        rec = Recorder(rate, tmp_path / "state", receiver.stop)
        runner = threading.Thread(target=receiver.run, args=(STREAM_S,))
        runner.start()
        rec.start()
        try:
            runner.join(timeout=STREAM_S + 60)
        finally:
            rec.stop()
        report = receiver.report(STREAM_S)
        assert report["closed"] is None or report["closed"]["code"] == 0, report
        check(rec, between, log.read_text())
        # The client was told each change, with the governor's reason while below its ceiling.
        told = receiver.bitrates
        assert any(k <= BOTTLENECK_KBPS and why is AckReason.GOVERNOR for _, k, why in told), told
        assert told and told[-1][1] == CEILING_KBPS and told[-1][2] is None, told
    finally:
        if host.proc.poll() is None:
            host.stop()
