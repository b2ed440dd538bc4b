"""End to end on real X displays: a Moonlight client streams the session's own Xvfb monitor and
an `attach:` display someone else runs, and its input lands on that display.

An X client of the display draws the frame stamp (counter + time) at the top-left corner, so the
decoded image proves the pixels that arrive are the display's own, in order.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.vdisplay import xauth
from punktfunk.vdisplay.base import DisplayBackend
from punktfunk.vdisplay.stamp import HEIGHT, WIDTH, draw_stamp
from punktfunk.vdisplay.xlib.core import XDisplay, XError
from punktfunk.vdisplay.xlib.shm import ShmImage
from punktfunk.vdisplay.xserver import make_workdir, start_server
from test_vdisplay_support import require_backend


class StampPainter:
    """Draws an increasing frame stamp onto a display's root window at `rate` Hz."""

    def __init__(self, display: str, rate: float = 30.0) -> None:
        self._display, self._interval = display, 1 / rate
        self._stop = threading.Event()
        self.drawn = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with XDisplay(self._display) as app:
            canvas = ShmImage(app, WIDTH, HEIGHT)
            try:
                while not self._stop.wait(self._interval):
                    self.drawn += 1
                    draw_stamp(canvas.pixels, self.drawn, time.monotonic_ns(), 255)
                    canvas.put()
            except XError:
                return  # the session ended and took its display along: nothing to paint on
            finally:
                canvas.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _assert_streamed(result: dict, shape: list[int]) -> None:
    assert result["shape"] == shape
    assert result["decoded_fraction"] >= 0.95, result
    counters = result["counters"]
    # The capture runs faster than the painter: repeats are fine, going back is not.
    assert len(set(counters)) >= 20, result
    assert all(b >= a for a, b in itertools.pairwise(counters)), counters
    latency = result["host_latency_ms"]
    assert latency is not None and 0 < latency["p50"] < 100, latency


def _session_display(host: Host, client) -> str:
    """The session's X display, which this process (a session app) may open with its cookie."""
    xauth.use_state_dir(host.state)
    xauth.install_xlib_auth()
    deadline = time.monotonic() + 60
    while not host.status()["sessions"]:
        assert time.monotonic() < deadline and client.poll() is None, client.stderr.read()
        time.sleep(0.2)
    name = host.status()["sessions"][0]["display"]
    assert name.startswith(":"), name
    return name


@pytest.fixture
def desktop(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Someone's own X desktop at 1280x720, which `attach:` streams as it is (the host runs in
    that someone's session: XAUTHORITY names the desktop's cookie)."""
    require_backend(DisplayBackend.XVFB)
    server = start_server(
        "Xvfb",
        lambda n: ["Xvfb", f":{n}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        make_workdir("xvfb"),
    )
    monkeypatch.setenv("XAUTHORITY", str(server.auth_path))
    yield server.display
    server.stop()


def test_streams_the_sessions_own_xvfb_display(tmp_path: Path) -> None:
    require_backend(DisplayBackend.XVFB)
    host = Host(tmp_path, "--pin", "4321", "--display", "xvfb")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        client = start_drive(tmp_path, "--seconds", "10", "--mode", "1280x720x60")
        painter = StampPainter(_session_display(host, client))
        try:
            result = finish_drive(client)
        finally:
            painter.stop()
        _assert_streamed(result, [720, 1280, 3])
    finally:
        host.kill()


def test_streams_an_attached_display(tmp_path: Path, desktop: str) -> None:
    painter = StampPainter(desktop)
    host = Host(tmp_path, "--pin", "4321", "--display", f"attach:{desktop}")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        result = drive(tmp_path, "--seconds", "10", "--mode", "1280x720x60")
        _assert_streamed(result, [720, 1280, 3])
        assert host.wait_no_sessions() == []
    finally:
        painter.stop()
        host.kill()
    # Attach borrows the display: the session's end leaves it running for its owner.
    with XDisplay(desktop) as still_there:
        assert still_there is not None


def test_keyboard_and_mouse_reach_the_session_display(tmp_path: Path) -> None:
    from Xlib import XK, X
    from Xlib.display import Display

    require_backend(DisplayBackend.XVFB)
    host = Host(tmp_path, "--pin", "4321", "--display", "xvfb")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        flag = tmp_path / "window-ready"
        client = start_drive(
            tmp_path, "--seconds", "15", "--mode", "1280x720x30",
            "--input-after-file", str(flag), "--click", "640,360", "--keys", "Hi",
        )  # fmt: skip
        display = Display(_session_display(host, client))
        screen = display.screen()
        window = screen.root.create_window(
            0,
            0,
            1280,
            720,
            0,
            screen.root_depth,
            event_mask=X.KeyPressMask | X.ButtonPressMask,
        )
        window.map()
        display.sync()
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        display.sync()
        flag.write_text("go")

        keys: list[str] = []
        clicks: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while (len(keys) < 2 or not clicks) and time.monotonic() < deadline:
            while display.pending_events():
                ev = display.next_event()
                if ev.type == X.KeyPress:
                    sym = display.keycode_to_keysym(ev.detail, 1 if ev.state & X.ShiftMask else 0)
                    name = XK.keysym_to_string(sym)
                    if name and name.isalpha():
                        keys.append(name)
                elif ev.type == X.ButtonPress:
                    clicks.append((ev.event_x, ev.event_y))
            time.sleep(0.05)
        result = finish_drive(client, timeout=60)
        assert result["sent_input"] is True, json.dumps(result)[:500]
        assert keys == ["H", "i"], keys
        assert clicks and abs(clicks[0][0] - 640) <= 2 and abs(clicks[0][1] - 360) <= 2, clicks
    finally:
        host.kill()


def test_an_app_runs_on_the_session_display_and_dies_with_the_session(tmp_path: Path) -> None:
    require_backend(DisplayBackend.XVFB)
    marker = tmp_path / "app.txt"
    script = tmp_path / "app.sh"
    script.write_text(f"echo $$ $DISPLAY $XAUTHORITY > {marker}\nsleep 300 &\nwait\n")
    host = Host(tmp_path, "--pin", "4321", "--display", "xvfb", "--apps", f"Marker=sh {script}")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        client = start_drive(tmp_path, "--seconds", "4", "--mode", "800x600x30", "--app", "Marker")
        display = _session_display(host, client)
        deadline = time.monotonic() + 10
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, "the app never started"
            time.sleep(0.1)
        pid, app_display, app_auth = marker.read_text().split()
        assert app_display == display
        assert app_auth == str(xauth.file_for(display))  # only its own display's cookie
        assert os.getpgid(int(pid)) == int(pid)  # its own process group
        finish_drive(client)
        assert host.wait_no_sessions() == []
        deadline = time.monotonic() + 10
        while _group_alive(int(pid)):
            assert time.monotonic() < deadline, "the app's process group outlived its session"
            time.sleep(0.1)
        assert "app.start" in host.log.read_text()
    finally:
        host.kill()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
