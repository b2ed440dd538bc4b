"""A ScreenCast portal *backend* (org.freedesktop.impl.portal.ScreenCast) for the portal tests,
playing xdg-desktop-portal-wlr's part: it shares one output of a (headless) sway as a PipeWire
node, captured with wlr-screencopy.

Why not xdg-desktop-portal-wlr itself: Debian 12 ships 0.7.0, which insists on a dmabuf format
from wlr-screencopy v3 and so fails every Start on a compositor without a GPU (pixman): "unable
to receive a valid format from wlr_screencopy" (fixed in 0.8). Everything else in the chain is
the real thing: xdg-desktop-portal (the frontend the host talks to, its permission store and
restore tokens, the restricted PipeWire remote it hands out), PipeWire and wireplumber, and
GStreamer's pipewiresink producing the node. The sway output's frames travel into
`gst-launch-1.0 fdsrc ! gdpdepay ! pipewiresink` as GDP, caps first and again on every size
change, so a mode change inside the compositor renegotiates the PipeWire stream as it does
with xdg-desktop-portal-wlr.

It serves RemoteDesktop too (xdg-desktop-portal-wlr does not; GNOME's and KDE's backends do):
the `Notify*` input calls the frontend passes on are done on the sway output through its
virtual pointer and keyboard, as a compositor does them for its own backend.

Usage: portal_backend.py OUTPUT_NAME RECORD_FILE  (with the session's bus and Wayland env).
Each consent decision is appended to RECORD_FILE as a JSON line: {"start": "asked", "kind": ...}
for a grant without restore data (a real desktop shows its dialog there), {"start": "restored"};
each input call as {"notify": METHOD}.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from jeepney import HeaderFields, MessageType, message_bus, new_error, new_method_return
from jeepney.io.blocking import open_dbus_connection

from punktfunk.wayland.screencopy import ScreencopyOutput

BUS_NAME = "org.freedesktop.impl.portal.desktop.pftest"
IMPL = "org.freedesktop.impl.portal.ScreenCast"
REMOTE = "org.freedesktop.impl.portal.RemoteDesktop"
SESSION = "org.freedesktop.impl.portal.Session"
NONE = (1 << 64) - 1
STREAM_START = 64 + 10254
SEGMENT = 64 + 17934
_SEGMENT = (
    b'GstEventSegment, segment=(GstSegment)"segment, flags=(GstSegmentFlags)GST_SEGMENT_FLAG_NONE, '
    b"rate=(double)1, applied-rate=(double)1, format=(GstFormat)time, base=(guint64)0, "
    b"offset=(guint64)0, start=(guint64)0, stop=(guint64)18446744073709551615, time=(guint64)0, "
    b'position=(guint64)0, duration=(guint64)18446744073709551615;";\0'
)


def gdp(kind: int, payload: bytes, timestamp: int = NONE) -> bytes:
    header = struct.pack(">BBBxHIQQQQ", 1, 0, 0, kind, len(payload), timestamp, NONE, NONE, NONE)
    return header + bytes(62 - len(header)) + payload


def caps(width: int, height: int) -> bytes:
    text = f"video/x-raw, format=(string)BGRx, width=(int){width}, height=(int){height}, "
    return gdp(2, (text + "framerate=(fraction)0/1\0").encode())


class Share:
    """One granted session: screencopy of the output -> GDP -> pipewiresink (a PipeWire node)."""

    def __init__(self, output: str, node_name: str) -> None:
        socket = Path(os.environ["XDG_RUNTIME_DIR"]) / os.environ["WAYLAND_DISPLAY"]
        self.copy = ScreencopyOutput(socket, output)
        self.copy.set_refresh(30)
        props = f"props,node.name={node_name},media.class=Video/Source,media.type=Video"
        self.gst = subprocess.Popen(
            ["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!", "gdpdepay", "!", "videoconvert", "!",
             "pipewiresink", f"stream-properties={props}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.node_name = node_name
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        assert self.gst.stdin is not None
        pipe = self.gst.stdin
        pipe.write(gdp(STREAM_START, b"GstEventStreamStart, stream-id=(string)pftest;\0"))
        size = (0, 0)
        start = time.monotonic_ns()
        frame: np.ndarray | None = None
        try:
            while not self.stop.is_set():
                # pipewiresink drops what comes before a consumer links: like a compositor's
                # repaint, the last frame goes again when nothing changed for 0.2 s.
                if self.copy.wait(0.2):
                    width, height = self.copy.size
                    fresh = np.empty((height, width, 4), np.uint8)
                    if self.copy.take(fresh) is None:
                        continue
                    frame = fresh
                if frame is None:
                    continue
                height, width = frame.shape[:2]
                if (width, height) != size:
                    pipe.write(caps(width, height))
                    if size == (0, 0):
                        pipe.write(gdp(SEGMENT, _SEGMENT))
                    size = (width, height)
                pipe.write(gdp(1, frame.tobytes(), time.monotonic_ns() - start))
                pipe.flush()
        except (BrokenPipeError, OSError, RuntimeError):
            pass

    @staticmethod
    def size_of(output: str) -> tuple[int, int]:
        socket = Path(os.environ["XDG_RUNTIME_DIR"]) / os.environ["WAYLAND_DISPLAY"]
        probe = ScreencopyOutput(socket, output)
        try:
            mode = probe.output_mode
        finally:
            probe.close()
        return (mode[0], mode[1]) if mode else (0, 0)

    def node_id(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dump = subprocess.run(["pw-dump"], capture_output=True, text=True, timeout=10)
            for obj in json.loads(dump.stdout or "[]"):
                props = (obj.get("info") or {}).get("props") or {}
                if (
                    obj.get("type", "").endswith(":Node")
                    and props.get("node.name") == self.node_name
                ):
                    return int(obj["id"])
            time.sleep(0.2)
        raise RuntimeError(f"no PipeWire node {self.node_name}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=3)
        self.gst.terminate()
        self.gst.wait(timeout=5)
        self.copy.close()


class RemoteInput:
    """RemoteDesktop `Notify*` calls, done on the sway output as a compositor would."""

    def __init__(self, output: str) -> None:
        from punktfunk.input.wayland import WaylandInjector

        socket = Path(os.environ["XDG_RUNTIME_DIR"]) / os.environ["WAYLAND_DISPLAY"]
        self.injector = WaylandInjector(socket, output)
        self.size = Share.size_of(output)

    def notify(self, member: str, args: tuple[Any, ...]) -> None:
        from punktfunk.input.vk import BUTTON_EVDEV, WHEEL_DELTA

        if member == "NotifyKeyboardKeycode":
            self.injector.key_evdev(args[0], args[1] == 1)
        elif member == "NotifyKeyboardKeysym" and args[1] == 1:
            keysym = args[0]
            special = {0xFF0D: "\n", 0xFF09: "\t"}
            char = special.get(keysym) or chr(keysym - 0x1000000 if keysym >> 24 else keysym)
            self.injector.text(char)
        elif member == "NotifyPointerMotionAbsolute":
            width, height = self.size
            self.injector.mouse_move_abs(round(args[1]), round(args[2]), width, height)
        elif member == "NotifyPointerButton":
            button = {code: number for number, code in BUTTON_EVDEV.items()}.get(args[0])
            if button is not None:
                self.injector.mouse_button(button, args[1] == 1)
        elif member == "NotifyPointerAxisDiscrete":
            steps = -args[1] * WHEEL_DELTA
            self.injector.scroll(steps if args[0] == 0 else 0, -steps if args[0] == 1 else 0)


PROPERTIES = {
    IMPL: {"AvailableSourceTypes": ("u", 1), "AvailableCursorModes": ("u", 3), "version": ("u", 4)},
    REMOTE: {"AvailableDeviceTypes": ("u", 3), "version": ("u", 1)},
}


def main() -> None:
    output, record = sys.argv[1], Path(sys.argv[2])
    conn = open_dbus_connection(bus="SESSION")
    conn.send_and_get_reply(message_bus.RequestName(BUS_NAME))
    shares: dict[str, Share] = {}
    share_numbers = itertools.count()
    restored: dict[str, bool] = {}
    devices: dict[str, int] = {}
    remote: RemoteInput | None = None

    def note(**what: Any) -> None:
        with record.open("a") as handle:
            handle.write(json.dumps(what) + "\n")

    def start(session: str, kind: str) -> dict[str, tuple[str, Any]]:
        note(start="restored" if restored.get(session) else "asked", kind=kind)
        # A name never used before (not the count of open shares, which falls on Close): a
        # session can never be handed an earlier session's node.
        share = Share(output, f"pftest-{next(share_numbers)}-{os.getpid()}")
        shares[session] = share
        width, height = Share.size_of(output)
        stream = {
            "source_type": ("u", 1),
            "position": ("(ii)", (0, 0)),
            "size": ("(ii)", (width, height)),
        }
        results = {"streams": ("a(ua{sv})", [(share.node_id(), stream)])}
        if kind == "screencast":
            results["persist_mode"] = ("u", 2)
            results["restore_data"] = ("(suv)", ("pftest", 1, ("s", output)))
        else:
            results["devices"] = ("u", devices.get(session, 0))
        return results

    while True:
        msg = conn.receive()
        if msg.header.message_type is not MessageType.method_call:
            continue
        fields = msg.header.fields
        iface, member = fields.get(HeaderFields.interface), fields.get(HeaderFields.member)
        path = fields.get(HeaderFields.path)
        reply: tuple[str, tuple[Any, ...]] | None = ("ua{sv}", (0, {}))
        if iface == "org.freedesktop.DBus.Properties":
            props = PROPERTIES.get(msg.body[0], {})
            reply = ("a{sv}", (props,)) if member == "GetAll" else ("v", (props[msg.body[1]],))
        elif iface == SESSION and member == "Close":
            share = shares.pop(str(path), None)
            if share is not None:
                share.close()
            note(closed=str(path))
            reply = ("", ())
        elif iface in (IMPL, REMOTE) and member == "CreateSession":
            pass
        elif iface == IMPL and member == "SelectSources":
            restored[msg.body[1]] = "restore_data" in msg.body[3]
        elif iface == REMOTE and member == "SelectDevices":
            devices[msg.body[1]] = int(msg.body[3].get("types", ("u", 3))[1])
        elif member == "Start" and iface in (IMPL, REMOTE):
            kind = "screencast" if iface == IMPL else "remote-desktop"
            reply = ("ua{sv}", (0, start(msg.body[1], kind)))
        elif iface == REMOTE and member.startswith("Notify"):
            note(notify=member)
            if remote is None:
                remote = RemoteInput(output)
            remote.notify(member, tuple(msg.body[2:]))
            reply = ("", ())
        else:
            reply = None
        if reply is None:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))
        else:
            conn.send(new_method_return(msg, *reply) if reply[0] else new_method_return(msg))


if __name__ == "__main__":
    main()
