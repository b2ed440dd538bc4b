"""Inside a media worker: the session's capturer and encoder, opened as the host would open
them, with the monitor lease left in the host (either protocol's worker uses this).

The worker's capturer creates the ring; attaching it to the monitor asks the host (which holds
the driver connection, or the embedded program that plays the driver's part): the ring's
eventfd travels there by SCM_RIGHTS.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..capture import idd_push
from ..capture.base import Capturer, OutputFormat
from ..capture.open import open_capture
from ..encode.base import Encoder
from ..encode.factory import open_encoder
from .worker import WorkerContext


class LeaseProxy:
    """The monitor lease as the capturer sees it; attaching a ring asks the host."""

    def __init__(self, ctx: WorkerContext, output: Any) -> None:
        self._ctx = ctx
        self.output = output

    def attach_ring(self, ring_name: str, notify_fd: int | None) -> None:
        from ..vdisplay.client import DriverError

        fds = (notify_fd,) if notify_fd is not None else ()
        reply = self._ctx.request(("attach", ring_name), fds)
        if reply[1]:
            raise DriverError(reply[1])

    def close(self) -> None:
        """The host holds and releases the lease."""


def open_media(ctx: WorkerContext, spec: dict[str, Any]) -> tuple[Capturer, Encoder]:
    """The session's capturer (on the host's monitor) and encoder, from the host's spec."""
    os.environ.update(spec["env"])
    # Ring names and generations must not repeat across this host's processes.
    idd_push._generations = itertools.count(spec["generation_base"])
    plan = spec["plan"]
    capturer = open_capture(
        LeaseProxy(ctx, spec["output"]),  # type: ignore[arg-type]
        OutputFormat(gpu=False, hdr=plan.hdr),
        plan.capture,
        pipeline_depth=plan.pipeline_depth,
    )
    try:
        encoder = open_encoder(spec["backend"], plan.codec, spec["params"], capturer.hdr_meta())
    except BaseException:
        capturer.close()
        raise
    return capturer, encoder


def release(capturer: Capturer, encoder: Encoder, sock: socket.socket | None) -> None:
    """The worker's own parts, each closed whatever the others did."""
    for part in (encoder, capturer):
        with contextlib.suppress(Exception):
            part.close()
    if sock is not None:
        sock.close()


class Media(Protocol):
    """A protocol's media inside its worker, driven by the host's messages."""

    def stream(self, spec: dict[str, Any], fds: list[int]) -> None: ...
    def start(self, audio: bool) -> None: ...
    def control(self, message: tuple[Any, ...]) -> None: ...
    def close(self) -> None: ...


def serve(
    ctx: WorkerContext,
    spec: dict[str, Any],
    open_: Callable[[WorkerContext, dict[str, Any]], Media],
) -> None:
    """The worker's life: open, stream on the host's word, stop on its word (or its death).
    Messages: `("stream", spec, [udp fds])`, `("start", audio)`, protocol control, `("stop",)`."""
    started = time.monotonic()
    try:
        media = open_(ctx, spec)
    except Exception as exc:
        ctx.send(("open_failed", str(exc) or repr(exc)))
        return
    ctx.send(("opened", round((time.monotonic() - started) * 1000)))
    try:
        while not ctx.stop.is_set():
            message, fds, sent_ns = ctx.inbox.get()
            match message[0]:
                case "stop":
                    break
                case "stream":
                    media.stream(message[1], fds)
                case "start":
                    try:
                        media.start(bool(message[1]))
                        ctx.streaming_ns = time.monotonic_ns()
                        ctx.act = media.control  # from now on, on the reader thread
                    finally:
                        ctx.streaming.set()
                case _:  # control before the stream starts
                    ctx.stats.record("control_setup", time.monotonic_ns() - sent_ns)
                    media.control(message)
    finally:
        ctx.act = None
        ctx.streaming.set()
        media.close()
