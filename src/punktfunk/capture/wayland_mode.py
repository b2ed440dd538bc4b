"""The mode probe for a sway output: its current mode over sway's IPC (the host's own
connection), so a mode change made inside the compositor is followed like a RandR change."""

from __future__ import annotations

from pathlib import Path

from ..wayland.ipc import SwayIpc, SwayIpcError
from ..wayland.sway import find_sockets
from .base import CaptureError
from .recovery import CaptureLost, Mode


class SwayMode:
    def __init__(self, runtime_dir: str, output_name: str) -> None:
        sockets = find_sockets(Path(runtime_dir)) if runtime_dir else None
        if sockets is None:
            raise CaptureError(f"no sway runs for output {output_name}")
        try:
            self._ipc = SwayIpc(sockets[1], timeout=2.0)
        except SwayIpcError as exc:
            raise CaptureError(str(exc)) from None
        self.name = output_name

    def current(self) -> Mode | None:
        try:
            output = self._ipc.output(self.name)
        except SwayIpcError as exc:
            raise CaptureLost(f"the compositor of {self.name} is gone ({exc})") from None
        if output is None:
            raise CaptureLost(f"output {self.name} is gone")
        mode = output.get("current_mode") or {}
        if not output.get("active") or not mode:
            return None
        return int(mode["width"]), int(mode["height"]), False

    def close(self) -> None:
        self._ipc.close()
