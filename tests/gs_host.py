"""A `punktfunk serve --gamestream` host process and the Moonlight driver, for end-to-end tests.

The host runs as its own process on a private state dir and base port; each client run is a
process of its own (moonlight-common-c is a process singleton).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from punktfunk.service.admin import request

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "moonlight_driver.py"
PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
# Away from a real host's ports and below Linux's ephemeral range (32768-60999), so an
# outgoing connection's local port can never take a port a test host is about to listen on;
# PF_TEST_GS_BASE_PORT lets two checkouts test side by side.
BASE_PORT = int(os.environ.get("PF_TEST_GS_BASE_PORT", 27989))
# Every port a GameStream host listens on, derived from the base as the host does.
TCP_PORTS = (BASE_PORT, BASE_PORT - 5, BASE_PORT + 21)
UDP_PORTS = (BASE_PORT + 9, BASE_PORT + 10, BASE_PORT + 11)


def ports_free() -> list[str]:
    """The host's ports that something still holds (empty when the host let go of all)."""
    held = []
    for kind, ports in ((socket.SOCK_STREAM, TCP_PORTS), (socket.SOCK_DGRAM, UDP_PORTS)):
        for port in ports:
            with socket.socket(socket.AF_INET, kind) as sock:
                # As a restarted host binds: TIME_WAIT remnants of closed connections are fine.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    held.append(f"{'tcp' if kind == socket.SOCK_STREAM else 'udp'}/{port}")
    return held


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of `pid` (X servers, the display driver, audio), by pid."""
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children: list[str] = []
        # A child belongs to the thread that spawned it: read every thread's list.
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children += (task / "children").read_text().split()
            except OSError:
                continue
        for child in map(int, children):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            found[child] = cmdline.replace(b"\0", b" ").decode().strip()
            frontier.append(child)
    return found


def still_alive(pids: dict[int, str]) -> list[str]:
    """Those of `pids` that still run (zombies count as gone)."""
    alive = []
    for pid, cmdline in pids.items():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(cmdline)
    return alive


class Host:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.state = tmp / "state"
        self.log = tmp / "host.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        env.update(PUNKTFUNK_STATE_DIR=str(self.state), PUNKTFUNK_CONFIG=str(tmp / "none.env"))
        (tmp / "none.env").write_text("")
        self.proc = subprocess.Popen(
            [
                str(PUNKTFUNK),
                "serve",
                "--gamestream",
                "--no-mdns",
                "--gamestream-port",
                str(BASE_PORT),
                "--bind-address",
                "127.0.0.1",
                "--monitor-linger-ms",
                "0",
                *extra,
            ],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Until this host says it listens (not merely until something answers on its port:
        that may be another host on its way out), or why it never will."""
        deadline = time.monotonic() + timeout
        while "host.ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the host exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the host is not ready after {timeout} s: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def status(self) -> dict:
        """The host's status, read whole (a few sessions' status is longer than one read)."""
        return json.loads(request(self.state, "status"))

    def wait_no_sessions(self, timeout: float = 15.0) -> list:
        deadline = time.monotonic() + timeout
        while (sessions := self.status()["sessions"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        return sessions

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def driver_command(tmp: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        str(DRIVER),
        "--port",
        str(BASE_PORT),
        "--config-dir",
        str(tmp / "client"),
        *args,
    ]


def drive(tmp: Path, *args: str, timeout: float = 120) -> dict:
    out = subprocess.run(
        driver_command(tmp, *args), capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        host_log = tmp / "host.log"  # where `Host` writes, when the host is the test's own
        tail = host_log.read_text(errors="replace")[-4000:] if host_log.exists() else ""
        raise AssertionError(f"{out.stderr[-3000:]}\n--- host log (tail) ---\n{tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_drive(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        driver_command(tmp, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_drive(proc: subprocess.Popen[str], timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])
