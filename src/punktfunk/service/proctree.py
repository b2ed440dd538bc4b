"""Everything a supervised host started, and ending all of it.

`serve` starts the display driver (and the driver its X servers) and the apps each in their own
session, so a process group does not hold them all. The supervisor therefore becomes a child
subreaper (PR_SET_CHILD_SUBREAPER): whatever loses its parent below it is re-parented to it
instead of to init, and "everything serve started" is exactly the supervisor's descendants.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> bool:
    return _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def stop_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when `parent` dies (even by SIGKILL), so a killed
    supervisor does not leave its host running unsupervised. Only for a single-threaded
    parent: the signal follows the forking thread."""

    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state letter) of every process, from /proc/<pid>/stat (works without
    the kernel's optional /proc/<pid>/task/<tid>/children)."""
    table: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            table[int(stat.parent.name)] = (int(fields[1]), fields[0])
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
    return table


def descendants(pid: int, spare: frozenset[int] = frozenset()) -> list[int]:
    """Every live (non-zombie) descendant of `pid`, parents before children, leaving out the
    `spare` processes and what runs below them."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = list(children.get(pid, ()))
    while frontier:
        child = frontier.pop(0)
        if child in spare:
            continue
        if table[child][1] not in ("Z", "X"):
            found.append(child)
        frontier += children.get(child, ())
    return found


def reap() -> list[tuple[int, int]]:
    """Collect every exited child (ours and re-parented orphans): (pid, wait status) each."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def end_descendants(grace_s: float, on_reap=None, spare: frozenset[int] = frozenset()) -> list[int]:
    """SIGTERM every descendant of this process (but `spare`), SIGKILL what is left after
    `grace_s`, and wait until none is left (re-parented grandchildren included). Returns the
    pids that needed SIGKILL. `on_reap(pid, status)` hears each child collected on the way."""
    me = os.getpid()
    signal_all(descendants(me, spare), signal.SIGTERM)
    killed: list[int] = []
    deadline = time.monotonic() + grace_s
    hard_deadline = deadline + 10.0
    while True:
        for pid, status in reap():
            if on_reap is not None:
                on_reap(pid, status)
        left = descendants(me, spare)
        if not left:
            return killed
        now = time.monotonic()
        if now >= deadline:
            killed += [p for p in left if p not in killed]
            signal_all(left, signal.SIGKILL)
            if now >= hard_deadline:  # unkillable (D state): give up rather than hang
                return killed
        time.sleep(0.05)


def describe(status: int) -> str:
    """A wait status as a cause a person reads: "exit code 1", "signal SIGKILL"."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"signal {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    return f"exit code {os.waitstatus_to_exitcode(status)}"
