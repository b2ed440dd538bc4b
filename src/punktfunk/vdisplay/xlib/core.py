"""ctypes bindings to libX11: a display connection that never takes the process down.

Xlib's default handlers print and `exit()` on any protocol or I/O error. Here protocol errors
are recorded per connection and raised as `XError` by `XDisplay.sync()`, and a lost server
marks the connection dead (`XDisplay.alive`) instead of exiting: the driver and the host keep
running when one X server dies. Every other X module builds on `XDisplay`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .. import xauth

c_display_p = ctypes.c_void_p
XID = ctypes.c_ulong


def load(soname: str) -> ctypes.CDLL:
    """Load a shared library by soname (or whatever version ldconfig knows); OSError if absent."""
    try:
        return ctypes.CDLL(soname)
    except OSError:
        found = ctypes.util.find_library(soname.split(".so")[0].removeprefix("lib"))
        if found is None:
            raise OSError(f"{soname} is not installed") from None
        return ctypes.CDLL(found)


_x11 = load("libX11.so.6")
# Connections are used from several threads (driver publishers, the capture thread), so Xlib
# must lock internally; this has to be the first Xlib call in the process.
_x11.XInitThreads()
libx11 = _x11


class XErrorEvent(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("display", c_display_p),
        ("resourceid", XID),
        ("serial", ctypes.c_ulong),
        ("error_code", ctypes.c_ubyte),
        ("request_code", ctypes.c_ubyte),
        ("minor_code", ctypes.c_ubyte),
    )


class XEvent(ctypes.Union):
    _fields_ = (("type", ctypes.c_int), ("pad", ctypes.c_long * 24))


class XConfigureEvent(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", c_display_p),
        ("event", XID),
        ("window", XID),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
    )


CONFIGURE_NOTIFY = 22
STRUCTURE_NOTIFY_MASK = 1 << 17

_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, c_display_p, ctypes.POINTER(XErrorEvent))
_IO_ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, c_display_p)
_IO_EXIT_HANDLER = ctypes.CFUNCTYPE(None, c_display_p, ctypes.c_void_p)

_x11.XOpenDisplay.restype = c_display_p
_x11.XOpenDisplay.argtypes = (ctypes.c_char_p,)
_x11.XSetAuthorization.restype = None
_x11.XSetAuthorization.argtypes = (ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
# XSetAuthorization is process-wide: every XOpenDisplay of ours holds this while it applies.
_open_lock = threading.Lock()
for _name in ("XCloseDisplay", "XConnectionNumber", "XDefaultScreen", "XPending", "XFlush"):
    getattr(_x11, _name).argtypes = (c_display_p,)
_x11.XSync.argtypes = (c_display_p, ctypes.c_int)
_x11.XDefaultRootWindow.restype = XID
_x11.XDefaultRootWindow.argtypes = (c_display_p,)
_x11.XDefaultDepth.argtypes = (c_display_p, ctypes.c_int)
_x11.XDefaultVisual.restype = ctypes.c_void_p
_x11.XDefaultVisual.argtypes = (c_display_p, ctypes.c_int)
_x11.XNextEvent.argtypes = (c_display_p, ctypes.POINTER(XEvent))
_x11.XSelectInput.argtypes = (c_display_p, XID, ctypes.c_long)
_x11.XFree.argtypes = (ctypes.c_void_p,)
_x11.XGetGeometry.argtypes = (
    c_display_p,
    XID,
    ctypes.POINTER(XID),
    *(ctypes.POINTER(ctypes.c_int),) * 2,
    *(ctypes.POINTER(ctypes.c_uint),) * 4,
)
_x11.XSetErrorHandler.argtypes = (_ERROR_HANDLER,)
_x11.XSetErrorHandler.restype = ctypes.c_void_p
_x11.XSetIOErrorHandler.argtypes = (_IO_ERROR_HANDLER,)
_x11.XSetIOErrorHandler.restype = ctypes.c_void_p
_x11.XSetIOErrorExitHandler.argtypes = (c_display_p, _IO_EXIT_HANDLER, ctypes.c_void_p)
_x11.XGetErrorText.argtypes = (c_display_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)


@dataclass(frozen=True)
class XErrorInfo:
    code: int
    request: int
    minor: int
    resource: int


class XError(RuntimeError):
    """An X protocol error, or a lost connection; the message says which request failed."""


_errors: dict[int, list[XErrorInfo]] = {}
_dead: set[int] = set()
_lock = threading.Lock()


@_ERROR_HANDLER
def _on_error(dpy: int, event: ctypes._Pointer[XErrorEvent]) -> int:
    e = event.contents
    with _lock:
        _errors.setdefault(dpy, []).append(
            XErrorInfo(e.error_code, e.request_code, e.minor_code, e.resourceid)
        )
    return 0


@_IO_ERROR_HANDLER
def _on_io_error(dpy: int) -> int:
    with _lock:
        _dead.add(dpy)
    return 0


@_IO_EXIT_HANDLER
def _on_io_exit(dpy: int, data: int) -> None:
    # Returning (instead of exit()) leaves the connection unusable but the process alive.
    with _lock:
        _dead.add(dpy)


_x11.XSetErrorHandler(_on_error)
_x11.XSetIOErrorHandler(_on_io_error)


class XDisplay:
    """One connection to an X server, closed by `close()` or the with-block."""

    def __init__(self, name: str) -> None:
        cookie = xauth.cookie_for(name)  # one of our own servers: present its cookie
        with _open_lock:
            if cookie is None:
                ptr = _x11.XOpenDisplay(name.encode())
            else:
                name_b = xauth.COOKIE_NAME
                _x11.XSetAuthorization(name_b, len(name_b), cookie, len(cookie))
                try:
                    ptr = _x11.XOpenDisplay(name.encode())
                finally:
                    _x11.XSetAuthorization(None, 0, None, 0)  # back to XAUTHORITY lookups
        if not ptr:
            raise XError(f"cannot open X display {name!r}")
        self.ptr: int = ptr
        self.name = name
        self._fd = int(_x11.XConnectionNumber(ptr))
        _x11.XSetIOErrorExitHandler(ptr, _on_io_exit, None)
        self.screen = _x11.XDefaultScreen(ptr)
        self.root = int(_x11.XDefaultRootWindow(ptr))
        self.depth = int(_x11.XDefaultDepth(ptr, self.screen))
        self.visual = _x11.XDefaultVisual(ptr, self.screen)

    @property
    def alive(self) -> bool:
        with _lock:
            return self.ptr != 0 and self.ptr not in _dead

    def fileno(self) -> int:
        return self._fd

    def take_errors(self) -> list[XErrorInfo]:
        with _lock:
            return _errors.pop(self.ptr, [])

    def sync(self, what: str = "request") -> None:
        """Round-trip to the server and raise XError for any error since the last check."""
        self._check_alive(what)
        _x11.XSync(self.ptr, 0)
        self._check_alive(what)
        errors = self.take_errors()
        if errors:
            first = errors[0]
            text = ctypes.create_string_buffer(128)
            _x11.XGetErrorText(self.ptr, first.code, text, len(text))
            raise XError(
                f"{what} on {self.name} failed: {text.value.decode(errors='replace')} "
                f"(error {first.code}, request {first.request}.{first.minor})"
            )

    def _check_alive(self, what: str) -> None:
        if not self.alive:
            raise XError(f"{what}: the X server {self.name} is gone")

    def flush(self) -> None:
        if self.alive:
            _x11.XFlush(self.ptr)

    def root_size(self) -> tuple[int, int]:
        """The screen's current size (the root window follows every RandR mode set)."""
        self._check_alive("XGetGeometry")
        root = XID()
        x, y = ctypes.c_int(), ctypes.c_int()
        w, h, border, depth = (ctypes.c_uint() for _ in range(4))
        refs = (ctypes.byref(v) for v in (root, x, y, w, h, border, depth))
        ok = _x11.XGetGeometry(self.ptr, self.root, *refs)
        if not ok or not self.alive:
            raise XError(f"XGetGeometry on {self.name} failed")
        return int(w.value), int(h.value)

    def select_root_input(self, mask: int) -> None:
        _x11.XSelectInput(self.ptr, self.root, mask)

    def events(self) -> Iterator[XEvent]:
        """Drain the events already queued or readable, without blocking."""
        while self.alive and _x11.XPending(self.ptr) > 0:
            event = XEvent()
            _x11.XNextEvent(self.ptr, ctypes.byref(event))
            yield event

    def wait(self, timeout: float, wake_fd: int | None = None) -> bool:
        """Block up to `timeout` s until events are pending (or `wake_fd` is readable); False on
        timeout or a dead server."""
        if not self.alive:
            return False
        if _x11.XPending(self.ptr) > 0:
            return True
        fds = [self.fileno()] if wake_fd is None else [self.fileno(), wake_fd]
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return False
        return bool(readable) and self.alive

    def close(self) -> None:
        if self.ptr:
            alive = self.alive
            ptr, self.ptr = self.ptr, 0
            if alive:
                _x11.XCloseDisplay(ptr)
            else:
                # After an I/O error seen on another thread, Xlib's display lock can stay
                # owned by that thread and XCloseDisplay would block forever: close only the
                # socket and leave the (small) Display struct behind.
                os.close(self._fd)
            with _lock:
                _errors.pop(ptr, None)
                _dead.discard(ptr)

    def __enter__(self) -> XDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def configure_size(event: XEvent) -> tuple[int, int] | None:
    """The new size if `event` is a ConfigureNotify (on the root: a RandR size change)."""
    if event.type != CONFIGURE_NOTIFY:
        return None
    cfg = ctypes.cast(ctypes.byref(event), ctypes.POINTER(XConfigureEvent)).contents
    return int(cfg.width), int(cfg.height)
