"""The host's connection to the driver process: start it if needed, handshake, request/reply.

`connect_driver()` connects to the driver serving the state dir, or starts `punktfunk vdisplay`
(detached into its own session, so it outlives a killed host and its watchdog can clean up),
then asserts the GET_INFO handshake: another protocol/ABI version, or another display backend
than the host resolved, is refused with a message that says what to do.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..config import HostConfig
from ..log import event
from ..proto import control
from ..proto.control import (
    AddReply,
    AddRequest,
    DriverMismatchError,
    GetInfoReply,
    Op,
    RemoveRequest,
    SetRenderAdapterRequest,
    Status,
)
from .base import DisplayBackend, MonitorRequest
from .driver.main import socket_path
from .ext import OP_ATTACH_RING, AttachRingRequest, encode_raw

_log = logging.getLogger("punktfunk.vdisplay")
_REPLY_SIZE = control.HEADER_SIZE + control.MAX_BODY
IDLE_EXIT_S = 1.0  # a driver the host started exits this long after its last client left


class DriverError(RuntimeError):
    """The driver refused a request (status + its reason) or cannot be reached."""

    def __init__(self, reason: str, status: Status | None = None) -> None:
        super().__init__(reason)
        self.status = status


class DriverConnection:
    """One control connection; requests are serialized, each waits for its own reply."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError:
            self._sock.close()
            raise
        self._lock = threading.Lock()
        self._next_id = 1
        self.closed = False

    def request(self, op: int, body: bytes = b"", fds: Sequence[int] = ()) -> bytes:
        """Send one request and return the reply body; DriverError on an error reply."""
        with self._lock:
            if self.closed:
                raise DriverError(f"the connection to the driver at {self.path} is closed")
            rid = self._next_id
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
            data = encode_raw(op, body, request_id=rid)
            try:
                if fds:
                    socket.send_fds(self._sock, [data], list(fds))
                else:
                    self._sock.sendall(data)
                reply = self._sock.recv(_REPLY_SIZE)
            except OSError as exc:
                self._fail()
                raise DriverError(f"driver at {self.path}: {exc}") from None
        if not reply:
            self._fail()
            raise DriverError(f"the driver at {self.path} closed the connection")
        header = control.decode_header(reply)
        payload = reply[control.HEADER_SIZE :]
        if header.request_id != rid or header.op != op:
            self._fail()
            raise DriverError(f"driver reply out of order (op 0x{header.op:x}, id {rid})")
        if header.status != Status.OK:
            reason = control.ErrorReply.from_buffer_copy(payload.ljust(240, b"\0")).reason
            raise DriverError(reason.decode(errors="replace"), Status(header.status))
        return payload

    def _fail(self) -> None:
        self.closed = True
        self._sock.close()

    def get_info(self) -> GetInfoReply:
        body = self.request(Op.GET_INFO)
        if len(body) != ctypes.sizeof(GetInfoReply):
            raise DriverMismatchError(
                f"the driver at {self.path} sent a {len(body)}-byte GET_INFO reply; this host "
                f"expects {ctypes.sizeof(GetInfoReply)} (a different driver version?)"
            )
        return GetInfoReply.from_buffer_copy(body)

    def ping(self) -> None:
        self.request(Op.PING)

    def add(self, request: MonitorRequest) -> AddReply:
        mode = request.mode
        body = AddRequest(
            mode.width,
            mode.height,
            mode.refresh_hz,
            int(request.hdr),
            request.client_id.encode()[:63],
        )
        return AddReply.from_buffer_copy(self.request(Op.ADD, bytes(body)))

    def remove(self, monitor_id: int, generation: int) -> None:
        self.request(Op.REMOVE, bytes(RemoveRequest(monitor_id, generation)))

    def clear_all(self) -> None:
        self.request(Op.CLEAR_ALL)

    def set_render_adapter(self, adapter: str) -> None:
        self.request(Op.SET_RENDER_ADAPTER, bytes(SetRenderAdapterRequest(adapter.encode())))

    def attach_ring(
        self, monitor_id: int, generation: int, ring_name: str, notify_fd: int | None
    ) -> None:
        body = bytes(AttachRingRequest(monitor_id, generation, ring_name.encode()))
        self.request(OP_ATTACH_RING, body, () if notify_fd is None else (notify_fd,))

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._sock.close()

    def __enter__(self) -> DriverConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _spawn(config: HostConfig, backend: DisplayBackend) -> subprocess.Popen[bytes]:
    logs = config.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "punktfunk.cli",
        "vdisplay",
        "--display",
        backend.value,
        "--state-dir",
        str(config.state_dir),
        "--max-monitors",
        str(config.max_monitors),
        "--watchdog-timeout-ms",
        str(config.watchdog_timeout_ms),
        "--log-level",
        config.log_level,
        "--exit-when-idle",
        str(IDLE_EXIT_S),
    ]
    with open(logs / "vdisplay-driver.stderr", "ab") as err:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
        )


def _stderr_tail(config: HostConfig) -> str:
    try:
        lines = (config.state_dir / "logs" / "vdisplay-driver.stderr").read_text().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-3:])


def connect_driver(
    config: HostConfig, backend: DisplayBackend, *, start_timeout: float = 20.0
) -> tuple[DriverConnection, GetInfoReply, subprocess.Popen[bytes] | None]:
    """Connect to (or start) the driver and assert the handshake.

    Returns the connection, the driver's GET_INFO and the process if this call started it.
    """
    path = socket_path(config.state_dir)
    started: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            conn = DriverConnection(path)
            break
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if started is None:
                started = _spawn(config, backend)
                event(
                    _log,
                    "vdisplay.driver_starting",
                    pid=started.pid,
                    backend=backend.value,
                    socket=path,
                    reason=f"none running ({exc.strerror})",
                )
            elif started.poll() is not None and started.returncode != 0:
                tail = _stderr_tail(config)
                # Lost a start race: another host's driver took the lock and will listen soon.
                if "already serves" not in tail:
                    raise DriverError(
                        f"the virtual display driver exited with status {started.returncode}: "
                        f"{tail or 'see ' + str(config.state_dir / 'logs')}"
                    ) from None
            if time.monotonic() > deadline:
                raise DriverError(
                    f"the virtual display driver did not open {path} in {start_timeout:.0f} s: "
                    f"{_stderr_tail(config) or 'no output'}"
                ) from None
            time.sleep(0.05)
    try:
        info = conn.get_info()
        control.check_driver_info(info)
        running = info.backend.decode(errors="replace")
        if running != backend.value:
            raise DriverMismatchError(
                f"the virtual display driver at {path} runs display={running}, but this host "
                f"wants display={backend.value}; stop that driver or use display={running}"
            )
    except BaseException:
        conn.close()
        raise
    event(
        _log,
        "vdisplay.driver_connected",
        socket=path,
        backend=running,
        driver_version=info.driver_version.decode(errors="replace"),
        protocol=info.protocol_version,
        abi=info.abi_version,
        max_monitors=info.max_monitors,
        started=started is not None,
    )
    return conn, info, started


def reap(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Wait for a driver this host started to exit on its own (it does once idle)."""
    if process is None:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        event(_log, "vdisplay.driver_kept", pid=process.pid, reason="other clients still use it")
