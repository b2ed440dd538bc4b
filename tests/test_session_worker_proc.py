"""Issue #14: the media worker process's own life, without a session around it.

A real worker (`python -m punktfunk.session.worker`) is spawned; the host side hears its
heartbeat, and a worker that stops answering (SIGSTOP: hung, as far as anyone can tell) is
killed by the watchdog and reported once, with the reason.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from punktfunk.session import workerproc
from punktfunk.session.workerproc import WorkerProcess, workers_enabled


def test_a_silent_worker_is_killed_by_the_watchdog_and_reported_once(monkeypatch) -> None:
    monkeypatch.setattr(workerproc, "WATCHDOG_S", 1.5)
    heard: list[object] = []
    exits: list[str] = []
    gone = threading.Event()

    def on_exit(reason: str) -> None:
        exits.append(reason)
        gone.set()

    worker = WorkerProcess("t", lambda msg, fds: heard.append(msg[0]), on_exit)
    deadline = time.monotonic() + 30
    while heard.count("hb") < 2:  # it says hello, then beats (it was never told to run)
        assert time.monotonic() < deadline, heard
        time.sleep(0.05)
    assert heard[0] == "hello"
    os.kill(worker.pid, signal.SIGSTOP)
    assert gone.wait(20), "the watchdog never fired"
    assert len(exits) == 1 and "silent" in exits[0] and "signal 9" in exits[0], exits
    assert not worker.alive and not os.path.exists(f"/proc/{worker.pid}")
    worker.stop()  # idempotent on a dead worker
    assert len(exits) == 1


def test_a_stopped_worker_exits_cleanly_without_a_failure_reason() -> None:
    exits: list[str] = []
    worker = WorkerProcess("t", lambda msg, fds: None, exits.append)
    worker.stop(timeout=30)
    assert exits == [""] and worker.proc.returncode is not None


def test_auto_follows_the_cores() -> None:
    assert workers_enabled("on") and not workers_enabled("off")
    cores = len(os.sched_getaffinity(0))
    assert workers_enabled("auto") is (cores >= workerproc.AUTO_MIN_CORES)
    assert not workers_enabled("auto", test_send_limit=True)
    # An attached Wayland desktop's capture holds the host's portal/compositor connection.
    assert not workers_enabled("on", display="attach:portal")
    assert not workers_enabled("on", display="attach:wayland:DP-1")
    assert workers_enabled("on", display="attach:1")
