"""Helpers for the vdisplay/capture tests: real driver processes, real X servers, leak probes.

(No tests here; the test modules import these.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from punktfunk.config import HostConfig, load_config
from punktfunk.vdisplay.base import DisplayBackend, available_backends
from punktfunk.vdisplay.client import DriverConnection
from punktfunk.vdisplay.driver.main import socket_path
from punktfunk.vdisplay.ring import FrameRing

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"


def require_backend(backend: DisplayBackend) -> None:
    """Skip (saying what to install) when this machine lacks the backend's X server."""
    if backend not in available_backends():
        package = {
            DisplayBackend.XVFB: "xvfb",
            DisplayBackend.XORG_DUMMY: "xserver-xorg-video-dummy",
            DisplayBackend.WLROOTS: "sway",
        }[backend]
        missing_part(f"display={backend} is not installed here (apt-get install {package})")


def missing_part(message: str) -> NoReturn:
    """A real part this test needs is not installed: skip on a developer's machine, fail in
    CI, which must run every test (scripts/setup.sh installs every part)."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must run this test (scripts/setup.sh installs it)")
    pytest.skip(message)


def short_dir() -> Path:
    """A state dir with a short path (a Unix socket path must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pf-t-", dir="/tmp"))
    (path / "host.env").write_text("")
    return path


def host_config(state: Path, backend: DisplayBackend | str, **knobs: object) -> HostConfig:
    flags = {"state_dir": str(state), "display": str(backend)}
    flags.update({k: str(v) for k, v in knobs.items()})
    return load_config(flags=flags, environ={}, config_path=state / "host.env").config


def clean_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    env["PUNKTFUNK_CONFIG"] = str(state / "host.env")
    return env


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def mapped_rings(pid: int | str = "self") -> list[str]:
    """Ring files a process still has mapped or open."""
    found = [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "pfvd-" in line]
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if "/dev/shm/pfvd-" in os.readlink(fd):
                found.append(str(fd))
        except OSError:
            continue
    return found


@pytest.fixture
def created_rings(monkeypatch) -> list[str]:
    """Names of the rings this test's host side creates (other processes on the machine may
    have rings of their own in /dev/shm, so leak checks look at exactly these)."""
    names: list[str] = []
    original = FrameRing.create.__func__  # type: ignore[attr-defined]

    def create(cls, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        ring = original(cls, name, *args, **kwargs)
        names.append(name)
        return ring

    monkeypatch.setattr(FrameRing, "create", classmethod(create))
    return names


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def x_servers_of(pid: int) -> list[int]:
    """X servers a driver process started (their work dirs carry the driver's pid)."""
    found = []
    marks = (f"punktfunk-xvfb-{pid}-", f"punktfunk-xorg-{pid}-")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):
            found.append(int(proc.name))
    return found


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Driver:
    """A `punktfunk vdisplay` process on its own state dir."""

    def __init__(
        self,
        backend: DisplayBackend,
        *args: str,
        state: Path | None = None,
        watchdog_ms: int = 5000,
        max_monitors: int = 8,
    ) -> None:
        self.backend = backend
        self.state = state or short_dir()
        self.stderr_path = self.state / "driver.stderr"
        argv = [
            str(PUNKTFUNK),
            "vdisplay",
            "--display",
            str(backend),
            "--state-dir",
            str(self.state),
            "--watchdog-timeout-ms",
            str(watchdog_ms),
            "--max-monitors",
            str(max_monitors),
            "--log-level",
            "debug",
            *args,
        ]
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=clean_env(self.state),
            )
        self.socket = socket_path(self.state)
        if not wait_until(self._listening, 30):
            self.kill()
            raise AssertionError(f"driver did not start: {self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"driver exited {self.proc.returncode}: {self.log()}")
        try:
            DriverConnection(self.socket, timeout=5).close()
        except OSError:
            return False
        return True

    def config(self, **knobs: object) -> HostConfig:
        knobs.setdefault("watchdog_timeout_ms", 5000)
        return host_config(self.state, self.backend, **knobs)

    def connect(self) -> DriverConnection:
        return DriverConnection(self.socket, timeout=30)

    def log(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def x_servers(self) -> list[int]:
        return x_servers_of(self.pid)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def make_driver() -> Iterator[Callable[..., Driver]]:
    """Start drivers on demand; every one is stopped (SIGTERM) and checked at teardown."""
    started: list[Driver] = []

    def make(backend: DisplayBackend = DisplayBackend.PATTERN, *args: str, **kw: object) -> Driver:
        if backend is not DisplayBackend.PATTERN:
            require_backend(backend)
        driver = Driver(backend, *args, **kw)  # type: ignore[arg-type]
        started.append(driver)
        return driver

    yield make
    for driver in reversed(started):
        pid = driver.pid
        rc = driver.stop()
        driver.cleanup()
        assert rc in (0, -signal.SIGKILL), f"driver exited {rc}: {driver.log()[-2000:]}"
        assert wait_until(lambda p=pid: not x_servers_of(p), 10), "X servers outlived the driver"
