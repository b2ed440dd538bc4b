"""display=gamescope: what runs on this machine, for real.

gamescope 3.11 needs a Vulkan device with VK_EXT_physical_device_drm (a GPU's driver); this
machine has only lavapipe. So here: the real gamescope refuses with its own reason and leaves
nothing behind; the driver's private PipeWire carries a video node to the capture child; the
monitor source turns a node's frames into ring frames (the node comes from a GStreamer
producer standing in for gamescope's, the one part that cannot run here); and the claim the
backend's security rests on, that wlroots 0.15's Xwayland admits only its own user, is checked
on sway's. The whole monitor (gamescope started, its frames in a slot) runs where Vulkan allows
(`test_gamescope_monitor_where_vulkan_allows`, skipped here with gamescope's reason).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, gamescope_binary
from punktfunk.vdisplay.driver.backends import BackendError
from punktfunk.vdisplay.driver.backends.gamescope import GamescopeBackend, GamescopeSource
from punktfunk.vdisplay.driver.backends.pwserver import PipeWireServer, missing_parts
from punktfunk.wayland.checks import gamescope_check
from test_vdisplay_support import missing_part, wait_until

OURS = f"punktfunk-gamescope-{os.getpid()}-"  # in the env or argv of all a monitor starts
# videotestsrc's solid colour 0xAARRGGBB, and the BGRx bytes it becomes
COLOUR = 0xFF3366CC
BGR = (0xCC, 0x66, 0x33)


def _require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None and not (
        p == "gamescope" and gamescope_binary())]  # fmt: skip
    missing += missing_parts()
    if missing:
        missing_part(f"not installed here: {', '.join(missing)}")


def _processes_using(path: str) -> list[int]:
    """Our processes whose command line or environment names `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
                blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            except (OSError, IndexError):
                continue
            if path.encode() in blob:
                found.append(int(proc.name))
    return found


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pf-gs-", dir="/tmp"))  # Unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pipewire(state: Path) -> Iterator[PipeWireServer]:
    _require("gst-launch-1.0")
    server = PipeWireServer(state)
    yield server
    runtime = str(server.runtime)
    server.stop()
    assert wait_until(lambda: not _processes_using(runtime), 10), "PipeWire outlived stop()"
    assert not server.runtime.exists()


class Producer:
    """A video node in the private PipeWire, as gamescope would offer one."""

    def __init__(self, pipewire: PipeWireServer, width: int, height: int) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **pipewire.client_env()}
        self.proc = subprocess.Popen(
            ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", "pattern=solid-color",
             f"foreground-color={COLOUR}", "!",
             f"video/x-raw,format=BGRx,width={width},height={height},framerate=30/1", "!",
             "pipewiresink", "mode=provide",
             "stream-properties=props,media.class=Video/Source,node.name=pf-test-gamescope,"
             "media.type=Video"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.node_id = self._find_node(env)

    def _find_node(self, env: dict[str, str]) -> int:
        import json

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done = subprocess.run(["pw-dump"], env=env, capture_output=True, text=True, timeout=10)
            for obj in json.loads(done.stdout or "[]"):
                props = obj.get("info", {}).get("props", {})
                if props.get("node.name") == "pf-test-gamescope":
                    return int(obj["id"])
            time.sleep(0.2)
        raise AssertionError("the producer's node never appeared")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class StandIn:
    """What `GamescopeSource` uses of a running gamescope, around the producer's node."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.node_id = producer.node_id
        self.display = ":stand-in"
        self.process = producer.proc
        self.stopped = False

    def log_tail(self) -> str:
        return "stand-in"

    def stop(self) -> None:
        self.stopped = True
        if self.producer.proc.poll() is None:
            self.producer.stop()


def test_real_gamescope_refuses_with_its_reason_and_leaves_nothing(state: Path) -> None:
    """Without a GPU's Vulkan the ADD fails with gamescope's own words (which device, which
    extension), and its parent Xvfb, Xwayland and work dir are gone."""
    _require("gamescope", "Xvfb")
    usable, why = gamescope_check()
    if usable:
        pytest.skip("gamescope runs here: the monitor test below covers it")
    backend = GamescopeBackend(state)
    x_before = set(os.listdir("/tmp/.X11-unix"))
    work_before = set(Path(tempfile.gettempdir()).glob(OURS + "*"))
    try:
        with pytest.raises(BackendError) as failed:
            backend.create(0, DisplayMode(800, 600, 60), False)
        message = str(failed.value)
        assert message.startswith("800x600@60: exited") and "Vulkan" in message, message
        assert "VK_EXT_physical_device_drm" in why  # what doctor says, from the same start
        assert wait_until(lambda: not _processes_using(OURS), 10)
        assert set(os.listdir("/tmp/.X11-unix")) <= x_before  # the parent Xvfb is gone
        assert set(Path(tempfile.gettempdir()).glob(OURS + "*")) <= work_before
    finally:
        runtime = str(state / "pipewire")
        backend.close()
    assert wait_until(lambda: not _processes_using(runtime), 10)


def test_private_pipewire_carries_a_node_to_the_capture_child(pipewire: PipeWireServer) -> None:
    from punktfunk.capture.pipewire import PipeWireStream, as_bgra

    producer = Producer(pipewire, 320, 240)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **pipewire.client_env()}
    stream = PipeWireStream(producer.node_id, env=env)
    try:
        assert stream.wait(0, 15), stream.ended
        caps = stream.caps
        assert caps is not None and (caps.width, caps.height) == (320, 240)
        got: list[np.ndarray] = []
        assert stream.take(lambda c, d: got.append(as_bgra(c, d).copy()) or True) is not None
        assert tuple(int(v) for v in got[0][120, 160, :3]) == BGR
    finally:
        stream.close()
        producer.stop()


def test_monitor_source_turns_the_node_into_ring_frames(pipewire: PipeWireServer) -> None:
    """The source the driver publishes from: the stream's size, frames into a slot of that
    size, a slot of another size refused (the publisher asks `frame_format` again), and the
    stream's end reported once, then quiet."""
    backend = GamescopeBackend(pipewire.runtime.parent)
    backend.pipewire = pipewire
    producer = Producer(pipewire, 320, 240)
    stand_in = StandIn(producer)
    source = GamescopeSource(backend, stand_in, DisplayMode(320, 240, 30))  # type: ignore[arg-type]
    try:
        assert source.display_name == ":stand-in"
        assert source.wait(15)
        assert source.frame_format()[:2] == (320, 240)
        slot = np.zeros((240, 320, 4), np.uint8)
        assert source.render(0, slot) is not None
        assert tuple(int(v) for v in slot[5, 5, :3]) == BGR
        assert source.render(1, np.zeros((480, 640, 4), np.uint8)) is None
        producer.stop()  # gamescope gone: the capture child ends, the source says so
        assert wait_until(lambda: not source.wait(0.2) and source.gone, 15)
        assert source.gone is not None and "gamescope exited" in source.gone
        started = time.monotonic()
        assert not source.wait(0.3)  # quiet after the end, no busy loop
        assert time.monotonic() - started >= 0.25
    finally:
        source.close()
    assert stand_in.stopped


def test_wlroots_xwayland_admits_only_its_own_user(tmp_path: Path) -> None:
    """gamescope's Xwayland has no cookie: what keeps other local users out is Xwayland's own
    rule (only the uid it runs as), checked here on sway 1.7's Xwayland (the same wlroots 0.15
    code gamescope 3.11 starts it with)."""
    _require("sway", "Xwayland", "setpriv", "xdpyinfo")
    if os.geteuid() != 0:
        pytest.skip("needs root to try a second user")
    runtime = Path(tempfile.mkdtemp(prefix="pf-xw-", dir="/tmp"))
    runtime.chmod(0o700)
    (runtime / "sway.conf").write_text("xwayland enable\n")
    before = set(os.listdir("/tmp/.X11-unix"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(runtime),
           "XDG_RUNTIME_DIR": str(runtime), "WLR_BACKENDS": "headless", "WLR_RENDERER": "pixman",
           "WLR_LIBINPUT_NO_DEVICES": "1"}  # fmt: skip
    sway = subprocess.Popen(
        ["unshare", "--user", "--map-user=1000", "--map-group=1000", "sway", "-c",
         str(runtime / "sway.conf")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: set(os.listdir("/tmp/.X11-unix")) - before, 15)
        display = ":" + sorted(set(os.listdir("/tmp/.X11-unix")) - before)[0][1:]
        ours = subprocess.run(["xdpyinfo", "-display", display], capture_output=True, timeout=30)
        assert ours.returncode == 0, ours.stderr
        theirs = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "xdpyinfo", "-display", display],
            capture_output=True, text=True, timeout=30, env={"PATH": env["PATH"]},
        )  # fmt: skip
        assert theirs.returncode != 0
        assert "Authorization required" in theirs.stderr or "unable to open" in theirs.stderr
    finally:
        os.killpg(sway.pid, 15)
        sway.wait(timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.skipif(
    gamescope_binary() is None or shutil.which("Xvfb") is None, reason="gamescope not installed"
)
def test_gamescope_monitor_where_vulkan_allows(state: Path) -> None:
    """On a machine with a GPU's Vulkan: a monitor at the exact mode, its frames in a slot,
    apps' X display reachable, and nothing left after close."""
    usable, why = gamescope_check()
    if not usable:
        pytest.skip(f"gamescope cannot run here: {why}")
    from Xlib.display import Display

    backend = GamescopeBackend(state)
    try:
        source = backend.create(0, DisplayMode(1280, 720, 60), False)
        try:
            Display(source.display_name).close()  # where apps and input go
            assert wait_until(lambda: source.wait(0.5), 20)
            width, height, _ = source.frame_format()
            assert (width, height) == (1280, 720)
            assert source.render(0, np.zeros((height, width, 4), np.uint8)) is not None
        finally:
            source.close()
        assert wait_until(lambda: not _processes_using(OURS), 10)
    finally:
        backend.close()


def test_display_setting_names_gamescope() -> None:
    from punktfunk.config import DISPLAY_BACKENDS

    assert "gamescope" in DISPLAY_BACKENDS
    assert DisplayBackend("gamescope").apps_on_x11 and not DisplayBackend("gamescope").is_x11


def test_gamescope_runs_at_the_exact_mode_focused_or_not() -> None:
    """No scaling (game and output both the mode), and the refresh given for an unfocused
    window too (its parent Xvfb reports 0 Hz, which gamescope 3.11 divides by)."""
    from punktfunk.vdisplay.driver.backends.gamescope import gamescope_argv

    argv = gamescope_argv("gamescope", DisplayMode(2560, 1440, 120))
    flags = dict(zip(argv[1:-3:2], argv[2:-3:2], strict=False))
    assert flags["-w"] == flags["-W"] == "2560" and flags["-h"] == flags["-H"] == "1440"
    assert flags["-r"] == flags["-o"] == "120"
    assert argv[-3:] == ["--", "sleep", "infinity"]  # gamescope ends when its command does


def test_the_xwayland_display_is_read_from_gamescopes_command_not_from_xwayland() -> None:
    """gamescope is a subreaper: Xwayland is its child too, with the parent screen's DISPLAY;
    only the command has GAMESCOPE_WAYLAND_DISPLAY and the Xwayland DISPLAY (real processes)."""
    from punktfunk.vdisplay.driver.backends.gamescope import xwayland_display

    parent = subprocess.Popen(
        ["sh", "-c", "env -i DISPLAY=:9 sleep 30 & "
         "env -i GAMESCOPE_WAYLAND_DISPLAY=gamescope-0 DISPLAY=:5 sleep 30 & wait"],
        start_new_session=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: xwayland_display(parent.pid) == ":5", 10)
    finally:
        os.killpg(parent.pid, 15)
        parent.wait(timeout=10)
    assert xwayland_display(os.getpid()) == ""  # no such command among ours
