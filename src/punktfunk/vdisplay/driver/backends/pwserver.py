"""A private PipeWire for the gamescope backend: a session bus, pipewire and WirePlumber.

gamescope offers its picture as a PipeWire stream; a consumer needs a PipeWire server and a
session manager to link it (WirePlumber 0.4 quits without a session bus). All three run in
`<state_dir>/pipewire` (0700, ours alone), in one process group that dies with the driver
(PDEATHSIG on the driver's ops thread, like sway) and is stopped as one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ...xserver import die_with_parent

RUNTIME_NAME = "pipewire"
PARTS = ("dbus-daemon", "pipewire", "wireplumber")


class PipeWireServerError(RuntimeError):
    """The private PipeWire could not start; the message says why."""


def missing_parts() -> list[str]:
    return [part for part in PARTS if shutil.which(part) is None]


class PipeWireServer:
    def __init__(self, state_dir: Path, timeout: float = 15.0) -> None:
        missing = missing_parts()
        if missing:
            raise PipeWireServerError(
                f"{', '.join(missing)} not installed (apt-get install dbus pipewire wireplumber)"
            )
        self.runtime = state_dir / RUNTIME_NAME
        # We hold the driver lock: whatever is here is a dead driver's.
        shutil.rmtree(self.runtime, ignore_errors=True)
        self.runtime.mkdir(mode=0o700, parents=True)
        self.log_path = self.runtime / "pipewire.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.runtime / 'bus'}",
        }
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            self._spawn(["dbus-daemon", "--session", "--nofork", "--address=" + self.env[
                "DBUS_SESSION_BUS_ADDRESS"]])  # fmt: skip
            self._wait(lambda: (self.runtime / "bus").exists(), "the session bus", timeout)
            self._spawn(["pipewire"])
            self._wait(lambda: (self.runtime / "pipewire-0").exists(), "pipewire", timeout)
            self._spawn(["wireplumber"])
        except BaseException:
            self.stop()
            raise

    @property
    def alive(self) -> bool:
        return bool(self._procs) and all(proc.poll() is None for proc in self._procs)

    def client_env(self) -> dict[str, str]:
        """What a PipeWire client (gamescope, the capture child) needs to reach this server."""
        return {"XDG_RUNTIME_DIR": str(self.runtime), "PIPEWIRE_RUNTIME_DIR": str(self.runtime)}

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def _spawn(self, argv: list[str]) -> None:
        group = self._procs[0].pid if self._procs else 0
        with open(self.log_path, "ab") as log:
            self._procs.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=self.env,
                    cwd=self.runtime,
                    process_group=group,
                    preexec_fn=die_with_parent,
                )
            )

    def _wait(self, ready: object, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            if not self.alive:
                break
            time.sleep(0.05)
        raise PipeWireServerError(f"{what} did not start: {self.log_tail() or 'no output'}")

    def stop(self) -> None:
        """Stop the group (TERM, then KILL after 3 s) and remove its runtime dir."""
        if self._procs:
            group = self._procs[0].pid
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
                if self._reaped(3.0):
                    break
            self._procs = []
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _reaped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(proc.poll() is not None for proc in self._procs):
                return True
            time.sleep(0.05)
        return False
