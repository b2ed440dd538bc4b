"""The app list clients see: `Desktop` (the session's own virtual display) plus configured
commands, each launched on the session's display and killed with it."""

from __future__ import annotations

import shlex
import struct
import zlib
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
