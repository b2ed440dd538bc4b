"""gamescope: each monitor is a nested gamescope at the client's exact mode, read from its
PipeWire stream.

gamescope 3.11 (Debian 12) has no headless backend: it runs nested, in a window of a parent X
server, here a private Xvfb of the mode's size (its cookie as for the xvfb backend), composited
on the GPU with Vulkan. It needs a Vulkan device with VK_EXT_physical_device_drm (any GPU
driver; not lavapipe, the CPU one), and says so when it has none: that line is the ADD's
error. Games run on gamescope's own Xwayland (the monitor's `display_name`); gamescope offers
the composited picture as a PipeWire stream, read like the portal's (`capture/pipewire.py`)
through the driver's private PipeWire (`pwserver.py`). gamescope ends when its command does, so
its command is a placeholder that lives as long as the monitor (the host launches apps on the
Xwayland display); the placeholder's environment names that display.

gamescope's Xwayland has no auth cookie; Xwayland itself admits only the user it runs as (its
host access list is `localuser:<that user>`; checked against wlroots 0.15's Xwayland, which
gamescope 3.11 uses, in tests/test_gamescope.py), which is this driver's user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from ....capture.base import CaptureError
from ....capture.pipewire import PipeWireStream, as_bgra
from ....log import event
from ....proto.frame import PixelFormat
from ...base import DisplayBackend, DisplayMode, gamescope_binary
from ...xserver import XServer, XServerError, die_with_parent, make_workdir, start_server
from . import BackendError
from .pwserver import PipeWireServer, PipeWireServerError

_log = logging.getLogger("punktfunk.vdisplay.driver")
_NODE_LINE = re.compile(rb"stream available on node ID: (\d+)")
_START_TIMEOUT = 20.0


def gamescope_argv(binary: str, mode: DisplayMode) -> list[str]:
    """Nested at the exact mode: the game's size and the output's are the client's (no
    scaling), the window borderless on a parent screen of that size. The refresh is given
    focused and unfocused (`-o`): Xvfb reports 0 Hz, which gamescope 3.11 would divide by when
    its window has no focus."""
    w, h, hz = str(mode.width), str(mode.height), str(mode.refresh_hz)
    return [binary, "-w", w, "-h", h, "-W", w, "-H", h, "-r", hz, "-o", hz, "-b",
            "--", "sleep", "infinity"]  # fmt: skip


def start_failure(log: bytes) -> str:
    """gamescope's reason for not starting, from its log: the Vulkan lines where Vulkan is
    what failed (they say which device and which extension it lacks)."""
    lines = [line.strip() for line in log.decode(errors="replace").splitlines() if line.strip()]
    vulkan = [line for line in lines if line.lower().startswith("vulkan:") or "Vulkan" in line]
    picked = vulkan[-3:] if vulkan else lines[-3:]
    return " | ".join(reversed(picked)) or "no output"  # the conclusion first


def _children_of(pid: int) -> list[int]:
    """The live children of `pid`, from /proc."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                children += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    if children:
        return children
    for entry in os.listdir("/proc"):  # kernels without the `children` file
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry))
    return children


def _environ_of(pid: int) -> dict[str, str]:
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    return {}


def xwayland_display(gamescope_pid: int) -> str:
    """gamescope's Xwayland display, from its command's environment ("" until it runs). Only
    the command gets GAMESCOPE_WAYLAND_DISPLAY; Xwayland, also a child of gamescope (a
    subreaper), still has the parent screen's DISPLAY."""
    for child in _children_of(gamescope_pid):
        env = _environ_of(child)
        if "GAMESCOPE_WAYLAND_DISPLAY" in env:
            return env.get("DISPLAY", "")
    return ""


class Gamescope:
    """One running nested gamescope on its own parent Xvfb."""

    def __init__(self, mode: DisplayMode, pipewire: PipeWireServer, auth_dir: Path | None) -> None:
        binary = gamescope_binary()
        if binary is None:
            raise BackendError("gamescope is not installed (apt-get install gamescope)")
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise BackendError("gamescope runs nested in Xvfb, which is not installed")
        self.workdir = make_workdir("gamescope")
        screen = f"{mode.width}x{mode.height}x24"
        try:
            self.parent: XServer = start_server(
                "Xvfb",
                lambda n: [xvfb, f":{n}", "-screen", "0", screen, "-nolisten", "tcp", "-noreset"],
                self.workdir,
                auth_dir=auth_dir,
            )
        except XServerError as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise BackendError(f"gamescope's parent screen: {exc}") from None
        self.log_path = self.workdir / "gamescope.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "DISPLAY": self.parent.display,
            "XAUTHORITY": str(self.parent.auth_path),
            "SDL_VIDEODRIVER": "x11",
            **pipewire.client_env(),
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                gamescope_argv(binary, mode),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.workdir,
                start_new_session=True,  # gamescope, its Xwayland and command: one group
                preexec_fn=die_with_parent,
            )
        try:
            self.node_id, self.display = self._wait_ready(_START_TIMEOUT)
        except BackendError as exc:
            self.stop()
            raise BackendError(f"{mode}: {exc}") from None

    def _wait_ready(self, timeout: float) -> tuple[int, str]:
        """gamescope's PipeWire node (from its log) and its Xwayland display (from its
        command's environment), once both exist."""
        deadline = time.monotonic() + timeout
        node: int | None = None
        display = ""
        while time.monotonic() < deadline:
            log = self.log_path.read_bytes()
            if node is None and (match := _NODE_LINE.search(log)):
                node = int(match.group(1))
            display = display or xwayland_display(self.process.pid)
            if node is not None and display:
                return node, display
            if self.process.poll() is not None:
                status = self.process.returncode
                raise BackendError(f"exited with status {status}: {start_failure(log)}")
            time.sleep(0.05)
        log = self.log_path.read_bytes()
        if display and b"failed to setup PipeWire" in log:
            raise BackendError("it could not reach PipeWire: " + start_failure(log))
        raise BackendError(f"not ready in {timeout:.0f} s: {start_failure(log)}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return start_failure(self.log_path.read_bytes())
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, sig)
                try:
                    self.process.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError):  # its Xwayland and command
            os.killpg(self.process.pid, signal.SIGKILL)
        self.parent.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class GamescopeSource:
    """One gamescope's picture: its PipeWire stream, copied into ring slots."""

    def __init__(self, backend: GamescopeBackend, gamescope: Gamescope, mode: DisplayMode) -> None:
        self.backend = backend
        self.gamescope = gamescope
        self.mode = mode
        self._taken = 0
        self.gone: str | None = None  # why the picture stopped
        self._idle = threading.Event()
        pipewire = backend.pipewire
        assert pipewire is not None
        try:
            self.stream = PipeWireStream(
                gamescope.node_id, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                        **pipewire.client_env()}
            )  # fmt: skip
        except CaptureError as exc:
            gamescope.stop()
            raise BackendError(str(exc)) from None

    @property
    def display_name(self) -> str:
        return self.gamescope.display

    def frame_format(self) -> tuple[int, int, PixelFormat]:
        caps = self.stream.caps
        if caps is None:
            return self.mode.width, self.mode.height, PixelFormat.BGRA8
        return caps.width, caps.height, PixelFormat.BGRA8

    def wait(self, timeout: float) -> bool:
        if self.gone is None:
            if self.stream.wait(self._taken, timeout):
                return True
            # pipewiresrc outlives a vanished node (it waits for another): gamescope's own
            # end is watched as well.
            status = self.gamescope.process.poll()
            if status is not None:
                self.gone = f"gamescope exited with status {status}"
            elif self.stream.ended is not None:
                self.gone = self.stream.ended
            else:
                return False
            event(
                _log,
                "vdisplay.output_lost",
                logging.ERROR,
                output=self.display_name,
                reason=self.gone,
                gamescope_log=self.gamescope.log_tail(),
            )
        self._idle.wait(timeout)
        return False

    def render(self, slot: int, dst: np.ndarray) -> int | None:
        def copy(caps: object, data: bytearray) -> bool:
            frame = as_bgra(caps, data)  # type: ignore[arg-type]
            if frame.shape != dst.shape:
                return False  # a new size: frame_format() gives it for the next slot
            np.copyto(dst, frame)
            return True

        taken = self.stream.take(copy)
        if taken is None:
            return None
        self._taken, capture_ns = taken
        return capture_ns

    def skip(self) -> None:
        """The newest frame stays; a later one replaces it (latest wins)."""

    def forget_slots(self) -> None:
        """Every render copies a whole frame: nothing of the old slots is reused."""

    def interrupt(self) -> None:
        self._idle.set()
        self.gone = self.gone or "closing"

    def close(self) -> None:
        self.stream.close()
        self.gamescope.stop()


class GamescopeBackend:
    name = DisplayBackend.GAMESCOPE
    renders_hdr = False

    def __init__(self, state_dir: Path, auth_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.auth_dir = auth_dir
        self.pipewire: PipeWireServer | None = None

    def _pipewire(self) -> PipeWireServer:
        if self.pipewire is not None and not self.pipewire.alive:
            event(
                _log,
                "vdisplay.pipewire_gone",
                logging.ERROR,
                log_tail=self.pipewire.log_tail(3),
                action="restarting",
            )
            self.pipewire.stop()
            self.pipewire = None
        if self.pipewire is None:
            try:
                self.pipewire = PipeWireServer(self.state_dir)
            except (PipeWireServerError, OSError) as exc:
                raise BackendError(f"PipeWire for gamescope: {exc}") from None
            event(_log, "vdisplay.pipewire_started", runtime=str(self.pipewire.runtime))
        return self.pipewire

    def close(self) -> None:
        """Stop the private PipeWire (the driver's death stops it too)."""
        if self.pipewire is not None:
            self.pipewire.stop()
            self.pipewire = None

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> GamescopeSource:
        gamescope = Gamescope(mode, self._pipewire(), self.auth_dir)
        event(
            _log,
            "vdisplay.gamescope_started",
            monitor=monitor_id,
            mode=str(mode),
            pid=gamescope.process.pid,
            xwayland=gamescope.display,
            node=gamescope.node_id,
        )
        return GamescopeSource(self, gamescope, mode)
