"""One private headless sway per driver: its runtime dir, config, start, outputs and stop.

sway runs with the headless backend (no GPU, seat or VT needed), pixman rendering where no
render node exists, no libinput devices and no start-up output; each client's monitor is an
output made with `create_output` and set to the client's exact mode. Its runtime dir
(`<state_dir>/wayland`, 0700) holds the Wayland socket and the IPC socket; the host, same user
and state dir, finds both there (`runtime_dir`, `environment`).

sway refuses to run as root (it could not drop privileges), so as root it runs in a user
namespace where our uid is mapped to an unprivileged one: still our files and sockets outside.
wlroots 0.15 (sway 1.7) cannot disable or destroy a headless output: a removed monitor's
output is parked (windows closed, tiny mode) and reused by the next ADD, so ids, modes and
workspaces still look new to the client; `output <name> unplug` is used where sway has it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..vdisplay.base import DisplayMode
from ..vdisplay.xserver import die_with_parent
from .ipc import SwayIpc, SwayIpcError

RUNTIME_NAME = "wayland"
_SUN_PATH_MAX = 107
PARK_MODE = DisplayMode(640, 480, 1)

# Xwayland starts with the first X client. It has no auth cookie, but admits only the user it
# runs as (its access list is localuser:<uid>; tests/test_gamescope.py checks it), which is
# what the X backends' cookies achieve.
CONFIG = """\
xwayland enable
default_border none
default_floating_border none
focus_follows_mouse no
mouse_warping none
seat * hide_cursor 0
"""


class SwayError(RuntimeError):
    """sway could not be started or refused an output change; the message says why."""


def sway_binary() -> str | None:
    return shutil.which("sway")


def runtime_dir(state_dir: Path) -> Path:
    return state_dir / RUNTIME_NAME


def find_sockets(runtime: Path) -> tuple[Path, Path] | None:
    """(Wayland socket, IPC socket) of the sway running in `runtime`, if both exist."""
    wayland = sorted(p for p in glob.glob(str(runtime / "wayland-*")) if not p.endswith(".lock"))
    ipc = sorted(glob.glob(str(runtime / "sway-ipc.*.sock")))
    if not wayland or not ipc:
        return None
    return Path(wayland[0]), Path(ipc[0])


def environment(state_dir: Path) -> dict[str, str]:
    """What a program launched on this sway needs to find it (empty if it does not run)."""
    runtime = runtime_dir(state_dir)
    sockets = find_sockets(runtime)
    if sockets is None:
        return {}
    # No SWAYSOCK: the host's own probes find the IPC socket here; apps need not command sway.
    env = {
        "XDG_RUNTIME_DIR": str(runtime),
        "WAYLAND_DISPLAY": sockets[0].name,
        "XDG_SESSION_TYPE": "wayland",
    }
    display = xwayland_display(sockets[1])
    if display is not None:
        env["DISPLAY"] = display
    return env


def xwayland_display(ipc_socket: Path) -> str | None:
    """The X display of the sway owning `ipc_socket` (named sway-ipc.<uid>.<pid>.sock): wlroots
    reserves it at start in /tmp/.X<n>-lock, which holds sway's pid."""
    try:
        pid = int(ipc_socket.name.split(".")[2])
    except (IndexError, ValueError):
        return None
    for lock in glob.glob("/tmp/.X*-lock"):
        with contextlib.suppress(OSError, ValueError):
            if int(Path(lock).read_text().strip(" \n\0")) == pid:
                return ":" + lock[len("/tmp/.X") : -len("-lock")]
    return None


def workspace_name(monitor_id: int) -> str:
    return f"pf-{monitor_id}"


def place_app(state_dir: Path, pid: int, monitor_id: int) -> None:
    """Windows of process `pid` open on monitor `monitor_id`'s workspace, whatever has focus
    (a rule made right after the launch, long before the app maps its first window)."""
    sockets = find_sockets(runtime_dir(state_dir))
    if sockets is None:
        raise SwayError("no sway runs for this state dir")
    ipc = SwayIpc(sockets[1], timeout=2.0)
    try:
        ipc.command(f"assign [pid={int(pid)}] workspace {workspace_name(monitor_id)}")
    finally:
        ipc.close()


def _has_render_node() -> bool:
    return bool(glob.glob("/dev/dri/renderD*"))


@dataclass
class SwayOutput:
    name: str
    workspace: str


class Sway:
    """A running headless sway; create/park outputs through its IPC (call from one thread)."""

    def __init__(
        self,
        state_dir: Path,
        renderer: str | None = None,
        timeout: float = 15.0,
        seats: int = 8,
    ) -> None:
        """`seats`: monitor ids 0..seats-1 get a seat of their own (the driver's max_monitors)."""
        binary = sway_binary()
        if binary is None:
            raise SwayError("sway is not installed (apt-get install sway)")
        self.runtime = runtime_dir(state_dir)
        uid = 1000 if os.geteuid() == 0 else os.getuid()  # as sway sees itself
        longest = self.runtime / f"sway-ipc.{uid}.4194304.sock"  # pid_max is at most 2^22
        if len(os.fsencode(longest)) > _SUN_PATH_MAX:
            raise SwayError(
                f"{self.runtime} is too long for a Unix socket; use a shorter state_dir"
            )
        # We hold the driver lock: whatever is here is a dead driver's sway's.
        shutil.rmtree(self.runtime, ignore_errors=True)
        self.runtime.mkdir(mode=0o700, parents=True)
        config = self.runtime / "sway.conf"
        config.write_text(CONFIG)
        self.log_path = self.runtime / "sway.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "WLR_BACKENDS": "headless",
            "WLR_HEADLESS_OUTPUTS": "0",
            "WLR_LIBINPUT_NO_DEVICES": "1",
            "WLR_RENDERER": renderer or ("gles2" if _has_render_node() else "pixman"),
        }
        argv = [binary, "-c", str(config)]
        if os.geteuid() == 0:
            argv = ["unshare", "--user", "--map-user=1000", "--map-group=1000", *argv]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.runtime,
                preexec_fn=die_with_parent,
            )
        self.ipc = self._connect(timeout)
        # A seat per monitor (its own keyboard focus and cursor for the client's input), all
        # made now, before any device exists: a later seat command would move every virtual
        # device off its seat. sway 1.7 makes no seat from its config file, only over IPC.
        try:
            self.ipc.command(
                "; ".join(f"seat {workspace_name(i)} fallback false" for i in range(seats))
            )
        except SwayIpcError as exc:
            self.stop()
            raise SwayError(f"sway refused the seats: {exc}") from None
        self.wayland_socket = find_sockets(self.runtime)[0]  # type: ignore[index]
        self._parked: list[str] = []
        self._parked_count = 0

    def _connect(self, timeout: float) -> SwayIpc:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            sockets = find_sockets(self.runtime)
            if sockets is not None:
                with contextlib.suppress(SwayIpcError):
                    return SwayIpc(sockets[1])
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise SwayError(f"sway did not start: {tail or 'no IPC socket in time'}")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _names(self) -> set[str]:
        return {o["name"] for o in self.ipc.outputs()}

    def create_output(self, monitor_id: int, mode: DisplayMode) -> SwayOutput:
        """An output at exactly `mode` with workspace `pf-<monitor_id>` on it, focused."""
        if self._parked:
            name = self._parked.pop(0)
        else:
            before = self._names()
            self.ipc.command("create_output")
            new = self._names() - before
            if len(new) != 1:
                raise SwayError(f"create_output made {sorted(new) or 'no output'}")
            name = new.pop()
        workspace = workspace_name(monitor_id)
        try:
            self.set_mode(name, mode)
            self.ipc.command(
                f"workspace {workspace} output {name}; focus output {name}; workspace {workspace}"
            )
        except (SwayError, SwayIpcError):
            self._parked.append(name)
            raise
        return SwayOutput(name, workspace)

    def set_mode(self, name: str, mode: DisplayMode) -> None:
        self.ipc.command(
            f"output {name} mode --custom {mode.width}x{mode.height}@{mode.refresh_hz}Hz"
        )
        current = self.mode(name)
        if current != (mode.width, mode.height):
            raise SwayError(f"{name} is at {current}, not {mode} after the mode change")

    def mode(self, name: str) -> tuple[int, int] | None:
        output = self.ipc.output(name)
        if output is None or not output.get("active"):
            return None
        current = output.get("current_mode") or {}
        return int(current.get("width", 0)), int(current.get("height", 0))

    def remove_output(self, output: SwayOutput) -> None:
        """Close the windows on the output's workspace, then unplug or park the output."""
        with contextlib.suppress(SwayIpcError):
            self.ipc.command(f"[workspace=^{output.workspace}$] kill")
        # Free the name at once (a window that ignores the close keeps its workspace alive):
        # the next monitor with this id gets a new workspace on its own output.
        self._parked_count += 1
        with contextlib.suppress(SwayIpcError):
            self.ipc.command(f"rename workspace {output.workspace} to parked-{self._parked_count}")
        try:
            self.ipc.command(f"output {output.name} unplug")
            return
        except SwayIpcError:
            pass  # sway 1.7: headless outputs stay; park it for the next ADD
        with contextlib.suppress(SwayError, SwayIpcError):
            self.set_mode(output.name, PARK_MODE)
        self._parked.append(output.name)
        self._parked.sort(key=lambda n: (len(n), n))

    def stop(self, timeout: float = 5.0) -> None:
        ipc = getattr(self, "ipc", None)
        if ipc is not None:
            ipc.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)
