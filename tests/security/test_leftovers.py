"""A host and driver killed together leave nothing behind for good (issue #11, finding 5).

A real `punktfunk serve --gamestream --display xvfb` streams to the Moonlight driver with a
gamepad; then the host and its display driver are SIGKILLed together. Their frame rings, pads,
Xvfb work directory and X cookie stay behind; `punktfunk doctor` lists them; the next
`punktfunk serve` on the same state dir removes them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from gs_host import PUNKTFUNK, Host, descendants, drive, start_drive
from punktfunk.vdisplay.base import DisplayBackend
from test_vdisplay_support import require_backend

SHM = Path("/dev/shm")


def _objects(host_pid: int, driver_pid: int, state: Path) -> dict[str, list[Path]]:
    """What this host and driver hold, by kind (names carry the creating pid)."""
    return {
        "ring": sorted(SHM.glob(f"pfvd-*-*-{host_pid}-*")),
        "pad": sorted(SHM.glob(f"punktfunk-*-pad*-{host_pid}-*")),
        "x-workdir": sorted(SHM.glob(f"punktfunk-xvfb-{driver_pid}-*")),
        "x-cookie": sorted((state / "xauth").glob("X*")),
    }


def _wait(what: str, ok, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_what_a_killed_host_and_driver_left_is_reported_and_swept(tmp_path: Path) -> None:
    require_backend(DisplayBackend.XVFB)
    host = Host(tmp_path, "--pin", "4321", "--display", "xvfb")
    client = None
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        flag = tmp_path / "go"
        flag.write_text("go")
        client = start_drive(
            tmp_path, "--seconds", "60", "--mode", "640x480x30", "--input-after-file", str(flag),
            "--gamepad", "4096,0,0,0,0,0,0",
        )  # fmt: skip
        _wait("a session", lambda: host.status()["sessions"])
        drivers = [p for p, cmd in descendants(host.proc.pid).items() if "vdisplay" in cmd]
        assert len(drivers) == 1, descendants(host.proc.pid)
        driver = drivers[0]

        def held() -> dict[str, list[Path]]:
            return _objects(host.proc.pid, driver, host.state)

        _wait(f"ring, pad, work dir and cookie: {held()}", lambda: all(held().values()))
        # Both at once, as an OOM kill or a crashed service unit would.
        os.kill(driver, signal.SIGKILL)
        host.proc.kill()
        host.proc.wait()
        left = held()
        _wait("the X server to exit", lambda: not descendants(os.getpid()).keys() - {client.pid})
        assert all(p.exists() for paths in left.values() for p in paths), left

        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        env.update(PUNKTFUNK_STATE_DIR=str(host.state), PUNKTFUNK_CONFIG=str(tmp_path / "none.env"))
        report = subprocess.run(
            [str(PUNKTFUNK), "doctor"], env=env, capture_output=True, text=True, timeout=60
        )
        assert report.returncode == 0, report.stderr
        for kind, paths in left.items():
            for path in paths:
                assert f"{kind} {path}" in report.stdout, report.stdout
        assert "punktfunk doctor --clean" in report.stdout

        client.kill()
        client.wait()
        host = Host(tmp_path, "--pin", "4321", "--display", "xvfb")  # the next start sweeps
        remaining = [p for paths in left.values() for p in paths if p.exists()]
        assert remaining == []
        assert "leftovers.removed" in host.log.read_text()
        assert host.stop() == 0
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        host.kill()
