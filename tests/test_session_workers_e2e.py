"""Issue #14: each session's media in its own worker process, and failure isolation.

One real `punktfunk serve --session-workers on` (pattern display, native + GameStream) serves
two native probes and one real Moonlight client at once, each through its own worker. SIGKILL
on one native session's worker ends that session only, with the reason on the wire and in the
log; the other two keep decoding; nothing of the dead session (its process, its ring in
/dev/shm, the host's fds and threads for it) remains. The same for the Moonlight session's
worker: Moonlight is told the stream ended, the native one goes on. A host killed outright
takes its workers with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gs_host import Host, descendants, finish_drive, start_drive
from test_native_stream import PIN, free_udp_port
from test_native_stream import NativeHost as _ProbeRunner

SECONDS = 10
KILL_AFTER_S = 3
MODE_NATIVE, MODE_GS = "640x480@30", "640x480x30"


class WorkersHost(Host):
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, free_udp_port()
        super().__init__(
            tmp, "--pin", PIN, "--display", "pattern", "--native-port", str(self.port),
            "--session-workers", "on",
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "host.ready" not in self.text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.2)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start_probe(self, *args: str, client: str):
        return _ProbeRunner.start_probe(self, *args, client=client)  # type: ignore[arg-type]

    def workers(self) -> dict[int, str]:
        return {
            pid: cmd for pid, cmd in descendants(self.proc.pid).items() if "session.worker" in cmd
        }

    def worker_of(self, prefix: str) -> int:
        """The live worker whose session's name starts with `prefix` (from the host's log)."""
        live = self.workers()
        spawned = re.findall(r"worker\.spawned session=(\S+) pid=(\d+)", self.text())
        return next(
            int(pid) for name, pid in spawned if name.startswith(prefix) and int(pid) in live
        )

    def counts(self) -> dict[str, int]:
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        threads = next(ln for ln in status.splitlines() if ln.startswith("Threads:"))
        return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(threads.split()[1])}

    def thread_names(self) -> list[str]:
        tasks = Path(f"/proc/{self.proc.pid}/task")
        return sorted((t / "comm").read_text().strip() for t in tasks.iterdir())


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersHost]:
    h = WorkersHost(tmp_path_factory.mktemp("workers"))
    yield h
    h.kill()


def _probe_result(proc) -> tuple[int, dict]:
    out, err = proc.communicate(timeout=SECONDS + 90)
    lines = out.strip().splitlines()
    assert lines, err[-3000:]
    return proc.returncode, json.loads(lines[-1])


def _settle(host: WorkersHost, baseline: dict[str, int], timeout: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = host.counts()
        if all(now[k] <= baseline[k] for k in baseline) or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


def test_a_killed_worker_ends_only_its_own_session(host: WorkersHost) -> None:
    for client in ("a", "b"):  # paired once, before anything is measured
        code, result = _probe_result(
            host.start_probe("--pin", PIN, "--mode", MODE_NATIVE, "--seconds", "0.5", client=client)
        )
        assert code == 0, result
    # Paired, and one short stream first: GameStream's first session starts a lasting thread.
    warm = finish_drive(
        start_drive(host.tmp / "ml", "--pin", PIN, "--mode", MODE_GS, "--seconds", "1")
    )
    assert warm["decoded"] > 0, warm
    deadline = time.monotonic() + 20
    while host.workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    baseline = _settle(host, host.counts(), timeout=3)
    names = host.thread_names()
    shm_before = set(os.listdir("/dev/shm"))

    probes = {
        c: host.start_probe("--mode", MODE_NATIVE, "--seconds", str(SECONDS), client=c)
        for c in ("a", "b")
    }
    moonlight = start_drive(host.tmp / "ml", "--mode", MODE_GS, "--seconds", str(SECONDS))
    deadline = time.monotonic() + 30
    while len(host.workers()) < 3:  # the Moonlight session's media runs in a worker too
        assert time.monotonic() < deadline, host.text()[-3000:]
        time.sleep(0.1)
    time.sleep(KILL_AFTER_S)
    # Three sessions' status is far longer than one read: `punktfunk status` reads it whole.
    from punktfunk.service.admin import request

    status = json.loads(request(host.state, "status"))
    assert len(status["native"]["sessions"]) == 2 and len(status["sessions"]) == 1, status
    victim = host.worker_of("pf2-")
    rings = [n for n in os.listdir("/dev/shm") if f"-{victim}-" in n]
    assert rings, "the worker should own its monitor's ring"
    os.kill(victim, signal.SIGKILL)

    results = {c: _probe_result(p) for c, p in probes.items()}
    ml = finish_drive(moonlight, timeout=SECONDS + 90)
    dead = [c for c, (code, r) in results.items() if code != 0]
    assert len(dead) == 1, results
    code, killed = results[dead[0]]
    assert killed["frames_decoded"] > 0, killed
    assert "media worker" in killed["closed"]["reason"], killed
    assert "signal 9" in killed["closed"]["reason"], killed
    (survivor,) = [r for c, (code, r) in results.items() if c not in dead]
    assert survivor["decoded_fraction"] >= 0.98, survivor
    assert survivor["seconds"] == SECONDS and survivor["closed"] is None, survivor
    assert ml["decoded"] > 0 and ml["decoded_fraction"] >= 0.98, {
        k: v for k, v in ml.items() if k not in ("counters", "idr_numbers")
    }
    # Moonlight's audio comes from its worker too (capture, Opus, FEC; the tone where no
    # sound server runs), not from a host thread.
    assert ml["audio_chunks"] > 50 and abs(ml["tone_hz"] - 440) < 5, ml["tone_hz"]
    log = host.text()
    assert "worker.exit" in log and "expected=False" in log
    assert "killed by signal 9" in log.split("session.end", 1)[1]

    # Nothing of the dead session remains once every session ended.
    assert not Path(f"/proc/{victim}").exists()
    assert not [n for n in os.listdir("/dev/shm") if f"-{victim}-" in n]
    deadline = time.monotonic() + 20
    while host.workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host.workers() == {}
    after = _settle(host, baseline)
    assert after["fds"] <= baseline["fds"] and after["threads"] <= baseline["threads"], (
        baseline,
        after,
        names,
        host.thread_names(),
    )
    leftover = [n for n in set(os.listdir("/dev/shm")) - shm_before if f"-{victim}-" in n]
    assert not leftover, leftover


def test_a_killed_moonlight_worker_ends_that_stream_and_tells_moonlight(host: WorkersHost) -> None:
    probe = host.start_probe("--pin", PIN, "--mode", MODE_NATIVE, "--seconds", str(SECONDS),
                             client="a")  # fmt: skip
    moonlight = start_drive(host.tmp / "ml", "--pin", PIN, "--mode", MODE_GS, "--seconds",
                            str(SECONDS), "--until-terminated")  # fmt: skip
    deadline = time.monotonic() + 30
    while len(host.workers()) < 2:
        assert time.monotonic() < deadline, host.text()[-3000:]
        time.sleep(0.1)
    time.sleep(KILL_AFTER_S)
    # Control reaches the workers (FEC changes, keyframe asks) and each says how long it took.
    status = host.status()
    stages = [s["stages"] for s in [*status["native"]["sessions"], *status["sessions"]]]
    assert all(st.get("control_forward", {}).get("p50", 0) > 0 for st in stages), stages
    # The Moonlight session's audio packets are counted by its worker, which sends them.
    (gs_status,) = status["sessions"]
    assert gs_status["counters"].get("audio_packets", 0) > 50, gs_status["counters"]
    victim = host.worker_of("gs-")
    os.kill(victim, signal.SIGKILL)
    ml = finish_drive(moonlight, timeout=SECONDS + 90)
    code, survivor = _probe_result(probe)
    assert ml["decoded"] > 0 and ml["terminated"], {
        k: v for k, v in ml.items() if k not in ("counters", "idr_numbers")
    }
    assert code == 0 and survivor["decoded_fraction"] >= 0.98, survivor
    log = host.text()
    ended = re.findall(r"session\.end session=gs-\S+ reason=\"([^\"]*)\"", log)
    assert ended and "media worker" in ended[-1] and "signal 9" in ended[-1], log[-3000:]
    assert not [n for n in os.listdir("/dev/shm") if f"-{victim}-" in n]


def test_reconfigure_hands_the_stream_to_a_new_worker(host: WorkersHost) -> None:
    from punktfunk.native.wire.messages import Mode
    from test_native_stream import _in_process_client, _wait_decoding

    receiver, _ = _in_process_client(host, "reconf", "640x480@30")  # type: ignore[arg-type]
    runner = threading.Thread(target=receiver.run, args=(8.0,))
    runner.start()
    _wait_decoding(receiver, runner, "640x480", 10)
    receiver.request_mode(Mode(800, 600, 30))  # the client's window was resized
    runner.join(timeout=60)
    report = receiver.report(8.0)
    assert report["closed"] is None or report["closed"]["code"] == 0, report
    assert report["stream_configs"] == [{"epoch": 1, "mode": "800x600@30"}], report
    assert report["sizes"].get("800x600", 0) >= 20, report["sizes"]
    assert report["decode_errors"] == 0 and report["decoded_fraction"] >= 0.95, report
    log = host.text()
    assert "session.reconfigured" in log and "epoch=1" in log
    assert len(re.findall(r"worker\.spawned session=pf2-reconf-", log)) == 2


def test_workers_do_not_outlive_a_killed_host(host: WorkersHost) -> None:
    probe = host.start_probe("--mode", MODE_NATIVE, "--seconds", "30", client="a")
    deadline = time.monotonic() + 30
    while not host.workers():
        assert time.monotonic() < deadline, host.text()[-3000:]
        time.sleep(0.1)
    workers = list(host.workers())
    host.kill()  # SIGKILL: no teardown runs in the host
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    probe.kill()
    probe.communicate(timeout=10)
