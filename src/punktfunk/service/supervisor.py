"""`punktfunk service run`: keep `serve` up, and take all of it down when asked.

The host runs as a child in its own process group. When it exits the supervisor logs why (exit
code or signal), ends everything it left running (driver, X servers, apps: see proctree) and
starts it again after a backoff: 1 s, doubling to 30 s, back to 1 s once a host has been ready
for 60 s. SIGTERM/SIGINT stop the host (relayed to its group, SIGKILL after a grace period), then
end every descendant and sweep what a killed part left in /dev/shm; a second one kills at once.
SIGHUP is relayed too: the host exits and is started again at once (a reload re-reads host.env).

Readiness: the child gets a private $NOTIFY_SOCKET; `serve` says READY=1 once its listeners are
bound and WATCHDOG=1 every status tick. The supervisor tells systemd READY=1 after the first
ready host, sends its own WATCHDOG=1 keepalives while its loop runs, and kills a ready host whose
keepalives stop (hung) so that it is restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import leftovers
from ..log import event
from . import proctree
from .notify import ENV_SOCKET, NotifyListener, notify, watchdog_interval

_log = logging.getLogger("punktfunk.service.supervisor")

STOP_GRACE_S = 15.0  # for serve to end its sessions after SIGTERM
TREE_GRACE_S = 3.0  # for what serve left (driver, X servers) after SIGTERM
HANG_S = 30.0  # a ready host silent this long is hung (it pings every 2 s)
TICK_S = 1.0


class Backoff:
    """Delays between restarts: 1 s doubling to 30 s; a host ready for 60 s resets it."""

    FIRST_S = 1.0
    MAX_S = 30.0
    HEALTHY_S = 60.0

    def __init__(self) -> None:
        self._next = self.FIRST_S

    def after_exit(self, ready_for_s: float) -> float:
        if ready_for_s >= self.HEALTHY_S:
            self._next = self.FIRST_S
        delay = self._next
        self._next = min(self._next * 2, self.MAX_S)
        return delay


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    started: float
    ready_at: float | None = None
    last_ping: float = 0.0
    stopping: bool = False  # it said STOPPING=1: shutting down, not hung


class Supervisor:
    def __init__(
        self,
        argv: Sequence[str],
        state_dir: Path,
        *,
        stop_grace_s: float = STOP_GRACE_S,
        hang_s: float = HANG_S,
    ) -> None:
        self.argv = list(argv)
        self.state_dir = state_dir
        self.stop_grace_s = stop_grace_s
        self.hang_s = hang_s
        self.backoff = Backoff()
        self.starts = 0
        self._child: _Child | None = None
        self._restart_at = 0.0
        self._restart_now = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._told_ready = False
        self._signals: list[int] = []
        self._watchdog = watchdog_interval()
        self._next_watchdog = 0.0
        self._spare: frozenset[int] = frozenset()

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, sig: int, _frame: object) -> None:
        self._signals.append(sig)

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGCHLD:
                continue
            child = self._child
            if sig == signal.SIGHUP and not self._stopping:
                event(_log, "supervisor.reload", reason="SIGHUP: restarting the host now")
                self._restart_now = True
                if child is None:
                    self._restart_at = time.monotonic()
                else:
                    self._signal_group(child, signal.SIGHUP)
                continue
            if self._stopping:  # a second SIGTERM/SIGINT: no more grace
                event(_log, "supervisor.kill", logging.WARNING, reason=signal.Signals(sig).name)
                self._stop_deadline = time.monotonic()
                continue
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.stop_grace_s
            notify("STOPPING=1")
            event(_log, "supervisor.stopping", reason=signal.Signals(sig).name)
            if child is not None:
                self._signal_group(child, sig)

    @staticmethod
    def _signal_group(child: _Child, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, sig)

    # -- the child ---------------------------------------------------------------------------

    def _start(self, listener: NotifyListener) -> None:
        env = dict(os.environ)
        env[ENV_SOCKET] = str(listener.path)
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=proctree.stop_with_parent(os.getpid()),  # safe: no threads here
        )
        now = time.monotonic()
        self._child = _Child(proc, now, last_ping=now)
        self.starts += 1
        event(_log, "supervisor.host_started", pid=proc.pid, start=self.starts)

    def _handle_messages(self, listener: NotifyListener) -> None:
        for pid, fields in listener.receive():
            child = self._child
            if child is None or pid != child.proc.pid:
                continue  # a late word from a host that is gone, or from one of its children
            now = time.monotonic()
            child.last_ping = now
            if fields.get("STOPPING") == "1":
                child.stopping = True
            if fields.get("READY") == "1" and child.ready_at is None:
                child.ready_at = now
                event(_log, "supervisor.host_ready", pid=pid, start=self.starts,
                      after_s=round(now - child.started, 2))  # fmt: skip
                if not self._told_ready:
                    self._told_ready = True
                    notify("READY=1")
                notify(f"STATUS=host ready (pid {pid}, start {self.starts})")

    def _on_exit(self, status: int) -> None:
        child = self._child
        assert child is not None
        child.proc.returncode = os.waitstatus_to_exitcode(status)
        self._child = None
        now = time.monotonic()
        cause = proctree.describe(status)
        ready_for = now - child.ready_at if child.ready_at is not None else 0.0
        expected = self._stopping or self._restart_now
        event(_log, "supervisor.host_exited", logging.INFO if expected else logging.WARNING,
              pid=child.proc.pid, cause=cause, ran_s=round(now - child.started, 1),
              ready=child.ready_at is not None)  # fmt: skip
        # Nothing the dead host started may outlive it: no orphan driver, X server or app.
        killed = proctree.end_descendants(TREE_GRACE_S, self._on_orphan, self._spare)
        if killed:
            event(_log, "supervisor.killed_leftovers", logging.WARNING, pids=killed)
        if self._stopping:
            return
        if self._restart_now:
            self._restart_now = False
            delay = 0.0
        else:
            delay = self.backoff.after_exit(ready_for)
        self._restart_at = now + delay
        event(_log, "supervisor.restart_in", seconds=delay, after=cause)
        notify(f"STATUS=host exited ({cause}); restarting in {delay:.0f} s")

    @staticmethod
    def _on_orphan(pid: int, status: int) -> None:
        event(_log, "supervisor.reaped", logging.DEBUG, pid=pid, cause=proctree.describe(status))

    def _reap(self) -> None:
        for pid, status in proctree.reap():
            if self._child is not None and pid == self._child.proc.pid:
                self._on_exit(status)
            else:
                self._on_orphan(pid, status)

    def _check_hung(self, now: float) -> None:
        child = self._child
        if child is None or child.ready_at is None or child.stopping or self._stopping:
            return
        if now - child.last_ping > self.hang_s:
            event(_log, "supervisor.host_hung", logging.ERROR, pid=child.proc.pid,
                  silent_s=round(now - child.last_ping, 1))  # fmt: skip
            child.last_ping = now  # once per hang; its exit is reaped as usual
            self._signal_group(child, signal.SIGKILL)

    # -- the loop ----------------------------------------------------------------------------

    def _timeout(self, now: float) -> float:
        timeout = TICK_S
        if self._watchdog is not None:
            timeout = min(timeout, max(0.0, self._next_watchdog - now))
        if self._child is None and not self._stopping:
            timeout = min(timeout, max(0.0, self._restart_at - now))
        if self._stopping:
            timeout = min(timeout, max(0.0, self._stop_deadline - now))
        return timeout

    def run(self) -> int:
        # What already ran below us is not the host's: e.g. a PulseAudio a container's entry
        # script started before it exec'd this supervisor as PID 1.
        self._spare = frozenset(proctree.descendants(os.getpid()))
        if not proctree.become_subreaper():
            event(_log, "supervisor.no_subreaper", logging.WARNING,
                  reason="orphans of the host go to init and cannot be ended")  # fmt: skip
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        listener = NotifyListener()
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ)
        selector.register(listener.sock, selectors.EVENT_READ)
        event(_log, "supervisor.started", pid=os.getpid(), host=" ".join(self.argv),
              watchdog_s=self._watchdog or "off")  # fmt: skip
        try:
            while True:
                selector.select(self._timeout(time.monotonic()))
                with contextlib.suppress(BlockingIOError):
                    while wake_r.recv(512):
                        pass
                self._handle_signals()
                self._handle_messages(listener)
                self._reap()
                now = time.monotonic()
                if self._stopping:
                    if self._child is None:
                        break
                    if now >= self._stop_deadline:
                        event(_log, "supervisor.stop_timeout", logging.WARNING,
                              pid=self._child.proc.pid, reason="SIGKILL to its group")  # fmt: skip
                        self._signal_group(self._child, signal.SIGKILL)
                        self._stop_deadline = now + 5.0
                elif self._child is None and now >= self._restart_at:
                    self._start(listener)
                self._check_hung(now)
                if self._watchdog is not None and now >= self._next_watchdog:
                    notify("WATCHDOG=1")
                    self._next_watchdog = now + self._watchdog
        finally:
            if self._child is not None:  # leaving by an exception: never leave the host behind
                self._signal_group(self._child, signal.SIGKILL)
            proctree.end_descendants(TREE_GRACE_S, spare=self._spare)
            # Rings, pads and X work dirs of parts that had to be killed.
            leftovers.sweep(self.state_dir, "supervisor")
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
            signal.set_wakeup_fd(old_wakeup)
            selector.close()
            listener.close()
            wake_r.close()
            wake_w.close()
            event(_log, "supervisor.stopped", starts=self.starts)
        return 0
