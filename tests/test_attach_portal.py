"""`attach:portal` end to end: Moonlight streams the Wayland desktop the host runs in, through
the desktop's ScreenCast portal and PipeWire, asked once.

The desktop is a headless sway with a real xdg-desktop-portal, PipeWire and wireplumber
(`portal_stack.py`; its ScreenCast backend is the test's own because Debian 12's
xdg-desktop-portal-wlr cannot share a screen without a GPU, see `portal_backend.py`). The host
runs inside that session (its bus and Wayland socket in the environment), as `punktfunk serve`
started from a user's desktop would.
"""

from __future__ import annotations

import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gs_host import PUNKTFUNK, Host, drive
from portal_stack import PortalDesktop, missing_parts
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode
from test_gamestream_wlroots import RED, _app, _close, type_into_own_app
from test_vdisplay_support import missing_part, require_backend, wait_until


def _require_portal_stack() -> None:
    missing = missing_parts()
    if missing:
        missing_part(f"the portal test needs {', '.join(missing)}")


def _leftovers(desktop: PortalDesktop) -> list[str]:
    """Processes that still name the desktop's private directory."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(desktop.dir) in text:
            found.append(text)
    return found


@pytest.fixture
def desktop_at() -> Iterator[Callable[[DisplayMode], PortalDesktop]]:
    """Make a portal desktop at a mode; every one made is stopped, and nothing of it stays."""
    made: list[PortalDesktop] = []

    def make(mode: DisplayMode) -> PortalDesktop:
        require_backend(DisplayBackend.WLROOTS)
        _require_portal_stack()
        made.append(PortalDesktop(mode))
        return made[-1]

    yield make
    for desktop in made:
        desktop.close()
        assert _leftovers(desktop) == []


@pytest.fixture
def apps() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Apps a test starts in its desktop, killed after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for app in started:
        app.kill()
        app.wait()


def test_moonlight_streams_the_desktop_through_its_portal_and_is_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, desktop_at, apps
) -> None:
    desktop = desktop_at(DisplayMode(1280, 720, 30))
    host = None
    try:
        for key, value in desktop.env.items():
            monkeypatch.setenv(key, value)
        doctor = subprocess.run([str(PUNKTFUNK), "doctor"], capture_output=True, text=True)
        assert re.search(r"attach:portal\s+ok\s+ScreenCast portal v4", doctor.stdout), doctor.stdout
        script = _app(tmp_path, "Own", "ff0000").split("=", 1)[1].split()[1]
        apps.append(subprocess.Popen(["sh", script], stdin=subprocess.DEVNULL))
        assert wait_until(lambda: desktop.sway.ipc.windows().get("pf-0") == [apps[0].pid], 20)
        host = Host(tmp_path, "--pin", "4321", "--display", "attach:portal")
        # First launch: the portal asks (a desktop shows its dialog), the picture is the
        # desktop at its own size, keys and clicks reach the app in it.
        result = type_into_own_app(tmp_path, host)
        assert result["shape"] == [720, 1280, 3], result["shape"]  # the desktop as it is
        assert _close(result["centre_bgr"], RED), result["centre_bgr"]
        assert host.wait_no_sessions() == []
        # The session ended: the host closed its portal session (the grant is not left open).
        assert wait_until(lambda: any("closed" in r for r in desktop.records()), 10)
        token = host.state / "portal-restore-token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600

        # Second launch: the kept restore token, no question asked.
        again = drive(tmp_path, "--seconds", "3", "--mode", "800x600x30")
        assert again["shape"] == [720, 1280, 3], again
        assert host.wait_no_sessions() == []
        starts = [r["start"] for r in desktop.records() if "start" in r]
        assert starts == ["asked", "restored"], desktop.records()
        log = (tmp_path / "host.log").read_text()
        assert re.search(r"display\.attach .*path=portal", log), log[-3000:]
        assert re.search(r"portal\.granted .*restored=True", log), log[-3000:]
    finally:
        if host is not None:
            host.kill()


def test_attach_portal_without_a_portal_says_why_and_the_host_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No session bus: the launch fails with the reason in the log; the host stays up."""
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    host = Host(tmp_path, "--pin", "4321", "--display", "attach:portal")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        refused = drive(tmp_path, "--launch-only", timeout=90)
        assert refused["launched"] is False, refused
        log = (tmp_path / "host.log").read_text()
        assert "ScreenCast portal: no session bus" in log, log[-3000:]
        assert host.proc.poll() is None
        assert host.status()["sessions"] == []
    finally:
        host.kill()


def test_without_wlroots_input_a_remote_desktop_session_carries_keys_clicks_and_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, desktop_at, apps
) -> None:
    """As on GNOME or KDE: the host cannot reach wlroots virtual input (here: no Wayland socket
    in its environment), so it asks the portal for a RemoteDesktop session; Moonlight's keys and
    click reach the app through the portal, and text goes as keysyms."""
    desktop = desktop_at(DisplayMode(1024, 768, 30))
    host = None
    try:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        script = _app(tmp_path, "Own", "ff0000").split("=", 1)[1].split()[1]
        apps.append(subprocess.Popen(["sh", script], stdin=subprocess.DEVNULL, env=desktop.env))
        assert wait_until(lambda: desktop.sway.ipc.windows().get("pf-0") == [apps[0].pid], 20)
        host = Host(tmp_path, "--pin", "4321", "--display", "attach:portal")
        result = type_into_own_app(tmp_path, host)
        assert result["shape"] == [768, 1024, 3], result["shape"]
        assert _close(result["centre_bgr"], RED), result["centre_bgr"]
        assert host.wait_no_sessions() == []
        records = desktop.records()
        assert [r.get("kind") for r in records if "start" in r] == ["remote-desktop"], records
        calls = {r["notify"] for r in records if "notify" in r}
        assert {"NotifyKeyboardKeycode", "NotifyPointerButton"} <= calls, calls
        assert "NotifyPointerMotionAbsolute" in calls, calls
        log = (tmp_path / "host.log").read_text()
        assert re.search(r"portal\.granted .*input=remote-desktop", log), log[-3000:]
    finally:
        if host is not None:
            host.kill()

    # Text (a client's on-screen keyboard): keysyms, so any character the desktop can type.
    from punktfunk.input.portal import PortalInjector
    from punktfunk.wayland.portal import ScreenCast

    out = tmp_path / "text.txt"
    apps.append(
        subprocess.Popen(
            ["foot", "sh", "-c", f'read line; echo "$line" > {out}; sleep 60'],
            stdin=subprocess.DEVNULL,
            env=desktop.env,
        )
    )
    assert wait_until(lambda: apps[-1].pid in desktop.sway.ipc.windows().get("pf-0", []), 20)
    cast = ScreenCast(want_input=True)
    try:
        injector = PortalInjector(cast, 1024, 768)
        injector.text("Grüße → 1€\n")
        injector.close()  # what is queued goes out first
        assert wait_until(out.exists, 10), desktop.records()[-5:]
        assert out.read_text().strip() == "Grüße → 1€"
    finally:
        cast.close()


def test_attach_wayland_takes_the_portal_where_one_answers_else_screencopy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, desktop_at
) -> None:
    """`attach:wayland` (no output named): the portal when one answers on the session bus,
    wlr-screencopy of the first output otherwise; each choice logged with its reason."""
    import logging

    from punktfunk.vdisplay.base import MonitorRequest
    from punktfunk.wayland.attach import PortalLease, WaylandAttachedDisplay, WaylandAttachedLease

    desktop = desktop_at(DisplayMode(800, 600, 30))
    request = MonitorRequest(DisplayMode(1280, 720, 60), False, "choice")
    for key, value in desktop.env.items():
        monkeypatch.setenv(key, value)
    display = WaylandAttachedDisplay("wayland", tmp_path)
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        with display.acquire(request) as lease:
            assert isinstance(lease, PortalLease)
            assert (lease.output.mode.width, lease.output.mode.height) == (800, 600)
            assert hasattr(lease, "wayland_socket")  # sway's own virtual input, direct
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
        with display.acquire(request) as lease:
            assert isinstance(lease, WaylandAttachedLease)
            assert lease.output.display_name == desktop.output.name
    assert re.search(r"display\.attach .*path=portal .*input=compositor", caplog.text)
    assert re.search(r"display\.attach .*path=wlr-screencopy .*no session bus", caplog.text)
    assert wait_until(lambda: any("closed" in r for r in desktop.records()), 10)
