"""End to end: `punktfunk serve --gamestream` and a real Moonlight client (moonlight-common-c).

The host runs as its own process on a private state dir and base port; each client run is a
process of its own (moonlight-common-c is a process singleton). The pattern display stamps a
frame counter into every frame, so the client can prove frames arrive whole and in order.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "moonlight_driver.py"
PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
BASE_PORT = 47989 + 2000  # away from a real host's ports


def _wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


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
        _wait_port(BASE_PORT)

    def status(self) -> dict:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(str(self.state / "admin.sock"))
        sock.sendall(b"status\n")
        reply = sock.recv(1 << 20).decode()
        sock.close()
        assert reply.startswith("ok "), reply
        return json.loads(reply[3:])

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    yield h
    if h.proc.poll() is None:
        h.proc.kill()
        h.proc.wait()


def drive(tmp: Path, *args: str, timeout: float = 120) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            str(DRIVER),
            "--port",
            str(BASE_PORT),
            "--config-dir",
            str(tmp / "client"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pairing_with_the_wrong_pin_trusts_nothing(host: Host, tmp_path: Path) -> None:
    result = drive(tmp_path, "--pin", "9999", "--pair-only")
    assert result["paired"] is False
    assert "pin" in result["pair_error"].lower()
    assert host.status()["paired_clients"] == []


def test_moonlight_streams_the_pattern_display(host: Host, tmp_path: Path) -> None:
    assert drive(tmp_path, "--pin", "4321", "--pair-only")["paired"] is True
    assert len(host.status()["paired_clients"]) == 1

    result = drive(tmp_path, "--seconds", "6", "--mode", "1280x720x60")
    counters = result["counters"]
    assert result["shape"] == [720, 1280, 3]
    # Every decoded frame carries the pattern's stamp; they arrive in order without repeats.
    assert len(counters) >= 30, result
    assert all(b > a for a, b in itertools.pairwise(counters)), counters
    assert result["audio_chunks"] > 0
    log = host.log.read_text()
    assert "session.start" in log and "encrypted_video=True" in log

    assert host.stop() == 0
    log = host.log.read_text()
    assert "session.end" in log and "host.stopping" in log
    assert not (host.state / "admin.sock").exists()


def test_streams_again_after_the_first_session_ends(host: Host, tmp_path: Path) -> None:
    drive(tmp_path, "--pin", "4321", "--pair-only")
    for _ in range(2):
        result = drive(tmp_path, "--seconds", "2", "--mode", "640x480x30")
        assert result["frames"] >= 5 and result["shape"] == [480, 640, 3]
    deadline = time.monotonic() + 15
    while host.status()["sessions"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host.status()["sessions"] == []


def test_keyboard_and_mouse_reach_the_session_display(tmp_path: Path) -> None:
    from Xlib import XK, X
    from Xlib.display import Display

    host = Host(tmp_path, "--pin", "4321", "--display", "xvfb")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        flag = tmp_path / "window-ready"
        client = subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "--port",
                str(BASE_PORT),
                "--config-dir",
                str(tmp_path / "client"),
                "--seconds",
                "15",
                "--mode",
                "1280x720x30",
                "--input-after-file",
                str(flag),
                "--click",
                "640,360",
                "--keys",
                "Hi",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not host.status()["sessions"]:
            assert time.monotonic() < deadline and client.poll() is None, client.stderr.read()
            time.sleep(0.2)
        display_name = host.status()["sessions"][0]["display"]
        assert display_name.startswith(":")

        display = Display(display_name)
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
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1])["sent_input"] is True
        assert keys == ["H", "i"], keys
        assert clicks and abs(clicks[0][0] - 640) <= 2 and abs(clicks[0][1] - 360) <= 2, clicks
    finally:
        host.proc.kill()
        host.proc.wait()
