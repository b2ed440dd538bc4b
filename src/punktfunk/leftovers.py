"""What a killed host or driver leaves behind, found and removed by whoever starts next.

A host and driver killed together (SIGKILL, OOM, power cut of the service) never unlink their
frame rings (~11 MB per monitor in /dev/shm), pads, X server work directories (the Xvfb
framebuffer, ~130 MB) or X cookies. Each is recognised as ours by its name pattern, its owner
(our uid, checked with lstat: a symlink or another user's file is never touched) and the pid in
its name being gone; objects of live processes are left alone. `punktfunk serve` and the driver
sweep at start; `punktfunk doctor` lists what it finds (and removes it with --clean).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .input.pads import SHM_DIR, stale_pads
from .log import event
from .ownfiles import unlink_own
from .vdisplay import xauth
from .vdisplay.ring import stale_rings
from .vdisplay.xserver import stale_workdirs

_log = logging.getLogger("punktfunk.leftovers")


@dataclass(frozen=True)
class Leftover:
    kind: str  # ring, pad, x-workdir, x-cookie
    path: Path
    size: int  # bytes


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        total = 0
        for root, _, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
        return total
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def find(state_dir: Path, shm_dir: Path = SHM_DIR) -> list[Leftover]:
    """Everything of ours a dead host or driver left (live processes' objects are not)."""
    found: list[tuple[str, Path]] = [("ring", p) for p in stale_rings(shm_dir)]
    found += [("pad", p) for p in stale_pads(shm_dir)]
    for root in dict.fromkeys((shm_dir, Path(tempfile.gettempdir()))):
        found += [("x-workdir", p) for p in stale_workdirs(root)]
    found += [("x-cookie", p) for p in xauth.stale_files(xauth.auth_dir(state_dir))]
    return [Leftover(kind, path, _size(path)) for kind, path in found]


def sweep(state_dir: Path, who: str, shm_dir: Path = SHM_DIR) -> list[Leftover]:
    """Remove `find`'s leftovers, logging each; returns what was removed."""
    removed = []
    for item in find(state_dir, shm_dir):
        if item.kind == "x-workdir":
            shutil.rmtree(item.path, ignore_errors=True)
            gone = not item.path.exists()
        else:
            gone = unlink_own(item.path)
        if gone:
            removed.append(item)
            event(_log, "leftovers.removed", kind=item.kind, path=item.path, bytes=item.size,
                  by=who)  # fmt: skip
    return removed
