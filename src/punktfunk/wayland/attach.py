"""`attach:wayland[:OUTPUT]`: stream an output of a wlroots compositor that already runs (the
user's own sway/Hyprland session), with no portal: screencopy and virtual input directly.

The host runs inside that session: `WAYLAND_DISPLAY` and `XDG_RUNTIME_DIR` name the compositor.
Nothing is created or removed; a lease names the output at its current mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self

from ..vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from ..vdisplay.manager import Output
from .screencopy import ScreencopyError, ScreencopyOutput


class WaylandAttachError(RuntimeError):
    """No compositor to attach to, or it lacks the output or screencopy."""


def compositor_socket(environ: dict[str, str] | None = None) -> Path:
    """The Wayland socket of the session this host runs in."""
    env = os.environ if environ is None else environ
    name = env.get("WAYLAND_DISPLAY", "")
    if not name:
        raise WaylandAttachError(
            "attach:wayland needs WAYLAND_DISPLAY (run the host in the session)"
        )
    path = Path(name)
    if not path.is_absolute():
        runtime = env.get("XDG_RUNTIME_DIR", "")
        if not runtime:
            raise WaylandAttachError("attach:wayland needs XDG_RUNTIME_DIR")
        path = Path(runtime) / name
    return path


def parse_target(target: str) -> str:
    """The output an `attach:` target names: `wayland` -> "" (the first), `wayland:DP-1`."""
    _, _, output = target.partition(":")
    return output


class WaylandAttachedLease:
    def __init__(self, output: Output, socket: Path) -> None:
        self._output = output
        self.wayland_socket = socket

    @property
    def output(self) -> Output:
        return self._output

    def environment(self) -> dict[str, str]:
        return {
            "WAYLAND_DISPLAY": str(self.wayland_socket),
            "XDG_RUNTIME_DIR": str(self.wayland_socket.parent),
        }

    def close(self) -> None:
        """Nothing to release: the compositor is not ours."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class WaylandAttachedDisplay:
    def __init__(self, target: str) -> None:
        self.target = target
        self.output_name = parse_target(target)

    @property
    def backend(self) -> DisplayBackend:
        return DisplayBackend.ATTACH

    def acquire(self, request: MonitorRequest) -> WaylandAttachedLease:
        """A lease on the output as it is (the request's mode is not applied)."""
        socket = compositor_socket()
        try:
            probe = ScreencopyOutput(socket, self.output_name)
        except (ScreencopyError, RuntimeError, OSError) as exc:
            raise WaylandAttachError(f"attach:{self.target}: {exc}") from None
        try:
            mode = probe.output_mode
            name = probe.output_name
        finally:
            probe.close()
        if mode is None:
            raise WaylandAttachError(f"attach:{self.target}: output {name} reports no mode")
        width, height, mhz = mode
        output = Output(
            0,
            0,
            name,
            DisplayMode(width, height, max(1, round(mhz / 1000))),
            False,
            b"",
            DisplayBackend.ATTACH,
        )
        return WaylandAttachedLease(output, socket)

    def set_render_adapter(self, adapter: str) -> None:
        """The running compositor already has its GPU."""

    def close(self) -> None:
        """Nothing was created."""
