"""The systemd notification protocol (sd_notify), both ends, without libsystemd.

A service tells its manager `READY=1`, `WATCHDOG=1`, `STATUS=...`, `STOPPING=1` as one datagram
to the Unix socket named by `$NOTIFY_SOCKET` (a leading `@` names an abstract socket). `serve`
sends these whenever that variable is set, so it works directly under systemd and under
`punktfunk service run`, which gives its child a private socket (`NotifyListener`) and relays
readiness and keepalives to systemd itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import tempfile
from pathlib import Path

ENV_SOCKET = "NOTIFY_SOCKET"
MAX_DATAGRAM = 4096
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _address(name: str) -> str:
    return "\0" + name[1:] if name.startswith("@") else name


def notify(state: str, socket_name: str | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to the manager; False when there is none or it is gone."""
    name = socket_name if socket_name is not None else os.environ.get(ENV_SOCKET, "")
    if not name or not (name.startswith("/") or name.startswith("@")):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            # Never wait: a manager that does not read (its queue is full) costs a dropped
            # keepalive, not a stalled host.
            sock.sendto(state.encode(), socket.MSG_DONTWAIT, _address(name))
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 keepalives (half systemd's timeout), or None when not asked.

    systemd sets WATCHDOG_USEC, and WATCHDOG_PID to the process it watches: a child that merely
    inherited the variables must not answer for its parent."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def parse(datagram: bytes) -> dict[str, str]:
    """`KEY=VALUE` lines as a dict; lines without `=` are ignored as systemd does."""
    fields: dict[str, str] = {}
    for line in datagram.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class NotifyListener:
    """A private notification socket for the supervised child: in a fresh 0700 directory, so
    only this user can send to it. Each message carries its sender's pid (SO_PASSCRED, filled
    in by the kernel), so a late message of a child that is gone is never taken for its
    successor's. `receive()` never blocks."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="punktfunk-notify-"))
        self.path = self._dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def receive(self) -> list[tuple[int, dict[str, str]]]:
        """(sender pid, fields) for every pending message; pid 0 when the kernel gave none."""
        messages = []
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return messages
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack_from(payload)[0]
            messages.append((pid, parse(data)))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self._dir)
