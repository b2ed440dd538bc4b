"""A session's media worker process, seen from the host: spawn, talk, watch, reap.

One worker per streaming session runs its frame path (capture, convert, encode, FEC, seal,
pace, send) and its audio, so sessions scale with cores instead of sharing one interpreter
lock. The host keeps the control plane, the driver connection and monitor leases, input.

- Spawned, never forked from the threaded host: `python -m punktfunk.session.worker`, from one
  host-lifetime thread (the parent-death signal is tied to the thread that forked the child, so
  a short-lived opener thread must not be the one).
- One Unix socketpair per worker carries length-prefixed pickled tuples both ways, and file
  descriptors with SCM_RIGHTS (the shared UDP socket, the ring's eventfd).
- The worker sends a heartbeat (its stats) every `HEARTBEAT_S`; silence for `WATCHDOG_S` kills
  it. Either way the owner hears `on_exit(reason)` exactly once and releases what the session
  held for it (monitor lease, rings, fds).
- The worker never outlives the host: PR_SET_PDEATHSIG, and EOF on its socket ends it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..log import event

_log = logging.getLogger("punktfunk.session.worker")

HEARTBEAT_S = 0.25
WATCHDOG_S = 10.0  # generous: a loaded 2-core box can stall a process for seconds
FIRST_WORD_S = 30.0  # interpreter start + imports before the first heartbeat
STOP_WAIT_S = 5.0
MAX_MESSAGE = 16 << 20
_LEN = struct.Struct("!I")

Message = tuple[Any, ...]
AUTO_MIN_CORES = 8  # below this one process is as fast and cheaper (docs/scaling.md)


def workers_enabled(setting: str, test_send_limit: bool = False, display: str = "") -> bool:
    """`session_workers` resolved for this machine. The test send limiter lives in the host
    process, so a host running it keeps its media there; so does an attached Wayland desktop,
    whose capture holds the compositor or portal connection the host opened."""
    if display.startswith(("attach:wayland", "attach:portal")):
        return False
    if setting == "on":
        return True
    if setting == "off" or test_send_limit:
        return False
    return usable_cores() >= AUTO_MIN_CORES


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


class Channel:
    """Framed pickled messages (and fds) over one end of a Unix stream socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        # When the last message received was sent (CLOCK_MONOTONIC is one clock for every
        # process on the machine): how long control takes to reach a worker. One reader only.
        self.last_sent_ns = 0

    def send(self, message: Message, fds: Sequence[int] = ()) -> None:
        data = pickle.dumps((time.monotonic_ns(), message), protocol=pickle.HIGHEST_PROTOCOL)
        frame = _LEN.pack(len(data)) + data
        with self._send_lock:
            if fds:
                sent = socket.send_fds(self.sock, [frame[: _LEN.size]], list(fds))
                frame = frame[sent:]
            self.sock.sendall(frame)

    def recv(self) -> tuple[Message, list[int]]:
        """The next message and the fds that came with it; EOFError when the peer is gone."""
        head, fds = b"", []
        while len(head) < _LEN.size:
            data, got, _, _ = socket.recv_fds(self.sock, _LEN.size - len(head), 8)
            if not data:
                for fd in got:
                    os.close(fd)
                raise EOFError("peer closed")
            head += data
            fds += got
        (size,) = _LEN.unpack(head)
        if size > MAX_MESSAGE:
            raise EOFError(f"message of {size} bytes")
        body = bytearray()
        while len(body) < size:
            chunk = self.sock.recv(size - len(body))
            if not chunk:
                raise EOFError("peer closed mid-message")
            body += chunk
        self.last_sent_ns, message = pickle.loads(body)
        return message, fds

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class _Spawner:
    """Forks every worker from one long-lived thread (see the module docstring)."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[list[str], int, list[Any]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def spawn(self, argv: list[str], pass_fd: int) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="worker-spawner")
                self._thread.daemon = True
                self._thread.start()
        box: list[Any] = []
        done = threading.Event()
        self._requests.put((argv, pass_fd, [box, done]))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _run(self) -> None:
        while True:
            argv, fd, (box, done) = self._requests.get()
            try:
                box.append(
                    subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, close_fds=True)
                )
            except BaseException as exc:
                box.append(exc)
            done.set()


_spawner = _Spawner()


class WorkerProcess:
    """The host's handle on one worker. `on_message(msg, fds)` runs on the reader thread (the
    handler owns the fds); `on_exit(reason)` runs once when the worker is gone."""

    def __init__(
        self,
        name: str,
        on_message: Callable[[Message, list[int]], None],
        on_exit: Callable[[str], None],
    ) -> None:
        self.name = name
        self._on_message = on_message
        self._on_exit = on_exit
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = [sys.executable, "-m", "punktfunk.session.worker", str(theirs.fileno()),
                    str(os.getpid())]  # fmt: skip
            self.proc = _spawner.spawn(argv, theirs.fileno())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.chan = Channel(ours)
        self.last_heard = time.monotonic()
        self._heard_once = False
        self._stopping = False
        self._exited = threading.Event()
        self.exit_reason = ""
        self._reader = threading.Thread(target=self._read, name=f"{name}-worker", daemon=True)
        self._reader.start()
        event(_log, "worker.spawned", session=name, pid=self.pid)

    def send(self, message: Message, fds: Sequence[int] = ()) -> bool:
        """False when the worker is gone (the exit path reports why)."""
        try:
            self.chan.send(message, fds)
            return True
        except OSError:
            return False

    def _read(self) -> None:
        self.chan.sock.settimeout(HEARTBEAT_S * 4)
        reason = "media worker exited"
        while True:
            try:
                message, fds = self.chan.recv()
            except TimeoutError:
                limit = WATCHDOG_S if self._heard_once else FIRST_WORD_S
                if time.monotonic() - self.last_heard > limit:
                    reason = f"media worker silent for {limit:.0f} s (hung), killed"
                    self.proc.kill()
                    break
                continue
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            self.last_heard = time.monotonic()
            self._heard_once = True
            try:
                self._on_message(message, fds)
            except Exception as exc:  # a handler bug must not leave the worker unwatched
                event(_log, "worker.handler_failed", logging.ERROR, session=self.name,
                      reason=repr(exc))  # fmt: skip
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        try:
            code = self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.chan.close()
        if not self._stopping and code:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            reason = f"{reason} ({how})"
        self.exit_reason = reason
        level = logging.INFO if self._stopping else logging.WARNING
        event(_log, "worker.exit", level, session=self.name, pid=self.pid, code=code,
              reason=reason, expected=self._stopping)  # fmt: skip
        self._exited.set()
        self._on_exit("" if self._stopping else reason)

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Ask the worker to stop and wait for it (killing it after `timeout`); idempotent."""
        self._stopping = True
        self.send(("stop",))
        if not self._exited.wait(timeout):
            self.proc.kill()
            self._exited.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()
