"""`punktfunk doctor`: what this machine can do, and whether the host's own parts are intact.

Required (exit 1 if broken): the settings parse (checked before we get here) and the driver
ABI self-check. Everything else is reported with the Debian package that provides it. It also
lists what a killed host or driver left behind (`leftovers`), and removes it with --clean.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import LoadedConfig
from .proto import AbiDriftError, self_check
from .vdisplay.base import DisplayBackend, available_backends


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _tool(name: str, program: str, package: str, purpose: str) -> Check:
    path = shutil.which(program)
    if path:
        return Check(name, True, f"{path} ({purpose})")
    return Check(name, False, f"{program} not found — apt-get install {package} ({purpose})")


def machine_checks() -> list[Check]:
    """Optional capabilities: each missing one disables a feature, never the host."""
    from .wayland.checks import (
        attach_check,
        gamescope_check,
        gpu_compositor,
        portal_check,
        wlroots_check,
    )

    displays = available_backends()
    return [
        Check(
            "display xorg-dummy",
            DisplayBackend.XORG_DUMMY in displays,
            "Xorg with the dummy video driver"
            if DisplayBackend.XORG_DUMMY in displays
            else "missing — apt-get install xserver-xorg-video-dummy",
        ),
        Check(
            "display xvfb",
            DisplayBackend.XVFB in displays,
            "Xvfb" if DisplayBackend.XVFB in displays else "missing — apt-get install xvfb",
        ),
        Check("display wlroots", *wlroots_check()),
        Check("gpu compositor", *gpu_compositor()),
        Check("attach:wayland", *attach_check()),
        Check("attach:portal", *portal_check()),
        Check("display gamescope", *gamescope_check()),
        Check("display pattern", True, "built in (the embedded default)"),
        _tool("audio", "pulseaudio", "pulseaudio", "per-session sinks; without it a test tone"),
        _tool("edid-decode", "edid-decode", "edid-decode", "EDID verification in tests"),
        _tool("c compiler", "gcc", "gcc", "builds the native FEC kernel"),
        Check(
            "fec native kernel",
            importlib.util.find_spec("punktfunk.fec._gf8") is not None,
            "built"
            if importlib.util.find_spec("punktfunk.fec._gf8") is not None
            else "not built — reinstall with gcc present (numpy fallback is slower)",
        ),
        Check(
            "pyav",
            importlib.util.find_spec("av") is not None,
            "PyAV importable"
            if importlib.util.find_spec("av") is not None
            else "not installed — pip install av",
        ),
        Check(
            "uinput",
            Path("/dev/uinput").exists(),
            "/dev/uinput present: games see real USB pads"
            if Path("/dev/uinput").exists()
            else "no /dev/uinput (kernel without uinput): pads are published in shared memory "
            "(/dev/shm/punktfunk-*-pad*) only, for a consumer that maps them",
        ),
    ]


def _row(name: str, status: str, detail: str) -> None:
    print(f"{name:<18} {status:<4} {detail}")


def _leftovers(state: Path, clean: bool) -> None:
    from . import leftovers

    found = leftovers.sweep(state, "doctor") if clean else leftovers.find(state)
    if not found:
        _row("leftovers", "ok", "nothing left behind by a killed host or driver")
        return
    total = sum(item.size for item in found) / 1e6
    verb = "removed" if clean else "found (punktfunk doctor --clean removes them)"
    _row("leftovers", "ok" if clean else "--", f"{len(found)} {verb}, {total:.1f} MB")
    for item in found:
        _row("", "", f"{item.kind} {item.path} ({item.size / 1e6:.1f} MB)")


def run_doctor(loaded: LoadedConfig, clean: bool = False) -> int:
    source = "found" if loaded.config_file_found else "not present, defaults apply"
    _row("settings", "ok", f"host.env {loaded.config_file} ({source})")
    try:
        lines = self_check()
    except AbiDriftError as exc:
        _row("driver ABI", "FAIL", str(exc))
        return 1
    _row("driver ABI", "ok", lines[0])
    for line in lines[1:]:
        _row("", "", line)
    from .service.checks import service_checks  # ports, systemd unit, console

    for check in machine_checks() + service_checks(loaded):
        _row(check.name, "ok" if check.ok else "--", check.detail)
    state = loaded.config.state_dir
    _row("state dir", "", f"{state} ({'exists' if state.is_dir() else 'created on first serve'})")
    _row("running as", "", "root" if os.geteuid() == 0 else f"uid {os.geteuid()}")
    _leftovers(state, clean)
    return 0
