"""Bounded TCP serving for the nvhttp and RTSP listeners.

An accepted connection goes through a `ConnectionGate`: at most `per_client` connections per
client address are open at once and at most `backlog` wait for one of `workers` worker threads
(spawned as needed); anything beyond is closed at once, with a rate-limited log line. Every
connection has a deadline from its accept for the part a client controls (TLS handshake,
request line, headers, body): the gate's reaper shuts the socket down when it passes, which
ends any read blocked on it. Work after the request is in (a handler waiting for a PIN) is not
cut short: the handler calls `request_read` to lift the deadline.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

from ..log import Throttle, event
from ..supervise import supervised_thread

_log = logging.getLogger("punktfunk.gamestream.tcpguard")

WORKERS = 16
PER_CLIENT = 8
BACKLOG = 64
DEADLINE_S = 10.0
REAP_EVERY_S = 0.25
REFUSE_LOG_S = 10.0

Serve = Callable[[socket.socket, tuple[str, int]], None]


class ConnectionGate:
    def __init__(
        self,
        name: str,
        serve: Serve,
        workers: int = WORKERS,
        per_client: int = PER_CLIENT,
        backlog: int = BACKLOG,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self.name = name
        self._serve = serve
        self._max_workers = workers
        self._per_client = per_client
        self._deadline_s = deadline_s
        self._queue: queue.Queue[tuple[socket.socket, tuple[str, int]] | None] = queue.Queue(
            backlog
        )
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # client ip -> connections open (queued or served)
        self._deadlines: dict[socket.socket, float] = {}
        self._workers: list[threading.Thread] = []
        self._idle = 0  # workers waiting for a connection
        self._pending = 0  # connections queued and not yet taken by a worker
        self._stop = threading.Event()
        self._reaper = supervised_thread(f"{name}-reaper", self._reap, self._stop)
        self.stats = {"refused": 0, "timed_out": 0}
        self._throttle = Throttle(REFUSE_LOG_S)

    def start(self) -> None:
        self._reaper.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self._workers)
        for _ in workers:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
        self._reaper.join(timeout=2)

    def submit(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        """Take an accepted connection: queue it for a worker, or close it when over a limit."""
        ip = addr[0]
        with self._lock:
            over = self._open.get(ip, 0) >= self._per_client
            if not over:
                self._open[ip] = self._open.get(ip, 0) + 1
                self._deadlines[sock] = time.monotonic() + self._deadline_s
        if over:
            self._refuse(sock, ip, f"more than {self._per_client} connections from this address")
            return
        with self._lock:
            try:
                self._queue.put_nowait((sock, addr))
            except queue.Full:
                full = True
            else:
                full = False
                self._pending += 1
        if full:
            self._release(sock, ip)
            self._refuse(sock, ip, "every worker busy and the backlog full")
            return
        self._grow()

    def request_read(self, sock: socket.socket) -> None:
        """The request is in: the client-controlled part is over, lift the deadline."""
        with self._lock:
            self._deadlines.pop(sock, None)

    def _grow(self) -> None:
        with self._lock:
            # Spawn only for a connection no waiting worker will take: workers held by slow
            # clients must not leave a queued connection waiting for their deadline.
            if self._pending <= self._idle or len(self._workers) >= self._max_workers:
                return
            thread = supervised_thread(
                f"{self.name}-worker-{len(self._workers)}", self._work, self._stop
            )
            self._workers.append(thread)
        thread.start()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._pending -= 1
            if item is None:
                return
            sock, addr = item
            try:
                self._serve(sock, addr)
            except Exception as exc:  # one connection's failure is that connection's alone
                event(_log, "tcp.serve_failed", logging.WARNING, server=self.name,
                      client=addr[0], reason=repr(exc))  # fmt: skip
            finally:
                self._release(sock, addr[0])
                with contextlib.suppress(OSError):
                    sock.close()

    def _release(self, sock: socket.socket, ip: str) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)
            left = self._open.get(ip, 1) - 1
            if left > 0:
                self._open[ip] = left
            else:
                self._open.pop(ip, None)

    def _reap(self) -> None:
        while not self._stop.wait(REAP_EVERY_S):
            now = time.monotonic()
            with self._lock:
                expired = [s for s, t in self._deadlines.items() if now >= t]
                for sock in expired:
                    del self._deadlines[sock]
                    # Under the lock: a worker releases a socket here before closing it, so
                    # this never reaches a closed socket's reused descriptor. The plain
                    # socket's shutdown (SSLSocket's would drop TLS state under the reader):
                    # the blocked read returns and the worker moves on.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
            self.stats["timed_out"] += len(expired)
            if expired:
                event(_log, "tcp.deadline", logging.INFO, server=self.name, closed=len(expired),
                      deadline_s=self._deadline_s)  # fmt: skip

    def _refuse(self, sock: socket.socket, ip: str, reason: str) -> None:
        with contextlib.suppress(OSError):
            sock.close()
        self.stats["refused"] += 1
        self._throttle.event(_log, "tcp.refused", logging.WARNING, server=self.name, client=ip,
                             reason=reason)  # fmt: skip
