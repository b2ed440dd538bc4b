"""A Wayland desktop with a working ScreenCast portal, for the portal tests: a headless sway
(one output), its own session bus, PipeWire and wireplumber, xdg-desktop-portal, and the
ScreenCast backend of `portal_backend.py` (why not xdg-desktop-portal-wlr: see there).
Everything runs in a short private directory and is stopped by `close()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from punktfunk.vdisplay.base import DisplayMode
from punktfunk.wayland.sway import Sway

HERE = Path(__file__).resolve().parent
PORTAL = "/usr/libexec/xdg-desktop-portal"
PARTS = ("dbus-daemon", "dbus-send", "pipewire", "wireplumber", "gst-launch-1.0", "pw-dump", PORTAL)
_PORTAL_FILE = """[portal]
DBusName=org.freedesktop.impl.portal.desktop.pftest
Interfaces=org.freedesktop.impl.portal.ScreenCast;org.freedesktop.impl.portal.RemoteDesktop;
UseIn=pftest
"""


def missing_parts() -> list[str]:
    return [part for part in PARTS if shutil.which(part) is None]


class PortalDesktop:
    def __init__(self, mode: DisplayMode) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pf-p-", dir="/tmp"))  # Unix socket paths
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sway = Sway(self.dir)
        try:
            self._start(mode)
        except BaseException:
            self.close()
            raise

    def _start(self, mode: DisplayMode) -> None:
        self.output = self.sway.create_output(0, mode)
        runtime = self.sway.runtime
        portals = self.dir / "portals"
        portals.mkdir()
        (portals / "pftest.portal").write_text(_PORTAL_FILE)
        self.record = self.dir / "portal-record.jsonl"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "XDG_RUNTIME_DIR": str(runtime),
            "WAYLAND_DISPLAY": self.sway.wayland_socket.name,
            "XDG_CURRENT_DESKTOP": "pftest",
            "XDG_DESKTOP_PORTAL_DIR": str(portals),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.log = (self.dir / "stack.log").open("ab")
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1",
             f"--address=unix:path={runtime}/bus"],
            stdout=subprocess.PIPE, stderr=self.log, env=self.env, process_group=0,
        )  # fmt: skip
        self.procs.append(bus)
        assert bus.stdout is not None
        self.env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().decode().strip()
        self._spawn(["pipewire"])
        self._wait(lambda: (runtime / "pipewire-0").exists(), "pipewire")
        self._spawn(["wireplumber"], WIREPLUMBER_DEBUG=os.environ.get("PF_WP_DEBUG", "2"))
        self._spawn(
            [sys.executable, str(HERE / "portal_backend.py"), self.output.name, str(self.record)]
        )
        self._wait(lambda: self._has_name("org.freedesktop.impl.portal.desktop.pftest"), "backend")
        self._spawn([PORTAL])
        self._wait(lambda: self._has_name("org.freedesktop.portal.Desktop"), "xdg-desktop-portal")

    def _spawn(self, argv: list[str], **extra: str) -> None:
        env = {**self.env, **extra}
        self.procs.append(
            subprocess.Popen(
                argv, stdout=self.log, stderr=self.log, env=env, process_group=self.procs[0].pid
            )
        )

    def _has_name(self, name: str) -> bool:
        done = subprocess.run(
            ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
             "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            capture_output=True, text=True, env=self.env, timeout=10,
        )  # fmt: skip
        return "boolean true" in done.stdout

    def _wait(self, ready: object, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.dir / "stack.log").read_text(errors="replace")[-3000:]

    def records(self) -> list[dict[str, str]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def close(self) -> None:
        """Stop the whole stack: one process group holds what was started here and what the
        bus activated on its own (the document portal and its FUSE mount, the permission
        store)."""
        if self.procs:
            group = self.procs[0].pid
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
                if self._group_gone(group, 5.0):
                    break
            for proc in self.procs:
                proc.wait()
        doc = self.sway.runtime / "doc"
        if not self._unmounted(doc, 5.0):
            subprocess.run(["fusermount3", "-u", "-z", str(doc)], check=False)
        self.sway.stop()
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _group_gone(self, group: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                proc.poll()  # reap ours: a zombie still counts in its group
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def _unmounted(path: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f" {path} " not in Path("/proc/mounts").read_text():
                return True
            time.sleep(0.1)
        return False
