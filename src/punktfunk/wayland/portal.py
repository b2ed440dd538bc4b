"""The xdg-desktop-portal ScreenCast conversation (`attach:portal`): how a host running inside a
user's Wayland desktop (GNOME, KDE, wlroots with xdg-desktop-portal-wlr) gets that desktop
as a PipeWire stream, with the user's consent asked once.

CreateSession -> SelectSources (one monitor, cursor drawn in, persist until revoked, the restore
token of the last grant) -> Start (the desktop asks the user; with a valid restore token it does
not ask again) -> OpenPipeWireRemote (an fd with access to exactly the granted node). Each call
answers through a Request object's `Response` signal, subscribed before the call. The portal
closes the session and revokes the stream when our bus connection ends, so a killed host leaves
nothing granted behind. Plain D-Bus over jeepney (blocking, its own connection).

Where input cannot go through the compositor directly (GNOME, KDE: no wlroots virtual input),
the session is a RemoteDesktop one instead: CreateSession and SelectDevices (keyboard, pointer)
on the RemoteDesktop portal, SelectSources on the ScreenCast portal, Start on RemoteDesktop;
input then travels as RemoteDesktop `Notify*` calls (`input/portal.py`), one at a time.
Before xdg-desktop-portal 1.17 (RemoteDesktop version 2) such a session cannot persist, so the
desktop asks at every start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jeepney import (
    DBusAddress,
    MatchRule,
    MessageType,
    Properties,
    message_bus,
    new_method_call,
)
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from ..log import event
from ..ownfiles import open_own, replace_file

_log = logging.getLogger("punktfunk.portal")

BUS_NAME = "org.freedesktop.portal.Desktop"
OBJECT_PATH = "/org/freedesktop/portal/desktop"
SCREENCAST = "org.freedesktop.portal.ScreenCast"
REMOTE_DESKTOP = "org.freedesktop.portal.RemoteDesktop"
SOURCE_MONITOR = 1
DEVICE_KEYBOARD = 1
DEVICE_POINTER = 2
CURSOR_EMBEDDED = 2
PERSIST_UNTIL_REVOKED = 2
CALL_TIMEOUT_S = 10.0
CONSENT_TIMEOUT_S = 120.0  # Start waits for a person to answer the desktop's dialog
_RESPONSES = {1: "the user declined", 2: "the portal refused"}


class PortalError(RuntimeError):
    """No ScreenCast portal, or it did not grant a stream (the reason says which)."""


@dataclass(frozen=True)
class PortalStream:
    node_id: int
    width: int | None  # the size the portal reported, if it did
    height: int | None


def _portal(interface: str = SCREENCAST) -> DBusAddress:
    return DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=interface)


def _connect() -> DBusConnection:
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise PortalError("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)")
    try:
        return open_dbus_connection(bus="SESSION", enable_fds=True)
    except (OSError, ValueError, KeyError) as exc:
        raise PortalError(f"cannot reach the session bus: {exc}") from None


def _properties(conn: DBusConnection, interface: str = SCREENCAST) -> dict[str, Any]:
    try:
        reply = conn.send_and_get_reply(
            Properties(_portal(interface)).get_all(), timeout=CALL_TIMEOUT_S
        )
    except TimeoutError:
        raise PortalError("the portal did not answer within 10 s") from None
    if reply.header.message_type is MessageType.error:
        why = reply.body[0] if reply.body else "error"
        raise PortalError(f"no {interface.rsplit('.', 1)[1]} portal on the session bus ({why})")
    return {name: value for name, (_sig, value) in reply.body[0].items()}


def screencast_available() -> tuple[bool, str]:
    """Whether a ScreenCast portal that can share a monitor answers on the session bus."""
    try:
        conn = _connect()
    except PortalError as exc:
        return False, str(exc)
    try:
        props = _properties(conn)
    except PortalError as exc:
        return False, str(exc)
    finally:
        conn.close()
    if not int(props.get("AvailableSourceTypes", 0)) & SOURCE_MONITOR:
        return False, "the ScreenCast portal offers no monitor source"
    return True, f"ScreenCast portal v{props.get('version', '?')}"


class ScreenCast:
    """One granted session: its monitor stream, the PipeWire fd for it and, for a RemoteDesktop
    session (`want_input` where the portal offers it), the input devices granted."""

    def __init__(
        self,
        token_path: Path | None = None,
        consent_timeout: float = CONSENT_TIMEOUT_S,
        want_input: bool = False,
    ) -> None:
        self._token_path = token_path
        self._conn = _connect()
        self._send_lock = threading.Lock()
        self._session = ""
        self.pipewire_fd = -1
        self.devices = 0  # DEVICE_* granted (a RemoteDesktop session), else 0
        try:
            self._open(consent_timeout, want_input)
        except BaseException:
            self.close()
            raise

    def _remote_desktop(self) -> tuple[int, int]:
        """(device types offered, version) of the RemoteDesktop portal; (0, 0) without one."""
        try:
            props = _properties(self._conn, REMOTE_DESKTOP)
        except PortalError:
            return 0, 0
        wanted = DEVICE_KEYBOARD | DEVICE_POINTER
        return int(props.get("AvailableDeviceTypes", 0)) & wanted, int(props.get("version", 1))

    def _open(self, consent_timeout: float, want_input: bool) -> None:
        props = _properties(self._conn)
        version = int(props.get("version", 1))
        if not int(props.get("AvailableSourceTypes", 0)) & SOURCE_MONITOR:
            raise PortalError("the ScreenCast portal offers no monitor source")
        devices, rd_version = self._remote_desktop() if want_input else (0, 0)
        # A RemoteDesktop session's grant persists on SelectDevices (version 2), a plain
        # screen cast's on SelectSources (version 4); each keeps its own token.
        persists = rd_version >= 2 if devices else version >= 4
        token_path = self._token_path
        if devices and token_path is not None:
            token_path = token_path.with_name(token_path.name + ".remote-desktop")
        restore = self._read_token(token_path) if persists else None
        keep: dict[str, tuple[str, Any]] = {}
        if persists:
            keep["persist_mode"] = ("u", PERSIST_UNTIL_REVOKED)
        if restore:
            keep["restore_token"] = ("s", restore)
        main = REMOTE_DESKTOP if devices else SCREENCAST
        token = secrets.token_hex(8)
        created = self._request(
            "CreateSession", "a{sv}", {"session_handle_token": ("s", f"pf{token}")},
            interface=main,
        )  # fmt: skip
        self._session = str(created["session_handle"][1])
        if devices:
            self._request(
                "SelectDevices", "oa{sv}", self._session, {"types": ("u", devices), **keep},
                interface=REMOTE_DESKTOP,
            )  # fmt: skip
        options: dict[str, tuple[str, Any]] = {
            "types": ("u", SOURCE_MONITOR),
            "multiple": ("b", False),
            **({} if devices else keep),
        }
        if int(props.get("AvailableCursorModes", 0)) & CURSOR_EMBEDDED:
            options["cursor_mode"] = ("u", CURSOR_EMBEDDED)
        self._request("SelectSources", "oa{sv}", self._session, options)
        started = self._request(
            "Start", "osa{sv}", self._session, "", {}, timeout=consent_timeout, interface=main
        )
        self.devices = int(started.get("devices", ("u", 0))[1]) if devices else 0
        streams = started.get("streams", ("", []))[1]
        if not streams:
            raise PortalError("the portal granted no stream")
        node_id, info = streams[0]
        size = info.get("size", ("", None))[1]
        self.stream = PortalStream(
            int(node_id), int(size[0]) if size else None, int(size[1]) if size else None
        )
        new_token = started.get("restore_token", ("", ""))[1]
        if new_token:
            self._save_token(token_path, str(new_token))
        reply = self._call("OpenPipeWireRemote", "oa{sv}", self._session, {})
        self.pipewire_fd = reply[0].to_raw_fd()
        event(
            _log, "portal.granted", node=self.stream.node_id, version=version,
            restored=bool(restore), size=f"{self.stream.width}x{self.stream.height}",
            input="remote-desktop" if self.devices else "none",
        )  # fmt: skip

    def notify(self, method: str, signature: str, *args: Any) -> None:
        """A RemoteDesktop `Notify*` input call on this session, answered before it returns:
        xdg-desktop-portal handles calls on a thread pool, so only one at a time keeps them
        in order (`input/portal.py` calls this from its one sender thread)."""
        msg = new_method_call(
            _portal(REMOTE_DESKTOP), method, "oa{sv}" + signature, (self._session, {}, *args)
        )
        with self._send_lock:
            if not self._session:
                return
            reply = self._conn.send_and_get_reply(msg, timeout=CALL_TIMEOUT_S)
        if reply.header.message_type is MessageType.error:
            raise PortalError(f"{method}: {reply.body[0] if reply.body else 'error'}")

    def _call(
        self,
        method: str,
        signature: str,
        *args: Any,
        timeout: float = CALL_TIMEOUT_S,
        interface: str = SCREENCAST,
    ) -> tuple[Any, ...]:
        msg = new_method_call(_portal(interface), method, signature, args)
        try:
            reply = self._conn.send_and_get_reply(msg, timeout=timeout)
        except TimeoutError:
            raise PortalError(
                f"{method}: the portal did not answer within {timeout:.0f} s"
            ) from None
        if reply.header.message_type is MessageType.error:
            raise PortalError(f"{method}: {reply.body[0] if reply.body else 'error'}")
        return tuple(reply.body)

    def _request(
        self,
        method: str,
        signature: str,
        *args: Any,
        timeout: float = CALL_TIMEOUT_S,
        interface: str = SCREENCAST,
    ) -> dict[str, Any]:
        """A portal call whose answer comes as its Request's Response signal."""
        handle = f"pf{secrets.token_hex(8)}"
        sender = (self._conn.unique_name or ":").lstrip(":").replace(".", "_")
        path = f"{OBJECT_PATH}/request/{sender}/{handle}"
        rule = MatchRule(
            type="signal", interface="org.freedesktop.portal.Request", member="Response", path=path
        )
        self._conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=CALL_TIMEOUT_S)
        args[-1]["handle_token"] = ("s", handle)
        with self._conn.filter(rule) as queue:
            self._call(method, signature, *args, interface=interface)
            try:
                response = self._conn.recv_until_filtered(queue, timeout=timeout)
            except TimeoutError:
                raise PortalError(f"{method}: no answer within {timeout:.0f} s") from None
        code, results = response.body
        if code != 0:
            raise PortalError(f"{method}: {_RESPONSES.get(code, f'response {code}')}")
        return dict(results)

    @staticmethod
    def _read_token(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            fd = open_own(path, os.O_RDONLY)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(4096).decode(errors="replace").strip() or None

    @staticmethod
    def _save_token(path: Path | None, token: str) -> None:
        if path is not None:
            replace_file(path, token.encode())

    def close(self) -> None:
        """End the session (the portal revokes the stream) and drop the bus connection."""
        if self.pipewire_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pipewire_fd)
            self.pipewire_fd = -1
        with self._send_lock:
            session_path, self._session = self._session, ""
        if session_path:
            session = DBusAddress(
                session_path, bus_name=BUS_NAME, interface="org.freedesktop.portal.Session"
            )
            with contextlib.suppress(Exception):  # the portal may be gone already
                self._conn.send_and_get_reply(new_method_call(session, "Close"), timeout=2)
        with contextlib.suppress(Exception):
            self._conn.close()
