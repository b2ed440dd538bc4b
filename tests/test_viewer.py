"""`punktfunk connect` end to end: a real host process, a real viewer window on its own Xvfb.

The host runs `punktfunk serve` on a private state dir and a free UDP port; the viewer runs
`punktfunk connect` as a process with SDL on an Xvfb of the test's own (no window manager, so
its window sits at 0,0 at exactly the size asked). What the viewer draws is read back from its
`--screenshot` PNG; what it sends is driven like a user would, with XTEST on the viewer's X
server, and observed by an X client on the host's session display.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.vdisplay import xauth
from punktfunk.vdisplay.stamp import HEIGHT, WIDTH, decode_stamp
from punktfunk.vdisplay.xserver import XServer, make_workdir, start_server
from punktfunk.viewer.keys import (
    SCANCODE_VK,
    PadSnapshot,
    Viewport,
    move_abs_event,
    snapshot_event,
)
from test_native_stream import _env, free_udp_port

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
PIN = "4321"
STREAM = (1280, 720)
SCREEN = (1600, 900)  # the viewer's X screen: room for the window, and a fullscreen to scale to


def _require_xvfb() -> None:
    if shutil.which("Xvfb") is None:
        message = "Xvfb is not installed here (apt-get install xvfb)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run the viewer tests (run scripts/setup.sh)")
        pytest.skip(message)


def _wait(what: str, ok: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s:\n{why()}")
        time.sleep(0.1)


class Host:
    def __init__(self, tmp: Path, display: str) -> None:
        self.tmp, self.port, self.log = tmp, free_udp_port(), tmp / "host.log"
        self.proc = subprocess.Popen(
            [
                str(PUNKTFUNK), "serve", "--display", display, "--pin", PIN,
                "--native-port", str(self.port), "--bind-address", "127.0.0.1",
                "--monitor-linger-ms", "0",
            ],
            env=_env(tmp), stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait("host.ready", lambda: "host.ready" in self.text() or self.proc.poll() is not None,
              60, self.text)  # fmt: skip
        assert self.proc.poll() is None, self.text()[-3000:]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self, display: str, *args: str) -> subprocess.Popen[str]:
        env = _env(self.tmp)
        env.update(DISPLAY=display, SDL_VIDEODRIVER="x11", SDL_AUDIODRIVER="dummy")
        return subprocess.Popen(
            [
                str(PUNKTFUNK), "connect", "127.0.0.1", "--port", str(self.port), "--pin", PIN,
                "--client-dir", str(self.tmp / "client"), "--mode", "1280x720@30", *args,
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def viewer_x(monkeypatch: pytest.MonkeyPatch) -> Iterator[XServer]:
    """The viewer's own X server (the 'desk' the viewer window lives on; XAUTHORITY names its
    cookie, as in the viewer user's session)."""
    _require_xvfb()
    w, h = SCREEN
    server = start_server(
        "Xvfb",
        lambda n: ["Xvfb", f":{n}", "-screen", "0", f"{w}x{h}x24", "-nolisten", "tcp"],
        make_workdir("xvfb"),
    )
    monkeypatch.setenv("XAUTHORITY", str(server.auth_path))
    yield server
    server.stop()


def _load_png(path: Path) -> np.ndarray:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    surface = pygame.image.load(str(path))
    return pygame.surfarray.array3d(surface).transpose(1, 0, 2)  # (H, W, RGB)


def _pattern_gradient(width: int, height: int) -> np.ndarray:
    """The pattern display's background in RGB (see vdisplay/driver/backends/pattern.py)."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), np.int32)
    rgb[..., 0] = 64
    rgb[..., 1] = (y * 200).astype(np.uint8)
    rgb[..., 2] = (x * 200).astype(np.uint8)
    return rgb


# --- XTEST on the viewer's X server: a user at the viewer's keyboard and mouse ---------------


class Desk:
    def __init__(self, display: str) -> None:
        from Xlib.display import Display

        self.d = Display(display)
        self.root = self.d.screen().root

    def viewer_window(self):  # an Xlib window, or None
        from Xlib import X

        for child in self.root.query_tree().children:
            try:
                if child.get_attributes().map_state != X.IsViewable:
                    continue
                geometry = child.get_geometry()
            except Exception:
                continue
            if geometry.width >= 640:
                return child
        return None

    def size_of(self, window) -> tuple[int, int]:
        geometry = window.get_geometry()
        return geometry.width, geometry.height

    def title(self, window) -> str:
        utf8 = self.d.intern_atom("UTF8_STRING")
        prop = window.get_full_property(self.d.intern_atom("_NET_WM_NAME"), utf8)
        return "" if prop is None else bytes(prop.value).decode(errors="replace")

    def origin(self) -> tuple[int, int]:
        """Where the viewer window's (0, 0) is on the screen (SDL centres a new window)."""
        at = self.viewer_window().translate_coords(self.root, 0, 0)
        return -at.x, -at.y

    def move_in(self, x: int, y: int) -> None:
        ox, oy = self.origin()
        self.move(ox + x, oy + y)

    def click_in(self, x: int, y: int) -> None:
        ox, oy = self.origin()
        self.click(ox + x, oy + y)

    def move(self, x: int, y: int) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        xtest.fake_input(self.d, X.MotionNotify, x=x, y=y)
        self.d.sync()

    def click(self, x: int, y: int) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        self.move(x, y)
        time.sleep(0.05)
        xtest.fake_input(self.d, X.ButtonPress, 1)
        xtest.fake_input(self.d, X.ButtonRelease, 1)
        self.d.sync()

    def wheel(self, up: bool) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        xtest.fake_input(self.d, X.ButtonPress, 4 if up else 5)
        xtest.fake_input(self.d, X.ButtonRelease, 4 if up else 5)
        self.d.sync()
        time.sleep(0.05)

    def keys(self, *chord: str) -> None:
        """Press the keysyms of `chord` in order, then release them in reverse."""
        from Xlib import XK, X
        from Xlib.ext import xtest

        codes = [self.d.keysym_to_keycode(XK.string_to_keysym(name)) for name in chord]
        assert all(codes), chord
        for code in codes:
            xtest.fake_input(self.d, X.KeyPress, code)
        for code in reversed(codes):
            xtest.fake_input(self.d, X.KeyRelease, code)
        self.d.sync()
        time.sleep(0.05)

    def close_window(self, window) -> None:
        """What a window manager sends when the user clicks the close button."""
        from Xlib import X
        from Xlib.protocol import event

        protocols = self.d.intern_atom("WM_PROTOCOLS")
        delete = self.d.intern_atom("WM_DELETE_WINDOW")
        message = event.ClientMessage(
            window=window, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
        )
        window.send_event(message, event_mask=X.NoEventMask)
        self.d.sync()

    def close(self) -> None:
        self.d.close()


def _closed_cleanly(viewer: subprocess.Popen[str], host: Host, timeout: float) -> str:
    """The viewer exits 0 and the host ends the session because the viewer closed it; the
    viewer's stderr."""
    _, err = viewer.communicate(timeout=timeout)
    assert viewer.returncode == 0, err[-3000:]
    _wait("session.end", lambda: "session.end" in host.text(), 10, host.text)
    assert re.search(r'session\.end .*reason="viewer closed', host.text()), host.text()[-2000:]
    return err


def _reap(viewer: subprocess.Popen[str]) -> None:
    if viewer.poll() is None:
        viewer.kill()
        viewer.wait()


# --- the tests --------------------------------------------------------------------------------


def test_the_viewer_renders_the_pattern_and_its_overlay(tmp_path: Path, viewer_x: XServer) -> None:
    host = Host(tmp_path, "pattern")
    desk = Desk(viewer_x.display)
    try:
        shot = tmp_path / "out.png"
        viewer = host.connect(viewer_x.display, "--seconds", "6", "--screenshot", str(shot))
        _wait("the viewer window", desk.viewer_window, 30, lambda: host.text()[-2000:])
        window = desk.viewer_window()
        assert desk.size_of(window) == STREAM  # windowed at the stream's size: 1:1 pixels
        _wait("session.start", lambda: "session.start" in host.text(), 30, host.text)
        title = f"127.0.0.1:{host.port} - 1280x720@30 h264"
        _wait("the title", lambda: title in desk.title(window), 10, lambda: desk.title(window))
        desk.move_in(600, 400)
        desk.keys("F10")  # the stats overlay, drawn top-right
        err = _closed_cleanly(viewer, host, timeout=40)
    finally:
        desk.close()
        host.stop()

    image = _load_png(shot)
    assert image.shape == (STREAM[1], STREAM[0], 3)
    # (a) the top-left region holds a valid frame stamp: sync word and CRC over counter and
    # capture time, drawn by the pattern display, encoded, sent, decoded and drawn 1:1.
    stamp = decode_stamp(image[:HEIGHT, :WIDTH])
    assert stamp is not None, "the screenshot's top-left corner holds no valid frame stamp"
    assert stamp.counter > 30  # seconds into the stream, not the first frame
    # (b) below the overlay, the picture is the pattern's gradient (the sweeping bar aside).
    expected = _pattern_gradient(*STREAM)
    rows, cols = slice(200, 700), slice(300, 1270)
    error = np.abs(image[rows, cols].astype(np.int32) - expected[rows, cols]).max(axis=2)
    assert (error <= 12).mean() >= 0.85, np.percentile(error, [50, 90, 99])
    # (c) the overlay: a dark box with text at the top-right, where the pattern is bright blue.
    box = image[12:60, STREAM[0] - 120 : STREAM[0] - 12].astype(np.int32)
    under = expected[12:60, STREAM[0] - 120 : STREAM[0] - 12]
    assert box[..., 2].mean() < under[..., 2].mean() * 0.6, "no overlay box"
    assert box.max() >= 200, "no overlay text"
    assert "shown" in err


def test_keys_and_clicks_reach_the_hosts_display(tmp_path: Path, viewer_x: XServer) -> None:
    from Xlib import XK, X
    from Xlib.display import Display

    host = Host(tmp_path, "xvfb")
    desk = Desk(viewer_x.display)
    viewer = host.connect(viewer_x.display, "--seconds", "30")
    session = None
    try:
        _wait(
            "a session display",
            lambda: re.search(r"vdisplay\.lease_monitor .*?display=(:\d+)", host.text()),
            30,
            lambda: host.text()[-2000:],
        )
        match = re.search(r"vdisplay\.lease_monitor .*?display=(:\d+)", host.text())
        assert match is not None
        xauth.use_state_dir(host.tmp / "state")  # the session display's cookie, as its apps
        xauth.install_xlib_auth()
        session = Display(match.group(1))
        screen = session.screen()
        target = screen.root.create_window(
            0, 0, *STREAM, 0, screen.root_depth,
            event_mask=X.KeyPressMask | X.ButtonPressMask,
        )  # fmt: skip
        target.map()
        session.sync()
        target.set_input_focus(X.RevertToParent, X.CurrentTime)
        session.sync()

        _wait("the viewer window", desk.viewer_window, 30, lambda: host.text()[-2000:])
        window = desk.viewer_window()
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        desk.d.sync()

        # The pointer path is live once a move on the viewer moves the host's pointer.
        def pointer_followed() -> bool:
            desk.move_in(100 + int(time.monotonic() * 10) % 2, 100)
            time.sleep(0.2)
            p = screen.root.query_pointer()
            return abs(p.root_x - 100) <= 2 and abs(p.root_y - 100) <= 2

        _wait("the host's pointer following the viewer's", pointer_followed, 30, host.text)

        keys: list[str] = []
        clicks: list[tuple[int, int]] = []
        wheel: list[int] = []  # X buttons 4 up, 5 down

        def collect() -> None:
            while session.pending_events():
                ev = session.next_event()
                if ev.type == X.KeyPress:
                    shifted = 1 if ev.state & X.ShiftMask else 0
                    name = XK.keysym_to_string(session.keycode_to_keysym(ev.detail, shifted))
                    if name and name.isalpha():
                        keys.append(name)
                elif ev.type == X.ButtonPress and ev.detail == 1:
                    clicks.append((ev.event_x, ev.event_y))
                elif ev.type == X.ButtonPress:
                    wheel.append(ev.detail)

        desk.keys("Shift_L", "h")
        desk.keys("i")
        desk.click_in(640, 360)
        _wait("keys and a click on the host", lambda: (collect(), len(keys) >= 2 and clicks)[1],
              15, lambda: f"keys={keys} clicks={clicks}\n{host.text()[-2000:]}")  # fmt: skip
        assert keys == ["H", "i"], keys
        assert abs(clicks[0][0] - 640) <= 2 and abs(clicks[0][1] - 360) <= 2, clicks
        desk.wheel(up=True)
        desk.wheel(up=False)
        _wait("two wheel notches", lambda: (collect(), len(wheel) >= 2)[1], 10, str)
        assert wheel == [4, 5], wheel

        # F11: fullscreen on the viewer's 1600x900 screen; a click is scaled to the stream.
        desk.keys("F11")
        _wait("fullscreen", lambda: desk.size_of(desk.viewer_window()) == SCREEN, 10,
              lambda: str(desk.size_of(desk.viewer_window())))  # fmt: skip
        time.sleep(0.3)
        desk.click_in(400, 675)  # (400, 675) of 1600x900 is (320, 540) of 1280x720
        _wait("the scaled click", lambda: (collect(), len(clicks) >= 2)[1], 10, str)
        assert abs(clicks[1][0] - 320) <= 2 and abs(clicks[1][1] - 540) <= 2, clicks
        assert len(keys) == 2, keys  # F11 stayed on the viewer

        # Ctrl+Alt+Shift+Q ends the session cleanly.
        desk.keys("Control_L", "Alt_L", "Shift_L", "q")
        _closed_cleanly(viewer, host, timeout=20)
    finally:
        _reap(viewer)
        if session is not None:
            session.close()
        desk.close()
        host.stop()


def test_closing_the_window_ends_the_session(tmp_path: Path, viewer_x: XServer) -> None:
    host = Host(tmp_path, "pattern")
    desk = Desk(viewer_x.display)
    viewer = host.connect(viewer_x.display)  # no --seconds: it runs until closed
    try:
        _wait("the viewer window", desk.viewer_window, 30, lambda: host.text()[-2000:])
        _wait("session.start", lambda: "session.start" in host.text(), 30, host.text)
        time.sleep(1.0)
        desk.close_window(desk.viewer_window())
        _closed_cleanly(viewer, host, timeout=20)
    finally:
        _reap(viewer)
        desk.close()
        host.stop()


def test_resizing_the_window_reconfigures_the_host_without_reconnecting(
    tmp_path: Path, viewer_x: XServer
) -> None:
    host = Host(tmp_path, "pattern")
    desk = Desk(viewer_x.display)
    viewer = host.connect(viewer_x.display, "--seconds", "12")
    try:
        _wait("the viewer window", desk.viewer_window, 30, lambda: host.text()[-2000:])
        _wait("session.start", lambda: "session.start" in host.text(), 30, host.text)
        window = desk.viewer_window()
        window.configure(width=960, height=540)  # what a window manager does on a drag
        desk.d.sync()
        _wait(
            "session.reconfigured",
            lambda: re.search(r"session\.reconfigured .*epoch=1 mode=960x540", host.text()),
            20,
            lambda: host.text()[-2000:],
        )
        _closed_cleanly(viewer, host, timeout=40)
        assert host.text().count("session.start") == 1  # one session, never reconnected
    finally:
        _reap(viewer)
        desk.close()
        host.stop()


# --- the input translation, against the host's own decoders ----------------------------------


def test_scancodes_map_to_the_vks_the_host_places() -> None:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    from punktfunk.input.vk import VK_EVDEV, VK_KEYSYMS

    for name, vk in {"A": 0x41, "Z": 0x5A, "1": 0x31, "0": 0x30, "RETURN": 0x0D,
                     "SEMICOLON": 0xBA, "GRAVE": 0xC0, "F1": 0x70, "F12": 0x7B, "F13": 0x7C,
                     "LEFT": 0x25, "KP_0": 0x60, "LCTRL": 0xA2, "RALT": 0xA5,
                     "NONUSBACKSLASH": 0xE2}.items():  # fmt: skip
        assert SCANCODE_VK[getattr(pygame, f"KSCAN_{name}")] == vk, name
    for vk in SCANCODE_VK.values():  # every VK we send is one the X11 injector can place
        assert vk in VK_EVDEV or vk in VK_KEYSYMS, hex(vk)


def test_pad_snapshots_decode_on_the_host_as_sent() -> None:
    from punktfunk.input.padroute import native_state
    from punktfunk.native.wire.dgram import InputEvent

    snap = PadSnapshot(buttons=0x1000 | 0x0001, axes=(-32768, -32768, 32767, 100, 32767, 0))
    wire = InputEvent.decode(snapshot_event(3, 200, snap).encode())
    assert wire is not None
    pad, seq, state = native_state(wire.code, wire.x, wire.y, wire.flags)
    assert (pad, seq) == (3, 200)
    assert state.buttons == 0x1001 and (state.left_trigger, state.right_trigger) == (255, 0)
    assert (state.thumb_lx, state.thumb_ly) == (-32768, 32767)  # SDL down -> XInput up
    assert (state.thumb_rx, state.thumb_ry) == (32767, -100)


def test_window_positions_map_to_the_stream_surface() -> None:
    vp = Viewport.fit((1280, 720), (1600, 1000))  # letterboxed top and bottom
    assert (vp.x, vp.y, vp.width, vp.height) == (0, 50, 1600, 900)
    assert vp.to_stream((800, 500), (1280, 720)) == (640, 360)
    assert vp.to_stream((0, 0), (1280, 720)) == (0, 0)  # in the bar: clamped to the edge
    ev = move_abs_event((640, 360), (1280, 720))
    assert (ev.flags >> 16, ev.flags & 0xFFFF, ev.x, ev.y) == (1280, 720, 640, 360)
