"""display=wlroots: a real driver process runs a real headless sway; each client gets its own
output at exactly its mode, captured with wlr-screencopy into the same ring (idd-push).

One driver (and sway) for the module; the apps are real Wayland clients (foot) in colours the
pixel checks look for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.capture.base import CaptureBackend, Capturer, OutputFormat
from punktfunk.capture.idd_push import IddPushCapturer
from punktfunk.capture.open import open_capture
from punktfunk.capture.recovery import CaptureLost
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.manager import MonitorLease, VirtualDisplayManager
from punktfunk.wayland.ipc import SwayIpc
from punktfunk.wayland.sway import find_sockets, runtime_dir
from test_vdisplay_support import Driver, require_backend, wait_until

SDR = OutputFormat(gpu=False, hdr=False)
RED = (0, 0, 255)  # BGR
BLUE = (255, 0, 0)
GREEN = (0, 255, 0)


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    require_backend(DisplayBackend.WLROOTS)
    drv = Driver(DisplayBackend.WLROOTS)
    yield drv
    runtime = runtime_dir(drv.state)
    rc = drv.stop()
    log = drv.log()
    drv.cleanup()
    assert rc == 0, log[-2000:]
    assert wait_until(lambda: not _processes_mentioning(str(runtime)), 10), "sway outlived it"


@pytest.fixture(scope="module")
def manager(driver: Driver) -> Iterator[VirtualDisplayManager]:
    mgr = VirtualDisplayManager(driver.config(monitor_linger_ms=0), DisplayBackend.WLROOTS)
    yield mgr
    mgr.close()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _ipc(driver: Driver) -> SwayIpc:
    sockets = find_sockets(runtime_dir(driver.state))
    assert sockets is not None
    return SwayIpc(sockets[1])


def _mapped(driver: Driver, workspace: str, pid: int) -> bool:
    ipc = _ipc(driver)
    try:
        return pid in ipc.windows().get(workspace, [])
    finally:
        ipc.close()


def _output_mode(driver: Driver, name: str) -> tuple[int, int, int]:
    ipc = _ipc(driver)
    try:
        output = ipc.output(name)
    finally:
        ipc.close()
    assert output is not None, name
    mode = output["current_mode"]
    return mode["width"], mode["height"], round(mode["refresh"] / 1000)


def _foot(lease: MonitorLease, colour: str, tmp: Path) -> subprocess.Popen[bytes]:
    """A terminal whose whole window is `colour`, printing a line every 0.2 s (damage)."""
    config = tmp / f"foot-{colour}.ini"
    config.write_text(f"[colors]\nbackground={colour}\nforeground={colour}\n")
    proc = subprocess.Popen(
        ["foot", "-c", str(config), "sh", "-c", "while sleep 0.2; do date; done"],
        env={**os.environ, **lease.environment()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lease.place_app(proc.pid)
    return proc


# An X11 app: one window filled with a colour, its pid in _NET_WM_PID (how sway knows an
# Xwayland window's process, for `place_app`).
_X11_WINDOW = """
import os, sys, time
from Xlib import X, Xatom
from Xlib.display import Display
d = Display()
s = d.screen()
w = s.root.create_window(0, 0, 400, 300, 0, s.root_depth, background_pixel=int(sys.argv[1], 16))
w.change_property(d.intern_atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [os.getpid()])
w.map()
d.sync()
while True:
    w.clear_area(0, 0, 0, 0)
    d.sync()
    time.sleep(0.2)
"""


def _x11_window(lease: MonitorLease, colour: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _X11_WINDOW, colour],
        env={**os.environ, **lease.environment()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lease.place_app(proc.pid)
    return proc


@contextlib.contextmanager
def _clients(
    manager: VirtualDisplayManager, modes: tuple[DisplayMode, ...], name: str
) -> Iterator[tuple[list[MonitorLease], list[Capturer], list[subprocess.Popen[bytes]]]]:
    """One lease and capturer per mode, and a list for the apps launched on them; all of it
    closed after."""
    leases = [manager.acquire(MonitorRequest(m, False, f"{name}{i}")) for i, m in enumerate(modes)]
    capturers = [open_capture(lease, SDR, CaptureBackend.IDD_PUSH) for lease in leases]
    apps: list[subprocess.Popen[bytes]] = []
    try:
        yield leases, capturers, apps
    finally:
        for app in apps:
            app.kill()
            app.wait()
        for capturer in capturers:
            capturer.close()
        for lease in leases:
            lease.close()


def _centre_becomes(capturer: object, bgr: tuple[int, int, int], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = capturer.next_frame(0.5)  # type: ignore[attr-defined]
        if frame is None:
            continue
        height, width = frame.pixels.shape[:2]
        centre = frame.pixels[height // 2, width // 2, :3]
        if np.abs(centre.astype(int) - bgr).max() <= 8:
            return True
    return False


def test_two_clients_get_their_own_outputs_and_apps_and_a_removed_one_leaves_the_other(
    driver: Driver, manager: VirtualDisplayManager, tmp_path: Path
) -> None:
    modes = DisplayMode(1280, 720, 60), DisplayMode(800, 600, 30)
    with _clients(manager, modes, "c") as (leases, capturers, apps):
        names = [lease.output.display_name for lease in leases]
        assert len(set(names)) == 2
        for lease, mode, capturer in zip(leases, modes, capturers, strict=True):
            assert isinstance(capturer, IddPushCapturer)  # screencopy, not a fallback
            assert _output_mode(driver, lease.output.display_name) == (
                mode.width,
                mode.height,
                mode.refresh_hz,
            )
        first = [c.next_frame(1.0) for c in capturers]
        assert [f.pixels.shape[:2] for f in first if f] == [(720, 1280), (600, 800)]
        # A static desktop costs nothing: once the start-up frames are through, no frames.
        for _ in range(5):
            if capturers[0].next_frame(0.5) is None:
                break
        assert capturers[0].next_frame(1.0) is None
        apps.extend([_foot(leases[0], "ff0000", tmp_path), _foot(leases[1], "0000ff", tmp_path)])
        assert _centre_becomes(capturers[0], RED), "client 0 does not see its app"
        assert _centre_becomes(capturers[1], BLUE), "client 1 does not see its app"
        # Closing client 0 removes its output (windows closed, output unplugged or parked
        # at another mode) while client 1 keeps streaming.
        capturers[0].close()
        leases[0].close()
        assert wait_until(lambda: apps[0].poll() is not None, 10), "its app outlived it"
        ipc = _ipc(driver)
        try:
            gone = ipc.output(names[0])
        finally:
            ipc.close()
        assert gone is None or gone["current_mode"]["width"] != 1280
        assert sum(capturers[1].next_frame(1.0) is not None for _ in range(5)) >= 3
        assert _centre_becomes(capturers[1], BLUE, 5)


def test_x11_apps_run_on_xwayland_and_open_on_their_clients_output(
    manager: VirtualDisplayManager,
) -> None:
    """An X11 program launched for a client (DISPLAY from the lease) runs on sway's Xwayland
    and opens on that client's output, not the other's."""
    modes = DisplayMode(1024, 768, 30), DisplayMode(800, 600, 30)
    with _clients(manager, modes, "x") as (leases, capturers, apps):
        assert leases[0].environment()["DISPLAY"].startswith(":")
        apps.append(_x11_window(leases[1], "00ff00"))
        assert _centre_becomes(capturers[1], GREEN), apps[0].stderr
        frame = capturers[0].next_frame(1.0) or capturers[0].repeat_last()
        assert frame is not None
        height, width = frame.pixels.shape[:2]
        assert np.abs(frame.pixels[height // 2, width // 2, :3].astype(int) - GREEN).max() > 8


def test_a_mode_change_inside_the_compositor_is_followed_without_reconnect(
    driver: Driver, manager: VirtualDisplayManager
) -> None:
    lease = manager.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, "resizer"))
    capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
    try:
        name = lease.output.display_name
        ipc = _ipc(driver)
        try:
            ipc.command(f"output {name} mode --custom 1024x768@60Hz")
        finally:
            ipc.close()
        deadline = time.monotonic() + 5
        shape = None
        while time.monotonic() < deadline and shape != (768, 1024):
            frame = capturer.next_frame(0.25)
            shape = frame.pixels.shape[:2] if frame is not None else shape
        assert shape == (768, 1024), f"still {shape}"
    finally:
        capturer.close()
        lease.close()


# ASCII on the US keys; the rest (more than the 12 spare keys, one repeated) on spare keys.
TYPED = 'Ba "x|y" ~1 Grüße € → ñ ç ø å æ œ ł ß ü 😀 ž ő'


def test_keys_and_clicks_reach_only_that_clients_app(
    driver: Driver, manager: VirtualDisplayManager, tmp_path: Path
) -> None:
    from punktfunk.input.wayland import WaylandInjector

    leases = [
        manager.acquire(MonitorRequest(DisplayMode(640, 480, 30), False, f"typist{i}"))
        for i in range(2)
    ]
    apps, injectors = [], []
    sockets = find_sockets(runtime_dir(driver.state))
    assert sockets is not None
    try:
        # As sessions start: one client's app and input, a moment later the other's.
        for i, lease in enumerate(leases):
            out = tmp_path / f"typed{i}"
            proc = subprocess.Popen(
                ["foot", "sh", "-c", f'read line; echo "$line" > {out}; sleep 60'],
                env={**os.environ, **lease.environment()},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            lease.place_app(proc.pid)
            apps.append(proc)
            name = lease.output.display_name
            injectors.append(WaylandInjector(sockets[0], name, f"pf-{lease.output.monitor_id}"))
            assert wait_until(
                lambda p=proc.pid, w=f"pf-{lease.output.monitor_id}": _mapped(driver, w, p), 20
            ), "the terminal never mapped on its output"
        shift = 0x10
        for injector, word in zip(injectors, ("Ab", "Ba"), strict=True):
            injector.mouse_move_abs(320, 240, 640, 480)
            injector.mouse_button(1, True)
            injector.mouse_button(1, False)
            if injector is injectors[1]:
                injector.text(TYPED)  # by character (the native client's text path)
                continue
            for ch in word:
                if ch.isupper():
                    injector.key(shift, True, 1)
                injector.key(ord(ch.upper()), True, 0)
                injector.key(ord(ch.upper()), False, 0)
                if ch.isupper():
                    injector.key(shift, False, 0)
        for injector in injectors:
            injector.key(0x0D, True, 0)
            injector.key(0x0D, False, 0)
        for i, word in enumerate(("Ab", TYPED)):
            out = tmp_path / f"typed{i}"
            assert wait_until(out.exists, 10), f"client {i}'s app got no line"
            assert out.read_text().strip() == word
    finally:
        for injector in injectors:
            injector.close()
        for app in apps:
            app.kill()
            app.wait()
        for lease in leases:
            lease.close()


def test_a_dead_compositor_ends_capture_with_a_reason_and_the_next_add_restarts_it(
    driver: Driver, manager: VirtualDisplayManager
) -> None:
    lease = manager.acquire(MonitorRequest(DisplayMode(640, 480, 30), False, "victim"))
    capturer = open_capture(lease, SDR, CaptureBackend.IDD_PUSH)
    try:
        sockets = find_sockets(runtime_dir(driver.state))
        assert sockets is not None
        os.kill(int(sockets[1].name.split(".")[2]), signal.SIGKILL)  # sway-ipc.<uid>.<pid>.sock
        with pytest.raises(CaptureLost, match="gone"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                capturer.next_frame(0.25)
    finally:
        capturer.close()
        lease.close()
    # The driver is still there and starts a new compositor for the next client.
    again = manager.acquire(MonitorRequest(DisplayMode(800, 600, 30), False, "next"))
    try:
        capturer = open_capture(again, SDR, CaptureBackend.IDD_PUSH)
        frame = capturer.next_frame(2.0)
        assert frame is not None and frame.pixels.shape[:2] == (600, 800)
        capturer.close()
    finally:
        again.close()
    log = driver.log()
    assert "vdisplay.sway_gone" in log
    assert "Traceback" not in log, log[-3000:]


def test_the_watchdog_removes_a_silent_hosts_output_and_closes_its_apps(tmp_path: Path) -> None:
    from punktfunk.wayland.sway import place_app

    drv = Driver(DisplayBackend.WLROOTS, watchdog_ms=500)
    try:
        conn = drv.connect()
        reply = conn.add(MonitorRequest(DisplayMode(1024, 768, 30), False, "silent"))
        name = reply.display_name.decode()
        sockets = find_sockets(runtime_dir(drv.state))
        assert sockets is not None
        app = subprocess.Popen(
            ["foot", "sleep", "60"],
            env={
                **os.environ,
                "WAYLAND_DISPLAY": sockets[0].name,
                "XDG_RUNTIME_DIR": str(runtime_dir(drv.state)),
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            place_app(drv.state, app.pid, reply.monitor_id)
            workspace = f"pf-{reply.monitor_id}"
            assert wait_until(lambda: _mapped(drv, workspace, app.pid), 20)
            # The host goes silent (no PING): the watchdog takes its monitor away.
            assert wait_until(lambda: app.poll() is not None, 15), "its app outlived it"
            assert _output_mode(drv, name)[:2] != (1024, 768)
            assert "vdisplay.watchdog" in drv.log()
        finally:
            app.kill()
            app.wait()
        conn.close()
    finally:
        runtime = str(runtime_dir(drv.state))
        assert drv.stop() == 0, drv.log()[-2000:]
        drv.cleanup()
    assert wait_until(lambda: not _processes_mentioning(runtime), 10), "sway outlived it"


def test_doctor_says_what_wayland_can_run_here(
    driver: Driver, manager: VirtualDisplayManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from punktfunk.wayland.checks import attach_check, wlroots_check

    assert wlroots_check()[0]
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ok, detail = attach_check()
    assert not ok and "WAYLAND_DISPLAY" in detail
    lease = manager.acquire(MonitorRequest(DisplayMode(1024, 768, 30), False, "doctor"))
    try:
        for key, value in lease.environment().items():
            monkeypatch.setenv(key, value)
        ok, detail = attach_check()
        assert ok and "screencopy of HEADLESS-" in detail, detail
    finally:
        lease.close()


def test_auto_prefers_a_gpu_compositor_only_where_one_can_render() -> None:
    """display=auto: sway on a render node first (the X servers render on the CPU); on a box
    without one (this one, CI) the X servers, and the reason is the one the driver logs."""
    from punktfunk.vdisplay.base import AUTO_ORDER, auto_order
    from punktfunk.wayland.checks import gpu_compositor, gpu_verdict

    node = "/dev/dri/renderD128"
    assert gpu_verdict([node], [node], (True, "sway")) == (True, f"sway renders on {node}")
    assert gpu_verdict([], [], (True, "sway"))[1].startswith("no GPU render node")
    assert "cannot be opened" in gpu_verdict([node], [], (True, "sway"))[1]
    assert "sway cannot run: no userns" in gpu_verdict([node], [node], (False, "no userns"))[1]
    assert auto_order(True) == (DisplayBackend.WLROOTS, *AUTO_ORDER)
    assert auto_order(False) == AUTO_ORDER
    if not list(Path("/dev/dri").glob("renderD*")):
        assert gpu_compositor() == (False, gpu_verdict([], [], (True, ""))[1])


def test_the_driver_logs_why_auto_did_not_pick_the_gpu_compositor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from punktfunk.vdisplay.driver import backends
    from punktfunk.wayland import checks

    monkeypatch.setattr(checks, "gpu_compositor", lambda: (False, "no GPU render node (test)"))
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        picked = backends.resolve_backend("auto")
    assert picked is not DisplayBackend.WLROOTS
    assert "gpu_compositor=" in caplog.text and "no GPU render node (test)" in caplog.text
    monkeypatch.setattr(checks, "gpu_compositor", lambda: (True, "sway renders on renderD128"))
    assert backends.resolve_backend("auto") is DisplayBackend.WLROOTS
