"""Reconnect storms and the host-gone watchdog: nothing may be left behind."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import VirtualDisplayManager
from test_vdisplay_support import (
    clean_env,
    created_rings,
    make_driver,
    mapped_rings,
    open_fds,
    require_backend,
    wait_until,
)

__all__ = ["created_rings", "make_driver"]


def _sysv_segments(*pids: int) -> int:
    """MIT-SHM (SysV) segments created by these processes that still exist."""
    creators = {str(pid) for pid in pids}
    with open("/proc/sysvipc/shm") as f:
        return sum(1 for line in f if line.split()[4:5] and line.split()[4] in creators)


def _fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _storm(
    driver, backend: DisplayBackend, cycles: int, mode: DisplayMode, rings: list[str]
) -> None:
    """`cycles` rounds of ADD -> lease -> capture -> close -> REMOVE with 1..3 leases at once."""
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=0), backend)
    fmt = OutputFormat(gpu=False, hdr=False)
    try:
        # Warm up once, so lazily opened library state is not counted as a leak.
        with manager.acquire(MonitorRequest(mode, False, "warmup")) as lease:
            open_capture(lease, fmt, CaptureBackend.IDD_PUSH).close()
        gc.collect()
        fds = open_fds()
        sysv = _sysv_segments(os.getpid(), driver.pid)
        driver_fds = _fds_of(driver.pid)
        highest, concurrency = -1, 0
        for cycle in range(cycles):
            width = 1 + cycle % 3
            leases = [
                manager.acquire(MonitorRequest(mode, False, f"client-{cycle}-{i}"))
                for i in range(width)
            ]
            concurrency = max(concurrency, width)
            highest = max(highest, *(lease.output.monitor_id for lease in leases))
            capturer = open_capture(leases[cycle % width], fmt, CaptureBackend.IDD_PUSH)
            frame = capturer.next_frame(5)
            assert frame is not None and (frame.width, frame.height) == (mode.width, mode.height)
            capturer.close()
            for lease in leases:
                lease.close()
            assert not manager.monitors()
        assert highest < concurrency, f"id {highest} with at most {concurrency} monitors"
        gc.collect()
        assert open_fds() == fds, "file descriptors leaked"
        assert len(rings) > cycles, "every cycle creates a ring"
        assert [r for r in rings if os.path.exists(f"/dev/shm/{r}")] == [], "rings leaked"
        assert mapped_rings() == [] and mapped_rings(driver.pid) == [], "rings still mapped"
        assert _sysv_segments(os.getpid(), driver.pid) == sysv, "MIT-SHM segments leaked"
        assert _fds_of(driver.pid) == driver_fds, "the driver leaked file descriptors"
    finally:
        manager.close()
    with driver.connect() as conn:  # the driver holds nothing: the lowest id is free again
        reply = conn.add(MonitorRequest(mode, False, "after"))
        assert reply.monitor_id == 0
        conn.clear_all()
    assert not driver.x_servers()


def test_reconnect_storm_200_cycles_pattern(make_driver, created_rings) -> None:
    driver = make_driver()
    _storm(driver, DisplayBackend.PATTERN, 200, DisplayMode(640, 480, 60), created_rings)
    log = driver.log()
    assert log.count("vdisplay.monitor_added") == log.count("vdisplay.monitor_removed")


@pytest.mark.parametrize("backend", [DisplayBackend.XVFB, DisplayBackend.XORG_DUMMY])
def test_reconnect_storm_with_real_x_servers(
    make_driver, created_rings, backend: DisplayBackend
) -> None:
    driver = make_driver(backend)
    _storm(driver, backend, 12, DisplayMode(1280, 720, 60), created_rings)
    assert wait_until(lambda: not driver.x_servers(), 10)


_HOST = """
import sys, time
from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.config import load_config
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import VirtualDisplayManager
state, backend = sys.argv[1], DisplayBackend(sys.argv[2])
from pathlib import Path
config = load_config(flags={"state_dir": state, "display": backend.value,
                            "watchdog_timeout_ms": "1500"}, environ={},
                     config_path=Path(state) / "host.env").config
manager = VirtualDisplayManager(config, backend)
leases = [manager.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, f"c{i}"))
          for i in range(2)]
capturer = open_capture(leases[0], OutputFormat(False, False), CaptureBackend.IDD_PUSH)
assert capturer.next_frame(5) is not None
print(capturer._ring.name, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("backend", [DisplayBackend.PATTERN, DisplayBackend.XVFB])
def test_sigkilled_host_monitors_are_removed_within_timeout_plus_one_second(
    make_driver, backend: DisplayBackend
) -> None:
    if backend is not DisplayBackend.PATTERN:
        require_backend(backend)
    timeout_s = 1.5
    driver = make_driver(backend, watchdog_ms=int(timeout_s * 1000))
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST, str(driver.state), backend.value],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(driver.state),
    )
    try:
        ring = host.stdout.readline().strip()
        assert ring.startswith("pfvd-"), driver.log()[-2000:]
        servers = driver.x_servers()
        assert len(servers) == (2 if backend is DisplayBackend.XVFB else 0)
        killed = time.time()
        host.send_signal(signal.SIGKILL)
        host.wait()

        def gone() -> bool:
            return (
                driver.log().count("reason=watchdog") == 2
                and not os.path.exists(f"/dev/shm/{ring}")
                and not driver.x_servers()
            )

        # Observe with slack; judge by when the driver itself logged each removal (the X
        # servers and the ring go before that line is written).
        assert wait_until(gone, timeout_s + 10, 0.01), driver.log()[-3000:]
        removed = [
            datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for line in driver.log().splitlines()
            if "vdisplay.monitor_removed" in line and "reason=watchdog" in line
        ]
        assert len(removed) == 2
        late = [round(t - killed, 3) for t in removed if t - killed > timeout_s + 1.0]
        assert not late, f"removed {late} s after the kill; timeout {timeout_s} s"
        assert "vdisplay.watchdog" in driver.log()
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
    with driver.connect() as conn:
        assert conn.add(MonitorRequest(DisplayMode(1280, 720, 60), False, "next")).monitor_id == 0
        conn.clear_all()
