"""The driver's control server: `proto/control` messages over a Unix socket in the state dir.

SOCK_SEQPACKET keeps message boundaries, so a malformed or truncated message is answered with
an error reply, logged, and the connection (and every other) keeps working. One thread per
connection parses and answers; everything that creates or destroys state (ADD, REMOVE,
CLEAR_ALL, ATTACH_RING, the watchdog's teardown) runs on a single long-lived worker thread, so
those are serialized, and the X servers it starts (which die with their starting thread,
PR_SET_PDEATHSIG) live exactly as long as the driver. The watchdog removes every monitor of a
connection that has been silent for the watchdog timeout (its host is gone or hung); PING is
what a host sends to stay alive, any other answered request counts as well, and a connection
whose request is still being served (a slow ADD) is never reaped.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from ... import __version__
from ...log import event
from ...proto import control
from ...proto.control import (
    AddReply,
    AddRequest,
    ControlProtocolError,
    Message,
    MsgFlags,
    Op,
    RemoveRequest,
    SetRenderAdapterRequest,
    Status,
)
from ..adapter import adapter_problem
from ..base import DisplayMode
from ..ext import OP_ATTACH_RING, AttachRingRequest, encode_raw, encode_raw_error
from .backends import Backend
from .monitors import Monitors, OpError

_log = logging.getLogger("punktfunk.vdisplay.driver")
_T = TypeVar("_T")
_RECV_SIZE = control.HEADER_SIZE + control.MAX_BODY + 1
_MAX_FDS = 4
_ANC_SIZE = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)


@dataclass
class _Conn:
    conn_id: int
    sock: socket.socket
    last_ping: float = field(default_factory=time.monotonic)
    open: bool = True
    busy: bool = False  # a request is being served: its host is waiting, not gone


def _take_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % array.array("i").itemsize
            fds.extend(array.array("i", data[:usable]))
    return fds


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class ControlServer:
    """Serves one listening socket; `serve()` returns when stopped or idle."""

    def __init__(
        self,
        listener: socket.socket,
        backend: Backend,
        *,
        max_monitors: int,
        watchdog_timeout_s: float,
        publish: bool = True,
    ) -> None:
        self.listener = listener
        self.monitors = Monitors(backend, max_monitors, publish=publish)
        self.table = self.monitors.table
        self.watchdog_timeout_s = watchdog_timeout_s
        self.render_adapter = "auto"
        self._conns: dict[int, _Conn] = {}
        self._conn_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._ops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pf-vdisplay-ops")
        self._stopping = threading.Event()

    # --- connection handling ---------------------------------------------------------------

    def serve(self, stop: threading.Event, idle_exit_s: float | None = None) -> str:
        """Accept and serve until `stop` is set (or, with `idle_exit_s`, until nothing has been
        connected and no monitor existed for that long); returns why it ended."""
        watchdog = threading.Thread(target=self._watchdog, name="pf-vdisplay-watchdog", daemon=True)
        watchdog.start()
        self.listener.settimeout(0.2)
        idle_since: float | None = None
        reason = "stopped"
        while not stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                sock = None
            except OSError:
                reason = "listener closed"
                break
            if sock is not None:
                self._start_conn(sock)
            if idle_exit_s is not None:
                with self._lock:
                    busy = any(c.open for c in self._conns.values())
                if busy or len(self.table):
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= idle_exit_s:
                    reason = "idle"
                    break
        self._shutdown()
        watchdog.join()
        return reason

    def _start_conn(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        conn = _Conn(next(self._conn_ids), sock)
        with self._lock:
            self._conns[conn.conn_id] = conn
        event(_log, "vdisplay.client_connected", conn=conn.conn_id)
        threading.Thread(
            target=self._serve_conn,
            args=(conn,),
            name=f"pf-vdisplay-conn-{conn.conn_id}",
            daemon=True,
        ).start()

    def _serve_conn(self, conn: _Conn) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    data, ancdata, flags, _ = conn.sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
                except OSError:
                    break
                fds = _take_fds(ancdata)
                if not data and not fds:
                    break
                if flags & socket.MSG_TRUNC:
                    _close_fds(fds)
                    reply = self._reject(data, f"message longer than {_RECV_SIZE - 1} bytes")
                else:
                    conn.busy = True
                    try:
                        reply = self._handle(conn, data, fds)
                    finally:
                        conn.busy = False
                        conn.last_ping = time.monotonic()
                try:
                    conn.sock.sendall(reply)
                except OSError:
                    break
        finally:
            conn.open = False
            conn.sock.close()
            event(
                _log,
                "vdisplay.client_disconnected",
                conn=conn.conn_id,
                monitors=len(self.table.ids(conn.conn_id)),
            )

    def _reject(self, data: bytes, reason: str, request_id: int = 0) -> bytes:
        op = int.from_bytes(data[4:6], "little") if len(data) >= 6 else 0
        event(
            _log,
            "vdisplay.bad_message",
            logging.WARNING,
            op=f"0x{op:x}",
            size=len(data),
            reason=reason,
        )
        return encode_raw_error(op, Status.BAD_REQUEST, reason, request_id=request_id)

    def _handle(self, conn: _Conn, data: bytes, fds: list[int]) -> bytes:
        try:
            header = control.decode_header(data)
        except ControlProtocolError as exc:
            _close_fds(fds)
            return self._reject(data, str(exc))
        rid = header.request_id
        body = data[control.HEADER_SIZE :]
        problem = None
        if header.flags & MsgFlags.REPLY:
            problem = "a reply was sent as a request"
        elif len(body) != header.body_len:
            problem = f"body is {len(body)} bytes, header says {header.body_len}"
        if problem is not None:
            _close_fds(fds)
            return self._reject(data, problem, rid)
        if header.op == OP_ATTACH_RING:
            return self._attach_op(body, fds, rid)
        _close_fds(fds)
        message = Message(header, body)
        try:
            op = message.op
            request = message.struct()
        except ControlProtocolError as exc:
            status = Status.UNKNOWN_OP if "unknown op" in str(exc) else Status.BAD_REQUEST
            event(
                _log,
                "vdisplay.bad_message",
                logging.WARNING,
                op=f"0x{header.op:x}",
                size=len(data),
                reason=str(exc),
            )
            return encode_raw_error(header.op, status, str(exc), request_id=rid)
        handlers: dict[Op, Callable[..., bytes]] = {
            Op.GET_INFO: self._get_info,
            Op.PING: self._ping,
            Op.ADD: self._add,
            Op.REMOVE: self._remove,
            Op.CLEAR_ALL: self._clear_all,
            Op.SET_RENDER_ADAPTER: self._set_render_adapter,
        }
        try:
            return handlers[op](conn, request, rid)
        except OpError as exc:
            event(_log, "vdisplay.refused", op=op.name, status=exc.status.name, reason=exc.reason)
            return control.encode_error(op, exc.status, exc.reason, request_id=rid)
        except Exception as exc:
            _log.exception("vdisplay.internal_error op=%s", op.name)
            return control.encode_error(
                op, Status.INTERNAL, f"{type(exc).__name__}: {exc}", request_id=rid
            )

    def _serialized(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run `fn` on the ops thread (ADD/REMOVE/ATTACH/teardown never overlap)."""
        return self._ops.submit(fn, *args).result()

    # --- operations ------------------------------------------------------------------------

    def _get_info(self, conn: _Conn, request: None, rid: int) -> bytes:
        backend = self.monitors.backend.name.value
        info = control.local_info(self.table.max_monitors, backend, __version__)
        return control.encode(Op.GET_INFO, info, request_id=rid, reply=True)

    def _ping(self, conn: _Conn, request: None, rid: int) -> bytes:
        conn.last_ping = time.monotonic()
        return control.encode(Op.PING, request_id=rid, reply=True)

    def _add(self, conn: _Conn, req: AddRequest, rid: int) -> bytes:
        reason = control.mode_error(req.width, req.height, req.refresh_hz)
        if reason is not None:
            raise OpError(Status.OUT_OF_BOUNDS, reason)
        mode = DisplayMode(req.width, req.height, req.refresh_hz)
        client_id = req.client_id.decode("utf-8", errors="replace")
        monitor = self._serialized(self.monitors.add, conn.conn_id, mode, bool(req.hdr), client_id)
        reply = AddReply(
            monitor_id=monitor.monitor_id,
            generation=monitor.generation,
            display_name=monitor.display_name.encode()[:31],
            edid_len=len(monitor.edid),
        )
        reply.edid[: len(monitor.edid)] = monitor.edid
        return control.encode(Op.ADD, reply, request_id=rid, reply=True)

    def _remove(self, conn: _Conn, req: RemoveRequest, rid: int) -> bytes:
        self._serialized(self.monitors.remove, req.monitor_id, req.generation)
        return control.encode(Op.REMOVE, request_id=rid, reply=True)

    def _clear_all(self, conn: _Conn, request: None, rid: int) -> bytes:
        self._serialized(self.monitors.destroy_all, "clear_all")
        return control.encode(Op.CLEAR_ALL, request_id=rid, reply=True)

    def _set_render_adapter(self, conn: _Conn, req: SetRenderAdapterRequest, rid: int) -> bytes:
        adapter = req.adapter.decode("utf-8", errors="replace")
        problem = adapter_problem(adapter)
        if problem is not None:
            raise OpError(Status.UNKNOWN_ADAPTER, problem)
        self.render_adapter = adapter
        event(_log, "vdisplay.render_adapter", adapter=adapter)
        return control.encode(Op.SET_RENDER_ADAPTER, request_id=rid, reply=True)

    def _attach_op(self, body: bytes, fds: list[int], rid: int) -> bytes:
        if len(body) != ctypes.sizeof(AttachRingRequest):
            _close_fds(fds)
            return encode_raw_error(
                OP_ATTACH_RING,
                Status.BAD_REQUEST,
                f"ATTACH_RING body is {len(body)} bytes",
                request_id=rid,
            )
        req = AttachRingRequest.from_buffer_copy(body)
        _close_fds(fds[1:])
        notify = fds[0] if fds else None
        name = req.ring_name.decode("utf-8", errors="replace")
        try:
            self._serialized(self.monitors.attach, req.monitor_id, req.generation, name, notify)
        except OpError as exc:
            if notify is not None:
                _close_fds([notify])
            event(
                _log,
                "vdisplay.refused",
                op="ATTACH_RING",
                status=exc.status.name,
                reason=exc.reason,
            )
            return encode_raw_error(OP_ATTACH_RING, exc.status, exc.reason, request_id=rid)
        return encode_raw(OP_ATTACH_RING, request_id=rid, reply=True)

    def _watchdog(self) -> None:
        tick = min(0.1, self.watchdog_timeout_s / 10)
        while not self._stopping.wait(tick):
            now = time.monotonic()
            with self._lock:
                conns = list(self._conns.values())
            for conn in conns:
                owned = self.table.ids(conn.conn_id)
                if owned and not conn.busy and now - conn.last_ping > self.watchdog_timeout_s:
                    event(
                        _log,
                        "vdisplay.watchdog",
                        logging.WARNING,
                        conn=conn.conn_id,
                        silent_ms=round((now - conn.last_ping) * 1000),
                        timeout_ms=round(self.watchdog_timeout_s * 1000),
                        connected=conn.open,
                        removing=",".join(map(str, owned)),
                    )
                    self._serialized(self.monitors.destroy_all, "watchdog", conn.conn_id)
                elif not owned and not conn.open:
                    with self._lock:
                        self._conns.pop(conn.conn_id, None)

    def _shutdown(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._serialized(self.monitors.destroy_all, "driver_stopped")
        self._ops.shutdown(wait=True)
