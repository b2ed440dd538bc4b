"""Crashes are never silent: logged with their traceback, counted, and service threads restarted.

Issue #11 finding 12: the ENet control thread died with a traceback on stderr only, nothing in
the log file and nothing in `status`. Now every uncaught exception (any thread) goes to the log
file with its traceback and is counted in `status`; service threads run supervised, are
restarted after a crash and, if they keep crashing, stop the host loudly (exit status 1).
Faults are injected into a real `punktfunk serve` through a sitecustomize module.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gs_host import PUNKTFUNK, TCP_PORTS, Host
from punktfunk import supervise
from punktfunk.log import setup_logging

RTSP = TCP_PORTS[2]
SITECUSTOMIZE = """
import os, threading, time, logging

fault = os.environ.get("PF_TEST_FAULT", "")

def _patch(cls, name, always):
    original = getattr(cls, name)
    calls = []

    def broken(self):
        calls.append(1)
        if always or len(calls) == 1:
            raise RuntimeError("injected fault in " + name)
        return original(self)

    setattr(cls, name, broken)

if fault == "rtsp-once":
    from punktfunk.gamestream.rtsp_server import RtspServer
    _patch(RtspServer, "_accept_loop", always=False)
elif fault == "enet-always":
    from punktfunk.gamestream.control_server import ControlServer
    _patch(ControlServer, "_loop", always=True)

def _crash_a_thread_once_logging_is_up():
    root = logging.getLogger("punktfunk")
    while not any(isinstance(h, logging.FileHandler) for h in root.handlers):
        time.sleep(0.05)
    time.sleep(1.0)
    threading.Thread(target=lambda: 1 / 0, name="pf-test-crasher").start()

if fault:
    threading.Thread(target=_crash_a_thread_once_logging_is_up, daemon=True).start()
"""


def _faulty_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> Host:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PF_TEST_FAULT", fault)
    return Host(tmp_path, "--pin", "4321", "--display", "pattern")


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _rtsp_answers() -> bool:
    with socket.create_connection(("127.0.0.1", RTSP), timeout=5) as sock:
        sock.sendall(b"OPTIONS rtsp://127.0.0.1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        return sock.recv(4096).startswith(b"RTSP/1.0 ")


def test_thread_crashes_are_logged_counted_and_the_service_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _faulty_host(tmp_path, monkeypatch, "rtsp-once")
    logfile = host.state / "logs" / "punktfunk.log"
    try:
        _wait_for(
            lambda: (
                host.status()["health"]["uncaught_exceptions"] >= 1
                and host.status()["health"]["thread_restarts"].get("rtsp")
            )
        )
        health = host.status()["health"]
        assert health["crashes_by_thread"].get("pf-test-crasher") == 1, health
        assert health["thread_restarts"].get("rtsp") == 1, health
        assert health["threads_given_up"] == [], health
        assert _rtsp_answers(), "the restarted RTSP listener does not answer"
        # What a user sees: `punktfunk status` prints the same health counters.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        env.update(PUNKTFUNK_STATE_DIR=str(host.state), PUNKTFUNK_CONFIG=str(tmp_path / "none.env"))
        shown = subprocess.run([str(PUNKTFUNK), "status"], env=env, capture_output=True,
                               text=True, timeout=30)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["health"]["thread_restarts"]["rtsp"] == 1

        text = logfile.read_text()
        assert "thread.exception thread=pf-test-crasher" in text
        assert "Traceback" in text and "ZeroDivisionError" in text
        assert "thread.crashed thread=rtsp" in text and "injected fault in _accept_loop" in text
        assert "thread.restarted thread=rtsp" in text

        assert stat.S_IMODE(logfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(logfile.parent.stat().st_mode) == 0o700
        assert host.stop() == 0
    finally:
        host.kill()


def test_a_service_thread_that_keeps_crashing_takes_the_host_down_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = _faulty_host(tmp_path, monkeypatch, "enet-always")
    try:
        assert host.proc.wait(timeout=60) == 1
        text = (host.state / "logs" / "punktfunk.log").read_text()
        assert "thread.gave_up thread=enet" in text
        assert "host.stopping" in text and "CRITICAL" in text
        assert "fatal: service thread enet crashed" in host.log.read_text()
    finally:
        host.kill()


def test_log_file_is_private_and_never_followed_through_a_symlink(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    logs.chmod(0o755)
    (logs / "punktfunk.log").write_text("older lines\n")
    (logs / "punktfunk.log").chmod(0o644)
    try:
        path = setup_logging("info", tmp_path)
        assert path is not None
        assert stat.S_IMODE(logs.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

        path.unlink()
        target = tmp_path / "victim"
        target.write_text("")
        path.symlink_to(target)
        assert setup_logging("info", tmp_path) is None
        logging.getLogger("punktfunk.test").warning("must not reach the victim")
        assert target.read_text() == ""
    finally:
        setup_logging("warning", None)
        threading.excepthook = threading.__excepthook__
        sys.excepthook = sys.__excepthook__


def test_supervisor_gives_up_after_repeated_crashes_and_calls_the_fatal_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(supervise, "FIRST_BACKOFF_S", 0.01)
    reasons: list[str] = []
    supervise.set_fatal_hook(reasons.append)
    runs: list[int] = []

    def always_crashes() -> None:
        runs.append(1)
        raise RuntimeError("boom")

    try:
        thread = supervise.supervised_thread("pf-test-service", always_crashes)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert len(runs) == supervise.MAX_CRASHES
        assert reasons and "pf-test-service" in reasons[0]
        assert "pf-test-service" in supervise.counters()["threads_given_up"]  # type: ignore[operator]
    finally:
        supervise.set_fatal_hook(None)
