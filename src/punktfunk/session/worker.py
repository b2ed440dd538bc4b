"""`python -m punktfunk.session.worker FD PARENT_PID`: one session's media worker process.

Started by `workerproc.WorkerProcess`. It dies with the host (PR_SET_PDEATHSIG, and EOF on its
socket), sends a heartbeat from its first moment, then runs the protocol's media code named by
the host's first message, `("run", "module:function", spec)`; the function gets a
`WorkerContext` and returns when the session's media is done.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..log import event, setup_logging
from .stats import StageStats
from .workerproc import HEARTBEAT_S, Channel, Message

_log = logging.getLogger("punktfunk.session.worker")
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if that already happened."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the socket's EOF still ends us
    if os.getppid() != parent:
        os._exit(0)


class ForwardingStats(StageStats):
    """StageStats that also keeps what is new since the last heartbeat, for the host's copy."""

    def __init__(self) -> None:
        super().__init__()
        self._new: dict[str, list[int]] = {}
        self._delta: dict[str, int] = {}
        self._new_gauges: dict[str, int] = {}

    def record(self, stage: str, duration_ns: int) -> None:
        super().record(stage, duration_ns)
        with self._lock:
            self._new.setdefault(stage, []).append(duration_ns)

    def count(self, name: str, amount: int = 1) -> None:
        super().count(name, amount)
        with self._lock:
            self._delta[name] = self._delta.get(name, 0) + amount

    def set_gauge(self, name: str, value: int) -> None:
        super().set_gauge(name, value)
        with self._lock:
            self._new_gauges[name] = value

    def drain(self) -> tuple[dict[str, list[int]], dict[str, int], dict[str, int]]:
        with self._lock:
            out = (self._new, self._delta, self._new_gauges)
            self._new, self._delta, self._new_gauges = {}, {}, {}
        return out


def merge_into(stats: StageStats, drained: tuple[Any, ...]) -> None:
    """The host side of a heartbeat: apply a worker's drained stats to the session's copy."""
    samples, deltas, gauges = drained
    for stage, values in samples.items():
        for value in values:
            stats.record(stage, value)
    for name, amount in deltas.items():
        stats.count(name, amount)
    for name, value in gauges.items():
        stats.set_gauge(name, value)


class WorkerContext:
    """What the media code sees: the channel, the stats it fills, control messages."""

    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self.stats = ForwardingStats()
        self.stop = threading.Event()
        # (message, fds, when the host sent it)
        self.inbox: queue.Queue[tuple[Message, list[int], int]] = queue.Queue()
        self.replies: queue.Queue[tuple[Message, list[int]]] = queue.Queue()
        self.extra_state: Callable[[], dict[str, Any]] = dict
        # Once the media streams, control messages are acted on by the reader thread itself
        # (`act`): one thread wake-up between the host's send and the act, not two.
        self.act: Callable[[Message], None] | None = None
        self.streaming = threading.Event()  # set once `act` is in place (or never will be)
        self.streaming_ns = 0  # when `act` was put in place

    def send(self, message: Message, fds: tuple[int, ...] = ()) -> None:
        try:
            self.chan.send(message, fds)
        except OSError:
            self.host_gone()

    def host_gone(self) -> None:
        os._exit(0)  # the host is gone: nothing left to stream to

    def request(
        self, message: Message, fds: tuple[int, ...] = (), timeout: float = 10.0
    ) -> Message:
        """Send and wait for the host's reply (replies carry a name ending in "_done")."""
        self.send(message, fds)
        reply, _ = self.replies.get(timeout=timeout)
        return reply


def _reader(ctx: WorkerContext) -> None:
    while True:
        try:
            message, fds = ctx.chan.recv()
        except (EOFError, OSError):
            ctx.host_gone()
            return
        if message[0] == "stop":
            ctx.stop.set()
        act = ctx.act
        if str(message[0]).endswith("_done"):
            ctx.replies.put((message, fds))
        elif act is not None and message[0] != "stop":
            # Host's send -> acted on: what a keyframe ask or a bitrate change waits for while
            # the session streams; one sent while the stream was being started waited for
            # that instead (`control_setup`).
            sent_ns = ctx.chan.last_sent_ns
            stage = "control_forward" if sent_ns >= ctx.streaming_ns else "control_setup"
            ctx.stats.record(stage, time.monotonic_ns() - sent_ns)
            try:
                act(message)
            except Exception as exc:
                event(_log, "worker.failed", logging.ERROR, reason=repr(exc), on=message[0])
                ctx.send(("fatal", f"media worker failed on {message[0]}: {exc}"))
                ctx.stop.set()
                ctx.inbox.put((("stop",), [], 0))
        else:
            ctx.inbox.put((message, fds, ctx.chan.last_sent_ns))
            if message[0] == "start":
                # Later control waits until the main thread has started the media and handed
                # control to this thread, so none is acted on twice or out of order.
                ctx.streaming.wait()


def _heartbeat(ctx: WorkerContext) -> None:
    while not ctx.stop.wait(HEARTBEAT_S):
        ctx.send(("hb", ctx.stats.drain(), ctx.extra_state()))


def main(argv: list[str]) -> int:
    fd, parent = int(argv[1]), int(argv[2])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host's Ctrl-C is the host's to handle
    setup_logging(os.environ.get("PUNKTFUNK_LOG_LEVEL", "info"), None)
    ctx = WorkerContext(Channel(socket.socket(fileno=fd)))
    ctx.send(("hello", os.getpid()))
    threading.Thread(target=_reader, args=(ctx,), name="control", daemon=True).start()
    threading.Thread(target=_heartbeat, args=(ctx,), name="heartbeat", daemon=True).start()
    (message, _, _) = ctx.inbox.get()
    if message[0] != "run":
        return 0  # stopped before it was given anything to run
    _, target, spec = message
    module, func = target.split(":")
    started = time.monotonic()
    try:
        getattr(importlib.import_module(module), func)(ctx, spec)
    except Exception as exc:
        event(_log, "worker.failed", logging.ERROR, reason=repr(exc))
        ctx.send(("fatal", f"media worker failed: {exc}"))
        return 1
    finally:
        ctx.stop.set()
    event(_log, "worker.done", seconds=round(time.monotonic() - started, 1))
    ctx.send(("stopped", ctx.extra_state()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
