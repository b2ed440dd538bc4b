"""Start and stop private X servers (Xvfb, Xorg with the dummy driver) on free display numbers.

A display number is free when neither its socket (/tmp/.X11-unix/X<n>) nor its lock file
(/tmp/.X<n>-lock) exists (a socket of ours that nothing listens on is a killed server's, and
is removed: with -displayfd the server writes no lock); the search starts at a high base so a
user's own desktop (:0, :1) never collides with ours, and a number another process grabbed
first is simply skipped. The
server reports readiness through `-displayfd`. Each server gets PR_SET_PDEATHSIG, so it dies
with the thread that started it even when our process is SIGKILLed. Each server also gets a
fresh auth cookie (`-auth`, see `xauth`): no other local user can open its display.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..ownfiles import owned, pid_alive
from . import xauth

DISPLAY_BASE = 40
_WORKDIR = re.compile(r"^punktfunk-(?:xvfb|xorg)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_SOCKET_DIR = Path("/tmp/.X11-unix")
_STALE_AFTER_S = 10.0  # a socket this old that refuses connections is a dead server's
_MANAGER_VARS = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)


class XServerError(RuntimeError):
    """An X server could not be started; the message carries the server's own reason."""


def die_with_parent() -> None:
    """A preexec_fn: SIGTERM when the forking thread ends (the driver's long-lived ops thread,
    so also when the driver is killed)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _server_env() -> dict[str, str]:
    """Our environment less systemd's notification variables: Xorg and Xvfb say READY=1 to a
    $NOTIFY_SOCKET they inherit, which would speak for the service (or the doctor) before it
    is ready."""
    return {k: v for k, v in os.environ.items() if k not in _MANAGER_VARS}


def display_in_use(number: int) -> bool:
    """Whether display `number` is taken; a dead socket of ours (a killed server's) is removed
    and does not count."""
    if Path(f"/tmp/.X{number}-lock").exists():
        return True
    socket_path = _SOCKET_DIR / f"X{number}"
    if remove_dead_socket(socket_path, _STALE_AFTER_S):
        return False
    return socket_path.exists()


def remove_dead_socket(path: Path, older_than_s: float = 0.0) -> bool:
    """Remove `path` if it is a socket of ours that nothing listens on (at least `older_than_s`
    old, so a server between bind and listen is left alone). With -displayfd an X server
    writes no lock file, so a killed one leaves only its socket: the number would stay taken.
    True when removed."""
    try:
        info = path.lstat()
    except OSError:
        return False
    if (
        not stat.S_ISSOCK(info.st_mode)
        or info.st_uid != os.geteuid()
        or time.time() - info.st_mtime < older_than_s
    ):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def free_display_numbers(base: int = DISPLAY_BASE, limit: int = 200) -> list[int]:
    return [n for n in range(base, base + limit) if not display_in_use(n)]


@dataclass
class XServer:
    """A running X server we started; `stop()` ends it and removes its private files."""

    kind: str
    number: int
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    auth_path: Path

    @property
    def display(self) -> str:
        return f":{self.number}"

    def log_tail(self, lines: int = 12) -> str:
        return self.read_tail(self.log_path, lines)

    @staticmethod
    def read_tail(path: Path, lines: int = 12) -> str:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A killed server leaves its socket (and lock, where it wrote one); ours to remove.
        lock = Path(f"/tmp/.X{self.number}-lock")
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == str(self.process.pid):
                lock.unlink(missing_ok=True)
        remove_dead_socket(_SOCKET_DIR / f"X{self.number}")
        xauth.remove_file(self.number, self.auth_path)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_ready(read_fd: int, timeout: float) -> int | None:
    """The display number the server wrote to -displayfd; None if it exited or timed out
    (the pipe reaches EOF when the server exits, since we hold no write end)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([read_fd], [], [], remaining)[0]:
            break
        chunk = os.read(read_fd, 64)
        if not chunk:
            return None
        buf += chunk
        if buf.endswith(b"\n"):
            return int(buf)
    return None


def start_server(
    kind: str,
    argv_for: Callable[[int], list[str]],
    workdir: Path,
    *,
    log_path: Path | None = None,
    base: int = DISPLAY_BASE,
    timeout: float = 20.0,
    attempts: int = 5,
    auth_dir: Path | None = None,
) -> XServer:
    """Start `argv_for(display_number)` on the first free number; retry when another process
    took that number in the meantime. Raises XServerError with the server's log tail.

    The server's stderr goes to `workdir/server.log`; `log_path` names a log it writes itself
    (Xorg's -logfile), which `XServer.log_tail()` then reads. The auth cookie goes to
    `auth_dir`/X<n> (the driver: <state_dir>/xauth), else into the work dir."""
    stderr_path = workdir / "server.log"
    reason = "no free display number"
    auth_dir = auth_dir or workdir
    for number in free_display_numbers(base)[:attempts]:
        auth_path = xauth.create_file(auth_dir, number)
        read_fd, write_fd = os.pipe()
        try:
            with open(stderr_path, "ab") as log:
                proc = subprocess.Popen(
                    [*argv_for(number), "-auth", str(auth_path), "-displayfd", str(write_fd)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=(write_fd,),
                    preexec_fn=die_with_parent,
                    cwd=workdir,
                    env=_server_env(),
                )
            os.close(write_fd)
            write_fd = -1
            ready = _wait_ready(read_fd, timeout)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        server = XServer(kind, number, proc, workdir, log_path or stderr_path, auth_path)
        if ready == number:
            return server
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        xauth.remove_file(number, auth_path)
        tail = "\n".join(
            text for text in (server.log_tail(), XServer.read_tail(stderr_path)) if text
        )
        reason = tail or f"{kind} exited with status {proc.returncode}"
        if "already active" not in tail and "server already running" not in tail.lower():
            break
    shutil.rmtree(workdir, ignore_errors=True)
    raise XServerError(f"{kind} did not start: {reason}")


def make_workdir(kind: str, root: Path | None = None) -> Path:
    """A private directory (0700, random name) for a server's config, log, auth and
    framebuffer file.

    Named after our pid so the next start can remove what a killed driver left
    (`stale_workdirs`, `punktfunk.leftovers`).
    """
    return Path(tempfile.mkdtemp(prefix=f"punktfunk-{kind}-{os.getpid()}-", dir=root))


def stale_workdirs(root: Path) -> list[Path]:
    """Work directories of ours (by name, owner and type) whose driver process is gone."""
    stale = []
    for path in root.glob("punktfunk-*-*-*"):
        match = _WORKDIR.match(path.name)
        if match is None:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not pid_alive(pid) and owned(path, stat.S_IFDIR):
            stale.append(path)
    return stale
