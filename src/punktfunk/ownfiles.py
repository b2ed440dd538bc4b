"""Files in shared directories (/dev/shm, /tmp) that other local users must not steer.

Another user can plant a symlink or a file of their own at any name they can guess in a
sticky world-writable directory. So we create only with O_CREAT|O_EXCL|O_NOFOLLOW (a planted
name makes creation fail instead of writing through it), give names an unguessable part, open
existing objects with O_NOFOLLOW and check that they are regular files of our own user, and
remove a name only after `lstat` shows it is ours.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class NotOursError(OSError):
    """The name exists but is a symlink, not a regular file, or another user's."""


def token() -> str:
    """The unguessable part of a name (64 bits)."""
    return secrets.token_hex(8)


def create_exclusive(path: Path, mode: int = 0o600) -> int:
    """A new file at `path` opened read-write (its fd); FileExistsError if the name is taken,
    whatever it is (a symlink is never followed)."""
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what the caller asked for
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_ours(st: os.stat_result, kind: int = stat.S_IFREG) -> bool:
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()


def open_own(path: Path, flags: int = os.O_RDWR) -> int:
    """Open an existing regular file of our own user; NotOursError for anything else
    (a symlink fails with ELOOP before it is followed)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not is_ours(st):
            raise NotOursError(f"{path} is not a regular file of uid {os.geteuid()}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def owned(path: Path, kind: int = stat.S_IFREG) -> bool:
    """Whether `path` itself (never a symlink's target) is a `kind` of our own user."""
    try:
        return is_ours(os.lstat(path), kind)
    except OSError:
        return False


def unlink_own(path: Path) -> bool:
    """Remove `path` if it is a regular file of ours; False if it is absent or not ours."""
    if not owned(path):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def private_dir(path: Path) -> Path:
    """`path` as a directory of ours with mode 0700 (created if missing); NotOursError if
    something else is there."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = os.lstat(path)
    if not is_ours(st, stat.S_IFDIR):
        raise NotOursError(f"{path} is not a directory of uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not; a reused pid reads as alive: we then keep,
    never remove)."""
    if pid <= 0:
        return False
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace `path` with `data` (a reader sees the old file or the new one),
    through a fresh unguessable temp name beside it, created exclusively with `mode`."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = create_exclusive(tmp, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
