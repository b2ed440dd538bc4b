"""The host's local admin socket (`<state_dir>/admin.sock`, mode 0600): how `punktfunk pair`
and other local tools talk to the running host. One request line, one reply line.

  pair <PIN>   hand a client's PIN to the host      -> "ok ..." | "error ..."
  status       the running sessions as JSON          -> "ok {...}"
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from ..log import event

_log = logging.getLogger("punktfunk.service.admin")

SOCKET_NAME = "admin.sock"
MAX_LINE = 4096


class AdminError(Exception):
    """The admin socket could not be reached or answered with an error."""


class AdminServer:
    def __init__(self, state_dir: Path, commands: dict[str, Callable[[str], str]]) -> None:
        self.path = state_dir / SOCKET_NAME
        self._commands = commands
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists():
            if _alive(self.path):
                raise AdminError(
                    f"another host is already running (its socket {self.path} answers)"
                )
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._sock.listen(8)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.path.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.recv(MAX_LINE).decode("utf-8", errors="replace").strip()
                    conn.sendall((self._answer(line) + "\n").encode())
                except OSError:
                    continue

    def _answer(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        handler = self._commands.get(verb)
        if handler is None:
            return f"error unknown command {verb!r}; known: {', '.join(sorted(self._commands))}"
        try:
            return "ok " + handler(arg.strip())
        except ValueError as exc:
            return f"error {exc}"
        except Exception as exc:  # a bug in one command must not take the admin socket down
            event(_log, "admin.command_failed", logging.ERROR, command=verb, reason=repr(exc))
            return f"error internal: {exc!r}"


def _alive(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def request(state_dir: Path, line: str, timeout: float = 5.0) -> str:
    """Send one command to the running host; AdminError if none runs or it says error."""
    path = state_dir / SOCKET_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall((line + "\n").encode())
        reply = sock.recv(MAX_LINE).decode("utf-8", errors="replace").strip()
    except (FileNotFoundError, ConnectionRefusedError):
        raise AdminError(
            f"no running host answers at {path} (start one with `punktfunk serve`)"
        ) from None
    except OSError as exc:
        raise AdminError(f"cannot talk to the host at {path}: {exc}") from None
    finally:
        sock.close()
    status, _, rest = reply.partition(" ")
    if status != "ok":
        raise AdminError(rest or "the host gave no answer")
    return rest


def status_json(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))
