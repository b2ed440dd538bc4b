"""VirtualDisplayManager + MonitorLease: driver start/handshake, refcount, linger, stale leases."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.vdisplay import open_display
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest, VirtualDisplay
from punktfunk.vdisplay.client import DriverError
from punktfunk.vdisplay.driver.main import socket_path
from punktfunk.vdisplay.manager import MonitorState, VirtualDisplayManager
from test_vdisplay_support import host_config, make_driver, state_dir, wait_until

__all__ = ["make_driver", "state_dir"]
MODE = DisplayMode(640, 480, 60)


def test_the_host_starts_the_driver_when_none_runs_and_it_exits_when_idle(state_dir) -> None:
    state = state_dir
    config = host_config(state, "pattern", monitor_linger_ms=0)
    manager = open_display(config, DisplayBackend.PATTERN)
    assert isinstance(manager, VirtualDisplayManager) and isinstance(manager, VirtualDisplay)
    lease = manager.acquire(MonitorRequest(MODE, False, "c"))
    assert lease.output.display_name == "pattern-0" and len(lease.output.edid) == 256
    spawned = manager._spawned
    assert spawned is not None and spawned.poll() is None
    lease.close()
    manager.close()
    assert spawned.poll() is not None, "the driver the host started is still running"
    assert not socket_path(state).exists()
    log = (state / "logs" / "punktfunk.log").read_text()
    assert "vdisplay.driver_started" in log and "vdisplay.driver_stopped reason=idle" in log


def test_refcount_linger_and_reuse(make_driver) -> None:
    driver = make_driver()
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=300), DisplayBackend.PATTERN)
    try:
        request = MonitorRequest(MODE, False, "laptop")
        a = manager.acquire(request)
        b = manager.acquire(request)
        assert a.output == b.output and a.epoch == b.epoch
        assert manager.monitors()[0][1:] == (MonitorState.ACTIVE, 2)
        a.close()
        a.close()  # idempotent
        assert manager.monitors()[0][1:] == (MonitorState.ACTIVE, 1)
        b.close()
        assert manager.monitors()[0][1:] == (MonitorState.LINGERING, 0)
        with manager.acquire(request) as c:  # a reconnect within the linger time
            assert c.output == a.output and c.epoch == a.epoch
            assert manager.monitors()[0][1:] == (MonitorState.ACTIVE, 1)
        assert wait_until(lambda: not manager.monitors(), 10)
        with manager.acquire(request) as d:  # after the linger: a new monitor, new epoch
            assert d.epoch > a.epoch and d.output.generation > a.output.generation
            assert d.output.monitor_id == 0  # the id was freed and is reused
        other = manager.acquire(MonitorRequest(DisplayMode(800, 600, 60), False, "laptop"))
        assert other.output.mode == DisplayMode(800, 600, 60)
        other.close()
    finally:
        manager.close()


def test_a_stale_lease_cannot_tear_down_a_newer_monitor(make_driver) -> None:
    first = make_driver()
    config = first.config(monitor_linger_ms=0)
    manager = VirtualDisplayManager(config, DisplayBackend.PATTERN)
    try:
        request = MonitorRequest(MODE, False, "laptop")
        stale = manager.acquire(request)
        assert first.stop() == 0  # the driver goes away under the session
        assert wait_until(lambda: not manager.monitors(), 10)
        make_driver(state=first.state)
        fresh = manager.acquire(request)  # reconnects to the new driver
        assert fresh.output.monitor_id == stale.output.monitor_id
        assert fresh.epoch != stale.epoch and fresh.current and not stale.current
        stale.close()
        assert fresh.current
        assert manager.monitors()[0][1:] == (MonitorState.ACTIVE, 1)
        capturer = open_capture(fresh, OutputFormat(False, False), CaptureBackend.IDD_PUSH)
        assert capturer.next_frame(5) is not None  # the newer monitor still publishes
        capturer.close()
        fresh.close()
    finally:
        manager.close()


def test_sessions_without_a_client_identity_never_share(make_driver) -> None:
    driver = make_driver()
    manager = VirtualDisplayManager(driver.config(monitor_linger_ms=5000), DisplayBackend.PATTERN)
    try:
        a = manager.acquire(MonitorRequest(MODE, False, ""))
        b = manager.acquire(MonitorRequest(MODE, False, ""))
        assert a.output.monitor_id != b.output.monitor_id
        a.close()
        b.close()
        assert not manager.monitors()  # nothing to linger for: no one can come back to it
    finally:
        manager.close()


def test_render_adapter_and_launch_environment(make_driver) -> None:
    driver = make_driver()
    manager = VirtualDisplayManager(driver.config(), DisplayBackend.PATTERN)
    try:
        with pytest.raises(DriverError, match="unknown render adapter"):
            manager.set_render_adapter("/dev/dri/renderD250")
        manager.set_render_adapter("auto")
        with manager.acquire(MonitorRequest(MODE, False, "x")) as lease:
            assert "DISPLAY" not in lease.environment()  # the pattern has no X server
    finally:
        manager.close()
    assert "vdisplay.render_adapter adapter=auto" in driver.log()


def test_acquire_refuses_a_mode_outside_the_bounds(make_driver) -> None:
    driver = make_driver()
    manager = VirtualDisplayManager(driver.config(), DisplayBackend.PATTERN)
    try:
        with pytest.raises(DriverError, match="outside"):
            manager.acquire(MonitorRequest(DisplayMode(160, 90, 60), False, "x"))
    finally:
        manager.close()


def test_ping_keeps_the_watchdog_quiet(make_driver) -> None:
    driver = make_driver(watchdog_ms=600)
    manager = VirtualDisplayManager(driver.config(watchdog_timeout_ms=600), DisplayBackend.PATTERN)
    try:
        with manager.acquire(MonitorRequest(MODE, False, "x")):
            time.sleep(2.0)
            assert manager.monitors()
        assert "vdisplay.watchdog" not in driver.log()
    finally:
        manager.close()


_NO_X = """
import sys
for name in ("punktfunk.vdisplay.xlib", "punktfunk.vdisplay.xlib.core"):
    sys.modules[name] = None  # as if libX11 were not installed
from punktfunk.capture.base import CaptureBackend, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.config import load_config
from punktfunk.vdisplay import open_display
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.stamp import decode_stamp
from pathlib import Path
config = load_config(flags={"state_dir": sys.argv[1], "display": "pattern"}, environ={},
                     config_path=Path(sys.argv[2])).config
display = open_display(config, DisplayBackend.PATTERN)
lease = display.acquire(MonitorRequest(DisplayMode(640, 480, 60), False, "c"))
capturer = open_capture(lease, OutputFormat(False, False), CaptureBackend.IDD_PUSH)
frame = capturer.next_frame(5)
print(decode_stamp(frame.pixels) is not None)
capturer.close(); lease.close(); display.close()
"""


def test_the_pattern_path_needs_no_x_libraries(state_dir) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _NO_X, str(state_dir), str(state_dir / "host.env")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "True"
