"""X authority for the X servers we start: a fresh MIT-MAGIC-COOKIE-1 per display, file 0600.

Without `-auth` an X server lets every local user connect (keylogging and injection through
XTEST). Each server we start reads its own random cookie from `-auth <file>`; only holders of
that file get in. Where the file lives:

- the driver's servers: in `<state_dir>/xauth/X<n>`, a 0700 directory of ours. The host runs as
  the same user with the same state dir (`use_state_dir`), and the driver ABI reports the
  display name, so `X<n>` is all it needs.
- a server started without a state dir (tests): in its private work directory; the process
  that started it finds it through `register`.

Our own connections present the cookie explicitly (`cookie_for`: libX11 through
XSetAuthorization in `xlib.core`, python-xlib through `install_xlib_auth`); programs launched
into the session get `XAUTHORITY` pointing at the file (`environment`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import stat
import struct
import threading
from pathlib import Path

from ..ownfiles import create_exclusive, is_ours, owned, private_dir, unlink_own

COOKIE_NAME = b"MIT-MAGIC-COOKIE-1"
_FAMILY_LOCAL = 256  # address: the host name (what python-xlib and libXau match for :n)
_FAMILY_WILD = 65535  # any address (libXau), in case the host name changes
_LOCAL_DISPLAY = re.compile(r"^(?:unix)?:(\d+)(?:\.\d+)?$")
_AUTH_FILE = re.compile(r"^X(\d+)$")

_lock = threading.Lock()
_dirs: list[Path] = []  # <state_dir>/xauth of this process
_files: dict[int, Path] = {}  # display number -> authority file, registered by who started it


def display_number(name: str) -> int | None:
    """n of a local display name (":n", ":n.s", "unix:n"); None for anything else."""
    match = _LOCAL_DISPLAY.match(name)
    return int(match.group(1)) if match else None


def auth_dir(state_dir: Path) -> Path:
    return state_dir / "xauth"


def use_state_dir(state_dir: Path) -> Path:
    """Look for authority files in `<state_dir>/xauth` (created 0700); returns that directory."""
    directory = private_dir(auth_dir(state_dir))
    with _lock:
        if directory not in _dirs:
            _dirs.insert(0, directory)
    return directory


def _field(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def encode(cookie: bytes) -> bytes:
    """An Xauthority file (the binary format of libXau) granting `cookie` on any display."""
    out = b""
    for family, address in ((_FAMILY_LOCAL, socket.gethostname().encode()), (_FAMILY_WILD, b"")):
        out += struct.pack(">H", family) + _field(address) + _field(b"")
        out += _field(COOKIE_NAME) + _field(cookie)
    return out


def decode_cookie(data: bytes) -> bytes | None:
    """The first MIT-MAGIC-COOKIE-1 in an Xauthority file's bytes."""
    pos = 0
    try:
        while pos < len(data):
            pos += 2  # family
            fields = []
            for _ in range(4):  # address, number, name, data
                (size,) = struct.unpack_from(">H", data, pos)
                fields.append(data[pos + 2 : pos + 2 + size])
                pos += 2 + size
            if fields[2] == COOKIE_NAME and len(fields[3]) == 16:
                return fields[3]
    except struct.error:
        return None
    return None


def create_file(directory: Path, number: int) -> Path:
    """A fresh cookie for display `number` in `directory`/X<n> (0600, O_EXCL|O_NOFOLLOW); a
    stale file of ours there (its server is gone: the number is free) is replaced."""
    path = directory / f"X{number}"
    unlink_own(path)
    fd = create_exclusive(path)
    with os.fdopen(fd, "wb") as f:
        f.write(encode(secrets.token_bytes(16)))
    register(number, path)
    return path


def register(number: int, path: Path) -> None:
    with _lock:
        _files[number] = path


def remove_file(number: int, path: Path) -> None:
    """The server of display `number` is gone: its cookie file goes too."""
    with _lock:
        if _files.get(number) == path:
            del _files[number]
    unlink_own(path)


def file_for(display: str) -> Path | None:
    """The authority file of a display one of our servers runs (None: not one of ours)."""
    number = display_number(display)
    if number is None:
        return None
    with _lock:
        candidates = [_files[number]] if number in _files else []
        candidates += [d / f"X{number}" for d in _dirs]
    return next((path for path in candidates if owned(path)), None)


def cookie_for(display: str) -> bytes | None:
    path = file_for(display)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not is_ours(os.fstat(f.fileno())):
            return None
        return decode_cookie(f.read(4096))


def environment(display: str) -> dict[str, str]:
    """XAUTHORITY for a program launched on `display` (empty if it is not one of ours)."""
    path = file_for(display)
    return {"XAUTHORITY": str(path)} if path is not None else {}


def stale_files(directory: Path) -> list[Path]:
    """Authority files of ours whose display no server runs any more."""
    stale = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            match = _AUTH_FILE.match(path.name)
            if match and owned(path) and not _display_alive(int(match.group(1))):
                stale.append(path)
    return stale


def _display_alive(number: int) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(f"/tmp/.X11-unix/X{number}").st_mode)
    except OSError:
        return False


_xlib_installed = False


def install_xlib_auth() -> None:
    """Make python-xlib present our cookie to the displays we started (it has no per-connection
    auth argument; it asks `Xlib.support.connect.get_auth`, which we wrap once)."""
    global _xlib_installed
    with _lock:
        if _xlib_installed:
            return
        from Xlib.support import connect

        original = connect.get_auth

        def get_auth(
            sock: object, dname: str, protocol: object, host: str, dno: int
        ) -> tuple[bytes, bytes]:
            if not host:
                cookie = cookie_for(f":{dno}")
                if cookie is not None:
                    return COOKIE_NAME, cookie
            return original(sock, dname, protocol, host, dno)

        connect.get_auth = get_auth
        _xlib_installed = True
