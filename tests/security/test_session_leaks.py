"""Issue #11 finding 3: ended sessions leave nothing behind in the host process.

One real `punktfunk serve` (pattern display) serves many short sessions, native and
GameStream (a real Moonlight client), one after another. After a warm-up (first-use
imports, encoder probes, allocator arenas), the host's threads, open fds and /dev/shm
entries must come back to where they were, and its RSS must level off: once, every ended
native session kept one libavutil thread and 7-9 MB, and GameStream grew without bound.

PF_TEST_LEAK_SESSIONS sets how many sessions of each protocol (CI default 15; the issue's
acceptance run is 100).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from gs_host import Host, descendants, drive
from test_native_stream import PIN, NativeHost

SESSIONS = int(os.environ.get("PF_TEST_LEAK_SESSIONS", "15"))
WARMUP = 4
RSS_SLACK_MB = 40.0  # the old leaks: 15 sessions grew 60 MB (GameStream) and 105+ (native)
OURS: set[int] = set()  # the host's process tree


_XSERVER_DIR = re.compile(r"punktfunk-(?:xvfb|xorg)-(\d+)-")


def shm_entries() -> set[str]:
    """punktfunk's /dev/shm entries, less X server work dirs of processes other than ours
    (the pattern display starts no X server; a neighbouring test run may)."""
    names = {p.name for p in Path("/dev/shm").iterdir() if "punktfunk" in p.name}
    return {n for n in names if not (m := _XSERVER_DIR.match(n)) or int(m[1]) in OURS}


def measure(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
    }


def settle(pid: int, baseline: dict[str, float], timeout: float = 20.0) -> dict[str, float]:
    """The host tears a session down on threads of its own: wait for threads/fds to return."""
    deadline = time.monotonic() + timeout
    while True:
        now = measure(pid)
        if now["threads"] <= baseline["threads"] and now["fds"] <= baseline["fds"]:
            return now
        if time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def check(name: str, pid: int, run_one, shm_before: set[str]) -> None:
    OURS.update({pid, *descendants(pid)})
    for _ in range(WARMUP):
        run_one()
    baseline = settle(pid, {"threads": 0, "fds": 0}, timeout=3)
    baseline = settle(pid, measure(pid), timeout=3)
    for _ in range(SESSIONS):
        run_one()
    after = settle(pid, baseline)
    grew = {k: round(after[k] - baseline[k], 1) for k in after}
    print(f"{name}: {SESSIONS} sessions, baseline {baseline}, after {after}, grew {grew}")
    assert after["threads"] <= baseline["threads"], (name, baseline, after)
    assert after["fds"] <= baseline["fds"], (name, baseline, after)
    # RSS: the budget for 100 sessions. glibc's arenas keep some of what the first
    # sessions freed (it levels off); a leak of the old size (~4 MB a session) blows it.
    assert grew["rss_mb"] <= RSS_SLACK_MB, (name, baseline, after)
    assert shm_entries() <= shm_before, shm_entries() - shm_before


def test_native_sessions_leave_nothing_behind(tmp_path: Path) -> None:
    shm_before = shm_entries()
    host = NativeHost(tmp_path)
    try:
        # Paired once; every later session is a short stream of a small mode.
        code, result = host.probe("--pin", PIN, "--mode", "640x480@30", "--seconds", "0.5")
        assert code == 0, result

        def one() -> None:
            code, result = host.probe("--mode", "640x480@30", "--seconds", "0.4")
            assert code == 0 and result["frames_decoded"] > 0, result

        check("native", host.proc.pid, one, shm_before)
    finally:
        if host.proc.poll() is None:
            host.stop()


def test_gamestream_sessions_leave_nothing_behind(tmp_path: Path) -> None:
    shm_before = shm_entries()
    host = Host(tmp_path, "--pin", PIN, "--display", "pattern")
    try:
        drive(tmp_path, "--pin", PIN, "--pair-only")

        def one() -> None:
            result = drive(tmp_path, "--mode", "640x480x30", "--seconds", "1.5")
            assert result["decoded"] > 0, {k: v for k, v in result.items() if k != "counters"}

        check("gamestream", host.proc.pid, one, shm_before)
    finally:
        if host.proc.poll() is None:
            host.stop()
