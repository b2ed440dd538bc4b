"""Give freed heap back to the kernel after a session ends.

A session allocates frame-sized buffers (capture, colour conversion, encoder, FEC) on several
threads; glibc keeps what they free in per-thread arenas, and a long-running host that
serves session after session grows its RSS by about a megabyte each without ever using that
memory again (issue #11). `malloc_trim(0)` hands the free pages back. Elsewhere (musl, other
platforms) there is nothing to do.

Most of that growth is fragmentation across glibc's per-thread arenas (up to 8 per core):
each session's threads land in whichever arena is free and leave a few live blocks pinning
its pages. `limit_arenas()` caps their number at host start (measured: 30 sessions grew RSS
by ~30 MB with the default, ~4 MB with 2-4 arenas); threads share them through their
per-thread caches, so the hot paths rarely wait for an arena's lock.

A session's last references go only when its teardown thread has finished and the protocol
has dropped it, so the trim runs a moment after the call (`trim_heap_soon`), once for any
number of sessions ending together.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import threading

from ..log import event

_log = logging.getLogger("punktfunk.session.memory")

TRIM_DELAY_S = 1.0
MAX_ARENAS = 4
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
_lock = threading.Lock()
_scheduled = False


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_arenas(count: int = MAX_ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before the host starts its threads); False elsewhere
    or when the operator chose a cap (MALLOC_ARENA_MAX)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, count))


@functools.cache
def _malloc_trim():
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> None:
    """Return free heap pages to the kernel (glibc only; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is None:
        return
    try:
        trim(0)
    except OSError as exc:  # never let housekeeping end a teardown
        event(_log, "memory.trim_failed", logging.DEBUG, reason=repr(exc))


def trim_heap_soon(delay_s: float = TRIM_DELAY_S) -> None:
    """Collect cycles and trim the heap `delay_s` from now (coalesced; any thread)."""
    global _scheduled
    with _lock:
        if _scheduled:
            return
        _scheduled = True
    timer = threading.Timer(delay_s, _collect_and_trim)
    timer.name, timer.daemon = "pf-heap-trim", True
    timer.start()


def _collect_and_trim() -> None:
    global _scheduled
    with _lock:
        _scheduled = False
    gc.collect()  # an ended session caught in a reference cycle frees its buffers now
    trim_heap()
