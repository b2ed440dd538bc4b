"""Render adapters (GPUs): which ones exist, and the environment that points programs at one.

The driver records the adapter SET_RENDER_ADAPTER names (after checking it exists); the host
exports it to the programs a session launches on its display (`MonitorLease.environment()`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_NODE = re.compile(r"^/dev/dri/(renderD|card)\d+$")
DRI_DIR = Path("/dev/dri")


def present_adapters() -> list[str]:
    try:
        return sorted(str(p) for p in DRI_DIR.iterdir() if _NODE.match(str(p)))
    except OSError:
        return []


def adapter_problem(adapter: str) -> str | None:
    """Why `adapter` cannot be used here, or None ("auto" always can)."""
    if adapter == "auto":
        return None
    present = ", ".join(present_adapters()) or "none"
    if not _NODE.match(adapter):
        return f"render adapter {adapter!r} is not a /dev/dri/renderD<N> or card<N> node"
    try:
        is_char = stat.S_ISCHR(os.stat(adapter).st_mode)
    except OSError:
        is_char = False
    if not is_char:
        return f"unknown render adapter {adapter!r} (present on this machine: {present})"
    return None


def _sysfs_device(adapter: str) -> Path:
    return Path(os.path.realpath(f"/sys/class/drm/{Path(adapter).name}/device"))


def adapter_env(adapter: str) -> dict[str, str]:
    """Environment that makes Mesa pick `adapter`: DRI_PRIME for GL, MESA_VK_DEVICE_SELECT for
    Vulkan (both from sysfs; empty for "auto" or when sysfs does not say)."""
    if adapter == "auto":
        return {}
    env: dict[str, str] = {}
    device = _sysfs_device(adapter)
    if re.match(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", device.name):
        env["DRI_PRIME"] = "pci-" + device.name.replace(":", "_").replace(".", "_")
    try:
        ids = [(device / f).read_text().strip().removeprefix("0x") for f in ("vendor", "device")]
    except OSError:
        return env
    env["MESA_VK_DEVICE_SELECT"] = ":".join(ids)
    return env
