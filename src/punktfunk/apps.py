"""The app list clients see: `Desktop` (the session's own virtual display) plus configured
commands, each launched on the session's display and killed with it."""

from __future__ import annotations

import os
import shlex
import signal
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DESKTOP_ID = 881448767  # any stable positive int32 works; this one is what clients often see


@dataclass(frozen=True)
class App:
    id: int
    title: str
    command: tuple[str, ...] = ()  # empty: just the desktop
    hdr: bool = True


def _stable_id(title: str) -> int:
    return zlib.crc32(title.encode()) & 0x7FFFFFFF or 1


def parse_apps(spec: str) -> tuple[App, ...]:
    """Parse `Title=command args; Other=command` (the `apps` setting). ValueError if malformed."""
    apps: list[App] = []
    for entry in filter(None, (part.strip() for part in spec.split(";"))):
        title, sep, command = entry.partition("=")
        title, command = title.strip(), command.strip()
        if not sep or not title or not command:
            raise ValueError(f"app entry {entry!r} is not Title=command")
        if title == "Desktop" or any(a.title == title for a in apps):
            raise ValueError(f"app title {title!r} is used twice")
        apps.append(App(_stable_id(title), title, tuple(shlex.split(command))))
    return tuple(apps)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


class AppList:
    def __init__(self, extra: tuple[App, ...] = ()) -> None:
        self.desktop = App(DESKTOP_ID, "Desktop")
        self.apps = (self.desktop, *extra)
        self._art: dict[int, bytes] = {}

    def by_id(self, app_id: int) -> App | None:
        return next((a for a in self.apps if a.id == app_id), None)

    def box_art(self, app: App) -> bytes:
        """A plain 130x180 PNG tinted per app (clients want an image; we have no artwork)."""
        if app.id not in self._art:
            hue = app.id % 0xFFFFFF
            self._art[app.id] = _png(130, 180, ((hue >> 16) & 0xFF, (hue >> 8) & 0xFF, hue & 0xFF))
        return self._art[app.id]


class AppProcess:
    """A configured app running for one session: its own process group, on the session's
    display (its environment says which); `stop()` ends the whole group, so nothing the app
    started outlives the session. `on_exit(returncode)` hears when it ends by itself."""

    GRACE_S = 2.0  # between SIGTERM and SIGKILL

    def __init__(
        self, app: App, env: Mapping[str, str], on_exit: Callable[[int], None] | None = None
    ) -> None:
        self.app = app
        self._stopping = threading.Event()
        self._on_exit = on_exit
        # Raises OSError (e.g. FileNotFoundError) when the command cannot start.
        self.proc = subprocess.Popen(
            app.command,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._watcher = threading.Thread(
            target=self._watch, name=f"app-{self.proc.pid}", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        code = self.proc.wait()
        if not self._stopping.is_set() and self._on_exit is not None:
            self._on_exit(code)

    def stop(self) -> None:
        self._stopping.set()
        for sig, wait in ((signal.SIGTERM, self.GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not self._group_alive():
                break
        self._watcher.join(timeout=1)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True
