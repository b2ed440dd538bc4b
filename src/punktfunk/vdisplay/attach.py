"""`attach:<X display>`: stream an X server that already exists (the user's own desktop).

No monitor is created or removed and no driver is involved: a lease just names the display
at its current mode; capture is the direct X11 path, which follows its mode changes.
"""

from __future__ import annotations

from .base import DisplayBackend, DisplayMode, LeaseBase, MonitorRequest
from .manager import Output
from .xlib import randr
from .xlib.core import XDisplay, XError


class AttachError(RuntimeError):
    """The X display to attach to cannot be opened."""


class AttachedLease(LeaseBase):
    def __init__(self, output: Output) -> None:
        self._output = output

    @property
    def output(self) -> Output:
        return self._output

    def environment(self) -> dict[str, str]:
        return {"DISPLAY": self._output.display_name}

    def close(self) -> None:
        """Nothing to release: the display is not ours."""


class AttachedDisplay:
    def __init__(self, target: str) -> None:
        self.target = target

    @property
    def backend(self) -> DisplayBackend:
        return DisplayBackend.ATTACH

    def acquire(self, request: MonitorRequest) -> AttachedLease:
        """A lease on the display as it is (the request's mode is not applied)."""
        try:
            with XDisplay(self.target) as display:
                mode = randr.current_mode(display) if randr.has_randr(display) else None
                width, height = display.root_size()
        except XError as exc:
            raise AttachError(f"attach:{self.target}: {exc}") from None
        refresh = round(mode.refresh_hz) if mode is not None and mode.refresh_hz else 60
        output = Output(
            0,
            0,
            self.target,
            DisplayMode(width, height, refresh),
            False,
            b"",
            DisplayBackend.ATTACH,
        )
        return AttachedLease(output)

    def set_render_adapter(self, adapter: str) -> None:
        """The attached server already has its GPU; nothing to select."""

    def close(self) -> None:
        """Nothing was created."""
