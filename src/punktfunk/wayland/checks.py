"""What `punktfunk doctor` says about Wayland here: which backends can run, and why not."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .sway import Sway, SwayError, sway_binary


def wlroots_check() -> tuple[bool, str]:
    """Whether display=wlroots can start its sway here."""
    if sway_binary() is None:
        return False, "missing — apt-get install sway"
    if os.geteuid() != 0:
        return True, "sway: one headless output per client (Wayland)"
    # sway refuses root: it runs in a user namespace, which the kernel must allow.
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"as root sway needs a user namespace: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        return False, f"as root sway needs a user namespace: {reason}"
    return True, "sway in a user namespace (it refuses root): one headless output per client"


def attach_check() -> tuple[bool, str]:
    """Whether attach:wayland can stream the session this process runs in."""
    from .attach import WaylandAttachError, compositor_socket

    try:
        socket = compositor_socket()
    except WaylandAttachError as exc:
        return False, f"no Wayland session here ({exc})"
    try:
        from .screencopy import ScreencopyOutput

        probe = ScreencopyOutput(socket, "")
    except Exception as exc:  # any reason the compositor cannot be captured is the answer
        return False, f"{socket}: {exc}"
    name, mode = probe.output_name, probe.output_mode
    probe.close()
    size = f" {mode[0]}x{mode[1]}" if mode else ""
    return True, f"{socket}: screencopy of {name}{size} (no portal needed)"


def portal_check() -> tuple[bool, str]:
    """Whether attach:portal can stream the desktop this process runs in."""
    from .portal import screencast_available

    usable, detail = screencast_available()
    if not usable:
        return False, detail
    if shutil.which("gst-launch-1.0") is None:
        return False, f"{detail}, but no GStreamer (apt-get install gstreamer1.0-tools "
        "gstreamer1.0-pipewire gstreamer1.0-plugins-base gstreamer1.0-plugins-bad)"
    return True, f"{detail}: PipeWire through GStreamer (asks once, then the restore token)"


def gamescope_check() -> tuple[bool, str]:
    """Whether display=gamescope can start here: one real nested gamescope (with its parent
    Xvfb and the driver's private PipeWire) in a scratch dir, stopped at once."""
    from ..vdisplay.base import DisplayMode, gamescope_binary
    from ..vdisplay.driver.backends import BackendError
    from ..vdisplay.driver.backends.gamescope import GamescopeBackend

    binary = gamescope_binary()
    if binary is None:
        return False, "missing — apt-get install gamescope"
    if shutil.which("Xvfb") is None:
        return False, f"{binary} runs nested in an Xvfb: apt-get install xvfb"
    scratch = Path(tempfile.mkdtemp(prefix="pf-gs-", dir="/tmp"))
    backend = GamescopeBackend(scratch)
    try:
        backend.create(0, DisplayMode(640, 480, 30), False).close()
    except BackendError as exc:
        return False, f"{binary} cannot start here: {exc}"
    finally:
        backend.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return True, f"{binary}: a nested gamescope per client, read from its PipeWire stream"


def gpu_verdict(
    nodes: list[str], openable: list[str], wlroots: tuple[bool, str]
) -> tuple[bool, str]:
    """Whether sway may render on a GPU here, from the render nodes found, those this process
    may open, and whether sway runs at all."""
    if not nodes:
        return False, "no GPU render node (/dev/dri/renderD*): the X servers, on the CPU"
    if not openable:
        return False, f"{nodes[0]} cannot be opened by this user"
    usable, why = wlroots
    if not usable:
        return False, f"{openable[0]} present, but sway cannot run: {why}"
    return True, f"sway renders on {openable[0]}"


@functools.cache
def gpu_compositor() -> tuple[bool, str]:
    """Whether a GPU-rendering sway can start here: the prerequisites, then one real start
    (renderer gles2) in a scratch dir. Once per process; nothing to do without a render node."""
    nodes = sorted(glob.glob("/dev/dri/renderD*"))
    openable = [n for n in nodes if os.access(n, os.R_OK | os.W_OK)]
    usable, why = gpu_verdict(nodes, openable, wlroots_check() if openable else (False, ""))
    if not usable:
        return usable, why
    scratch = Path(tempfile.mkdtemp(prefix="pf-gpu-", dir="/tmp"))
    try:
        Sway(scratch, renderer="gles2", seats=1).stop()
    except (SwayError, OSError) as exc:
        return False, f"sway on {openable[0]} did not start: {exc}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True, why
