"""Run the driver process: take the state dir's lock, bind the control socket, serve.

One driver per state dir: an exclusive lock file makes a second one fail with a clear message
(the host then connects to the running one). SIGTERM and SIGINT remove every monitor and exit.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import threading
from pathlib import Path

from ... import leftovers
from ...config import HostConfig
from ...log import event
from .. import xauth
from .backends import BackendError, make_backend, resolve_backend
from .server import ControlServer

_log = logging.getLogger("punktfunk.vdisplay.driver")
SOCKET_NAME = "vdisplay.sock"
LOCK_NAME = "vdisplay.lock"
_SUN_PATH_MAX = 107


class DriverStartError(RuntimeError):
    """The driver cannot start (another one runs, bad socket path, unusable backend)."""


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def _take_lock(state_dir: Path) -> int:
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DriverStartError(
            f"a virtual display driver (pid {owner}) already serves {socket_path(state_dir)}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def bind_socket(path: Path) -> socket.socket:
    """Bind the control socket with mode 0600 (no window where it is more open)."""
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise DriverStartError(
            f"control socket path {path} is longer than {_SUN_PATH_MAX} bytes; use a shorter "
            "state_dir"
        )
    path.unlink(missing_ok=True)  # we hold the lock, so any socket here is a dead driver's
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def run_driver(
    config: HostConfig, *, exit_when_idle_s: float | None = None, publish: bool = True
) -> int:
    """Serve until SIGTERM/SIGINT (or idle, when asked); 0 on a clean exit, 1 if it can't run."""
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        # The X servers' cookies go where the host (same user, same state dir) looks.
        backend = make_backend(
            resolve_backend(config.display),
            xauth.use_state_dir(config.state_dir),
            config.state_dir,
            config.max_monitors,
        )
        lock_fd = _take_lock(config.state_dir)
    except (BackendError, DriverStartError, OSError, ValueError) as exc:
        event(_log, "vdisplay.driver_not_started", logging.ERROR, reason=str(exc))
        return 1
    path = socket_path(config.state_dir)
    try:
        listener = bind_socket(path)
    except (DriverStartError, OSError) as exc:
        os.close(lock_fd)
        event(_log, "vdisplay.driver_not_started", logging.ERROR, reason=str(exc))
        return 1
    leftovers.sweep(config.state_dir, "driver")  # what a killed host and driver left
    stop = threading.Event()
    handlers = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    server = ControlServer(
        listener,
        backend,
        max_monitors=config.max_monitors,
        watchdog_timeout_s=config.watchdog_timeout_ms / 1000,
        publish=publish,
    )
    event(
        _log,
        "vdisplay.driver_started",
        pid=os.getpid(),
        socket=path,
        backend=backend.name.value,
        max_monitors=config.max_monitors,
        watchdog_timeout_ms=config.watchdog_timeout_ms,
        publish=publish,
        exit_when_idle_s=exit_when_idle_s if exit_when_idle_s is not None else "never",
    )
    try:
        reason = server.serve(stop, exit_when_idle_s)
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        os.close(lock_fd)
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    event(_log, "vdisplay.driver_stopped", reason=reason)
    return 0
