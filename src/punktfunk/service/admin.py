"""The host's local admin socket (`<state_dir>/admin.sock`, mode 0600): how `punktfunk pair`
and other local tools talk to the running host. One request line, one reply line.

  pair <PIN>   hand a client's PIN to the host      -> "ok ..." | "error ..."
  status       the running sessions as JSON          -> "ok {...}"
  testlimit KBPS [queue MS]|off   (only with `test_send_limit`) the simulated bottleneck on
               every session's video send path: a policer, or a link of KBPS behind a FIFO of
               up to MS of backlog                  -> "ok limit ... dropped N"
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
from ..session.sendlimit import SendLimiter
from ..supervise import supervised_thread

_log = logging.getLogger("punktfunk.service.admin")

SOCKET_NAME = "admin.sock"
MAX_LINE = 4096
MAX_REPLY = 64 << 20


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
        self._thread = supervised_thread("admin", self._loop, self._stop)

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
            except OSError as exc:
                if self._stop.is_set():
                    return
                # Out of descriptors, say: keep the socket and try again shortly.
                event(_log, "admin.accept_failed", logging.WARNING, reason=exc)
                self._stop.wait(0.1)
                continue
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
        # The reply ends where the host closes: a status with many sessions is far longer
        # than one read.
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_REPLY:
                raise AdminError(f"the host's reply is over {MAX_REPLY} bytes")
        reply = b"".join(chunks).decode("utf-8", errors="replace").strip()
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


def testlimit_command(limiter: SendLimiter) -> Callable[[str], str]:
    """The `testlimit` verb: set or lift the test-only send-path bottleneck."""

    def testlimit(arg: str) -> str:
        words = arg.split()
        if words == ["off"]:
            limiter.set(None)
        else:
            shape = len(words) == 1 or (len(words) == 3 and words[1] == "queue")
            numbers = [*words[:1], *words[2:]]
            if not shape or not all(w.isdigit() and 0 < int(w) <= 10_000_000 for w in numbers):
                raise ValueError("usage: testlimit KBPS [queue MS]|off (KBPS, MS 1..10000000)")
            limiter.set(int(words[0]), int(words[2]) / 1000 if len(words) == 3 else None)
        queue_ms = round(limiter.queue_s * 1000) if limiter.queue_s else None
        event(_log, "admin.testlimit", logging.WARNING, kbps=limiter.kbps or "off",
              queue_ms=queue_ms or "none", dropped=limiter.dropped)  # fmt: skip
        queue = f" queue {queue_ms} ms" if queue_ms else ""
        return f"limit {limiter.kbps or 'off'}{queue} dropped {limiter.dropped}"

    return testlimit


def status_json(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))
