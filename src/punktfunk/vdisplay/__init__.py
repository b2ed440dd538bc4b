"""Virtual displays: one monitor per client, owned by the driver process (`punktfunk vdisplay`).

`open_display()` gives a session's host the `VirtualDisplay` for its plan: the
`VirtualDisplayManager` (monitors made by the driver process) or an `AttachedDisplay` (an X
server that already exists).
"""

from __future__ import annotations

from ..config import HostConfig
from .base import DisplayBackend, VirtualDisplay


def open_display(
    config: HostConfig, backend: DisplayBackend, attach_target: str | None = None
) -> VirtualDisplay:
    if backend is DisplayBackend.ATTACH and (attach_target or "").split(":")[0] in (
        "wayland",
        "portal",
    ):
        from ..wayland.attach import WaylandAttachedDisplay

        return WaylandAttachedDisplay(attach_target or "", config.state_dir)
    if backend is DisplayBackend.ATTACH:
        from .attach import AttachedDisplay

        if not attach_target:
            raise ValueError("display=attach needs the X display to attach to")
        return AttachedDisplay(attach_target)
    from .manager import VirtualDisplayManager

    return VirtualDisplayManager(config, backend)
