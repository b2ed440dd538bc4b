"""Other local users cannot open a session's X display (issue #11, finding 9).

A real `punktfunk serve --gamestream --display xvfb` (as root) streams to the Moonlight driver
with a configured app and keyboard input. While the session runs, `nobody` tries the display
with python-xlib and with libX11 (with no XAUTHORITY, and with XAUTHORITY naming the session's
cookie file, which it must not be able to read): every attempt is refused. The host's own
clients keep working: capture (frames decode), input (keys reach a window) and the app (it
opened the display through the XAUTHORITY the host handed it).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.vdisplay import xauth
from punktfunk.vdisplay.base import DisplayBackend
from test_vdisplay_support import require_backend

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as a second local user",
)

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
# What an unprivileged user's program does: python-xlib, then libX11; prints what got in.
INTRUDER = r"""
import ctypes, sys
from Xlib import error
from Xlib.display import Display
got_in = []
try:
    d = Display(sys.argv[1])
    got_in.append("python-xlib" + (" +XTEST" if d.has_extension("XTEST") else ""))
    d.close()
except (error.DisplayError, OSError) as exc:
    print("python-xlib refused:", exc, file=sys.stderr)
x11 = ctypes.CDLL("libX11.so.6")
x11.XOpenDisplay.restype = ctypes.c_void_p
if x11.XOpenDisplay(sys.argv[1].encode()):
    got_in.append("libX11")
print(",".join(got_in) or "refused")
"""
# The session's app: python-xlib with the environment the host gave it.
APP = r"""
import os, sys, time
from Xlib.display import Display
d = Display()
with open(sys.argv[1], "w") as f:
    f.write(f"{os.environ['DISPLAY']} {os.environ.get('XAUTHORITY')} {d.screen().width_in_pixels}")
time.sleep(300)
"""


def _intrude(display: str, xauthority: str | None) -> str:
    env = {"PATH": os.environ["PATH"], "DISPLAY": display, "HOME": "/nonexistent"}
    if xauthority:
        env["XAUTHORITY"] = xauthority
    out = subprocess.run(
        [*NOBODY, sys.executable, "-c", INTRUDER, display],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _session_display(host: Host, client: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while not host.status()["sessions"]:
        assert time.monotonic() < deadline and client.poll() is None, client.stderr.read()
        time.sleep(0.2)
    return host.status()["sessions"][0]["display"]


def test_nobody_cannot_open_the_session_display(tmp_path: Path) -> None:
    from Xlib import XK, X
    from Xlib.display import Display

    require_backend(DisplayBackend.XVFB)
    app, marker = tmp_path / "app.py", tmp_path / "app.txt"
    app.write_text(APP)
    host = Host(
        tmp_path, "--pin", "4321", "--display", "xvfb",
        "--apps", f"Probe={sys.executable} {app} {marker}",
    )  # fmt: skip
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        flag = tmp_path / "window-ready"
        client = start_drive(
            tmp_path, "--seconds", "15", "--mode", "1280x720x30", "--app", "Probe",
            "--input-after-file", str(flag), "--keys", "Hi",
        )  # fmt: skip
        display = _session_display(host, client)
        xauth.use_state_dir(host.state)
        cookie_file = xauth.file_for(display)
        assert cookie_file is not None, f"no cookie file for {display} in {host.state}"
        st = os.lstat(cookie_file)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()

        # Another local user gets nowhere, with or without pointing at the cookie file.
        assert _intrude(display, None) == "refused"
        assert _intrude(display, str(cookie_file)) == "refused"

        # The session's own clients: a window of ours (opened as an app would) gets the keys
        # the client types (the host's input injection), the app runs, the stream decodes.
        xauth.install_xlib_auth()
        d = Display(display)
        screen = d.screen()
        window = screen.root.create_window(
            0, 0, 1280, 720, 0, screen.root_depth, event_mask=X.KeyPressMask
        )
        window.map()
        d.sync()
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        d.sync()
        flag.write_text("go")
        keys: list[str] = []
        deadline = time.monotonic() + 30
        while len(keys) < 2 and time.monotonic() < deadline:
            while d.pending_events():
                ev = d.next_event()
                if ev.type == X.KeyPress:
                    sym = d.keycode_to_keysym(ev.detail, 1 if ev.state & X.ShiftMask else 0)
                    name = XK.keysym_to_string(sym)
                    if name and name.isalpha():
                        keys.append(name)
            time.sleep(0.05)
        d.close()  # before the session ends and takes the display along
        assert keys == ["H", "i"], keys

        deadline = time.monotonic() + 20
        while not marker.exists() or not marker.read_text().strip():
            assert time.monotonic() < deadline, "the app never opened its display"
            time.sleep(0.1)
        app_display, app_auth, width = marker.read_text().split()
        assert (app_display, app_auth, width) == (display, str(cookie_file), "1280")

        result = finish_drive(client, timeout=60)
        assert result["sent_input"] is True, json.dumps(result)[:500]
        assert result["shape"] == [720, 1280, 3] and result["decoded_fraction"] >= 0.95, result
    finally:
        host.kill()
