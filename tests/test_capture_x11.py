"""Direct X11 capture of an `attach:` display (an X server someone else runs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from punktfunk.capture.base import CaptureBackend, CaptureError, OutputFormat
from punktfunk.capture.open import open_capture
from punktfunk.capture.x11 import X11Capturer
from punktfunk.vdisplay import open_display
from punktfunk.vdisplay.attach import AttachedDisplay, AttachError
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.driver.backends.xscreen import offer_modes
from punktfunk.vdisplay.xlib import randr
from punktfunk.vdisplay.xlib.core import XDisplay
from punktfunk.vdisplay.xlib.shm import ShmImage
from punktfunk.vdisplay.xserver import make_workdir, start_server
from test_vdisplay_support import require_backend, wait_until

SDR = OutputFormat(gpu=False, hdr=False)


@pytest.fixture
def desktop():
    """Someone's X desktop (an Xvfb we start, 1920x1080), and a connection that keeps its
    modes alive the way a desktop session does."""
    require_backend(DisplayBackend.XVFB)
    workdir = make_workdir("xvfb")
    server = start_server(
        "Xvfb",
        lambda n: ["Xvfb", f":{n}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp", "-noreset"],
        workdir,
    )
    session = XDisplay(server.display)
    offer_modes(session, DisplayMode(1920, 1080, 60), (1920, 1080))
    yield server.display
    session.close()
    server.stop()


def _draw(display: str, seed: int, size: tuple[int, int]) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    with XDisplay(display) as app:
        canvas = ShmImage(app, *size)
        canvas.pixels[...] = image
        canvas.put()
        canvas.close()
    return image


def test_attach_streams_a_known_image_bit_exact(desktop) -> None:
    attached = open_display(None, DisplayBackend.ATTACH, desktop)  # type: ignore[arg-type]
    assert isinstance(attached, AttachedDisplay)
    with attached.acquire(MonitorRequest(DisplayMode(1280, 720, 60), False, "me")) as lease:
        # Attach streams the display as it is: the client's mode is not applied.
        assert lease.output.mode.width == 1920 and lease.output.display_name == desktop
        assert lease.environment() == {"DISPLAY": desktop}
        capturer = open_capture(lease, SDR, CaptureBackend.resolve("auto", DisplayBackend.ATTACH))
        try:
            assert isinstance(capturer, X11Capturer)
            image = _draw(desktop, 3, (1920, 1080))
            got: list[np.ndarray] = []

            def arrived() -> bool:
                frame = capturer.next_frame(0.2)
                if frame is not None:
                    got.append(frame.pixels)
                return bool(got) and np.array_equal(got[-1][..., :3], image[..., :3])

            assert wait_until(arrived, 5, 0)
            assert capturer.next_frame(0.3) is None  # static: DAMAGE says nothing changed
        finally:
            capturer.close()
    attached.close()


def test_attach_follows_a_mode_change(desktop) -> None:
    lease = AttachedDisplay(desktop).acquire(MonitorRequest(DisplayMode(640, 480, 60), False, ""))
    capturer = open_capture(lease, SDR, CaptureBackend.X11)
    try:
        assert capturer.next_frame(5) is not None
        with XDisplay(desktop) as game:
            randr.set_mode(game, 1280, 720)
        changed = time.monotonic()
        while time.monotonic() - changed < 1.0:
            frame = capturer.next_frame(0.2)
            if frame is not None and frame.pixels.shape[:2] == (720, 1280):
                break
        else:
            raise AssertionError("no 1280x720 frame within 1 s")
    finally:
        capturer.close()


def test_attach_to_a_display_that_does_not_exist_says_so() -> None:
    with pytest.raises(AttachError, match=r"cannot open X display ':1999'"):
        AttachedDisplay(":1999").acquire(MonitorRequest(DisplayMode(640, 480, 60), False, ""))
    with pytest.raises(CaptureError, match="cannot open X display"):
        X11Capturer(":1999", SDR)


def test_our_x_servers_never_speak_for_the_service(tmp_path, monkeypatch) -> None:
    """Xvfb says READY=1 to an inherited $NOTIFY_SOCKET: under systemd or `service run` that
    would speak for the host (or for the doctor) before it is ready. Our servers do not get it."""
    import socket

    require_backend(DisplayBackend.XVFB)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(1.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    workdir = make_workdir("xvfb")
    server = start_server(
        "Xvfb", lambda n: ["Xvfb", f":{n}", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
        workdir,
    )  # fmt: skip
    try:
        with pytest.raises(TimeoutError):
            print("the X server said:", listener.recv(4096))
    finally:
        server.stop()
        listener.close()


def test_a_killed_x_server_leaves_no_socket_and_its_number_comes_free() -> None:
    """With -displayfd an X server writes no lock file, so a SIGKILLed one left its socket,
    and its display number counted as taken for good."""
    import os
    import signal
    import socket

    from punktfunk.vdisplay import xserver

    require_backend(DisplayBackend.XVFB)
    server = start_server(
        "Xvfb", lambda n: ["Xvfb", f":{n}", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
        make_workdir("xvfb"),
    )  # fmt: skip
    sock = Path(f"/tmp/.X11-unix/X{server.number}")
    assert sock.exists() and xserver.display_in_use(server.number)  # a live one is kept
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    assert sock.exists()  # what the kill leaves
    server.stop()
    assert not sock.exists()

    # One left by an earlier run (nothing listens, ours, older than a start takes) is swept
    # when the numbers are searched; a fresh one is left alone (a server between bind and
    # listen).
    number = max(xserver.free_display_numbers()[:1] or [0])
    stale = Path(f"/tmp/.X11-unix/X{number}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))
    try:
        assert xserver.display_in_use(number)
        os.utime(stale, (time.time() - 60, time.time() - 60))
        assert not xserver.display_in_use(number)
        assert not stale.exists()
    finally:
        stale.unlink(missing_ok=True)
