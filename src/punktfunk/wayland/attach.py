"""Stream the Wayland desktop the host runs in (the user's own session); nothing is created.

- `attach:portal`: what the desktop's ScreenCast portal grants (`portal.py`; GNOME, KDE, or
  wlroots with xdg-desktop-portal-wlr), as a PipeWire stream. The user consents once: the
  restore token is kept in `<state_dir>/portal-restore-token` (0600).
- `attach:wayland:OUTPUT`: that output of a wlroots compositor (sway, Hyprland, river) with
  wlr-screencopy directly, no portal and no consent.
- `attach:wayland`: the portal where one answers on the session bus, else (or when the portal
  refuses) wlr-screencopy of the first output; the choice is logged.

`WAYLAND_DISPLAY` and `XDG_RUNTIME_DIR` name the compositor; a lease has the output's current
mode. Input goes through the compositor's virtual pointer/keyboard where it offers them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pywayland.client import Display

from ..log import event
from ..vdisplay.base import DisplayBackend, DisplayMode, LeaseBase, MonitorRequest
from ..vdisplay.manager import Output
from .portal import PortalError, ScreenCast, screencast_available
from .screencopy import ScreencopyError, ScreencopyOutput

_log = logging.getLogger("punktfunk.vdisplay")
TOKEN_FILE = "portal-restore-token"


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


def has_virtual_input(socket: Path) -> bool:
    """Whether the compositor at `socket` offers wlroots virtual pointer and keyboard."""
    try:
        display = Display(str(socket))
        display.connect()
    except (RuntimeError, OSError, ValueError):
        return False
    try:
        names: set[str] = set()
        registry = display.get_registry()
        registry.dispatcher["global"] = lambda _r, _name, iface, _version: names.add(iface)
        display.roundtrip()
    finally:
        display.disconnect()
    return {"zwlr_virtual_pointer_manager_v1", "zwp_virtual_keyboard_manager_v1"} <= names


def parse_target(target: str) -> str:
    """The output an `attach:` target names: `wayland` -> "" (the first), `wayland:DP-1`."""
    _, _, output = target.partition(":")
    return output


class WaylandAttachedLease(LeaseBase):
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


class PortalLease(LeaseBase):
    """What the ScreenCast portal granted; closing the lease ends the portal session."""

    def __init__(self, output: Output, cast: ScreenCast, socket: Path | None) -> None:
        self._output = output
        self._cast = cast
        self.pipewire_node = cast.stream.node_id
        self.pipewire_fd = cast.pipewire_fd
        if cast.devices:  # a RemoteDesktop grant: input through the portal
            self.portal_input = cast
        elif socket is not None:  # input through the compositor's virtual devices
            self.wayland_socket = socket
            self.wayland_output = ""  # the portal does not name the output: the first one

    @property
    def output(self) -> Output:
        return self._output

    def environment(self) -> dict[str, str]:
        return {}  # apps start in the user's desktop as it is

    def close(self) -> None:
        self._cast.close()


class WaylandAttachedDisplay:
    def __init__(self, target: str, state_dir: Path) -> None:
        self.target = target
        self.kind = target.split(":")[0]
        self.output_name = parse_target(target)
        self._token_path = state_dir / TOKEN_FILE

    @property
    def backend(self) -> DisplayBackend:
        return DisplayBackend.ATTACH

    def acquire(self, request: MonitorRequest) -> WaylandAttachedLease | PortalLease:
        """A lease on the desktop as it is (the request's mode is not applied)."""
        if self.kind == "portal":
            return self._portal(request)
        if not self.output_name:
            usable, why = screencast_available()
            if usable:
                try:
                    return self._portal(request)
                except WaylandAttachError as exc:
                    event(_log, "display.fallback", logging.WARNING, frm="portal",
                          to="wlr-screencopy", reason=exc)  # fmt: skip
            else:
                event(_log, "display.attach", path="wlr-screencopy", reason=why)
        return self._screencopy()

    def _portal(self, request: MonitorRequest) -> PortalLease:
        try:
            socket: Path | None = compositor_socket()
        except WaylandAttachError:
            socket = None
        # Input through the compositor where it has wlroots virtual input (the screen cast's
        # grant then persists), else a RemoteDesktop session (GNOME, KDE).
        direct = socket is not None and has_virtual_input(socket)
        try:
            cast = ScreenCast(self._token_path, want_input=not direct)
        except PortalError as exc:
            raise WaylandAttachError(f"attach:{self.target}: ScreenCast portal: {exc}") from None
        stream = cast.stream
        mode = DisplayMode(
            stream.width or request.mode.width,
            stream.height or request.mode.height,
            request.mode.refresh_hz,
        )
        name = f"portal:{stream.node_id}"
        output = Output(0, 0, name, mode, False, b"", DisplayBackend.ATTACH)
        via = "remote-desktop" if cast.devices else "compositor" if direct else "none"
        event(_log, "display.attach", path="portal", node=stream.node_id, mode=str(mode), input=via)
        return PortalLease(output, cast, socket if direct else None)

    def _screencopy(self) -> WaylandAttachedLease:
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
