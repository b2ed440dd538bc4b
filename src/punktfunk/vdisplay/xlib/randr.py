"""RandR 1.2 through libXrandr: read the real mode, add modes, switch modes.

This is what the driver uses to put a monitor at the client's exact mode, what a "game" uses in
the tests to change it, and what the capture layer polls to follow such a change. Errors come
back as `XError` from the connection's sync (libXrandr does not spin after a BadRRMode the way
python-xlib 0.33 does, so no watchdog thread is needed around these calls).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from ..timing import Timing
from .core import XID, XDisplay, XError, c_display_p, load

_xrr = load("libXrandr.so.2")

RR_CONNECTED = 0
RR_ROTATE_0 = 1
RR_HSYNC_POSITIVE, RR_HSYNC_NEGATIVE, RR_VSYNC_POSITIVE, RR_VSYNC_NEGATIVE = 1, 2, 4, 8
_MM_PER_PX = 25.4 / 96  # a 96 dpi desktop


class XRRModeInfo(ctypes.Structure):
    _fields_ = (
        ("id", XID),
        ("width", ctypes.c_uint),
        ("height", ctypes.c_uint),
        ("dotClock", ctypes.c_ulong),
        ("hSyncStart", ctypes.c_uint),
        ("hSyncEnd", ctypes.c_uint),
        ("hTotal", ctypes.c_uint),
        ("hSkew", ctypes.c_uint),
        ("vSyncStart", ctypes.c_uint),
        ("vSyncEnd", ctypes.c_uint),
        ("vTotal", ctypes.c_uint),
        ("name", ctypes.c_char_p),
        ("nameLength", ctypes.c_uint),
        ("modeFlags", ctypes.c_ulong),
    )


class XRRScreenResources(ctypes.Structure):
    _fields_ = (
        ("timestamp", ctypes.c_ulong),
        ("configTimestamp", ctypes.c_ulong),
        ("ncrtc", ctypes.c_int),
        ("crtcs", ctypes.POINTER(XID)),
        ("noutput", ctypes.c_int),
        ("outputs", ctypes.POINTER(XID)),
        ("nmode", ctypes.c_int),
        ("modes", ctypes.POINTER(XRRModeInfo)),
    )


class XRROutputInfo(ctypes.Structure):
    _fields_ = (
        ("timestamp", ctypes.c_ulong),
        ("crtc", XID),
        ("name", ctypes.c_char_p),
        ("nameLen", ctypes.c_int),
        ("mm_width", ctypes.c_ulong),
        ("mm_height", ctypes.c_ulong),
        ("connection", ctypes.c_ushort),
        ("subpixel_order", ctypes.c_ushort),
        ("ncrtc", ctypes.c_int),
        ("crtcs", ctypes.POINTER(XID)),
        ("nclone", ctypes.c_int),
        ("clones", ctypes.POINTER(XID)),
        ("nmode", ctypes.c_int),
        ("npreferred", ctypes.c_int),
        ("modes", ctypes.POINTER(XID)),
    )


class XRRCrtcInfo(ctypes.Structure):
    _fields_ = (
        ("timestamp", ctypes.c_ulong),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("width", ctypes.c_uint),
        ("height", ctypes.c_uint),
        ("mode", XID),
        ("rotation", ctypes.c_ushort),
        ("noutput", ctypes.c_int),
        ("outputs", ctypes.POINTER(XID)),
    )


_int_p = ctypes.POINTER(ctypes.c_int)
_res_p = ctypes.POINTER(XRRScreenResources)
_xrr.XRRQueryExtension.argtypes = (c_display_p, _int_p, _int_p)
_xrr.XRRGetScreenResourcesCurrent.restype = _res_p
_xrr.XRRGetScreenResourcesCurrent.argtypes = (c_display_p, XID)
_xrr.XRRFreeScreenResources.argtypes = (_res_p,)
_xrr.XRRGetOutputInfo.restype = ctypes.POINTER(XRROutputInfo)
_xrr.XRRGetOutputInfo.argtypes = (c_display_p, _res_p, XID)
_xrr.XRRFreeOutputInfo.argtypes = (ctypes.POINTER(XRROutputInfo),)
_xrr.XRRGetCrtcInfo.restype = ctypes.POINTER(XRRCrtcInfo)
_xrr.XRRGetCrtcInfo.argtypes = (c_display_p, _res_p, XID)
_xrr.XRRFreeCrtcInfo.argtypes = (ctypes.POINTER(XRRCrtcInfo),)
_xrr.XRRCreateMode.restype = XID
_xrr.XRRCreateMode.argtypes = (c_display_p, XID, ctypes.POINTER(XRRModeInfo))
_xrr.XRRAddOutputMode.argtypes = (c_display_p, XID, XID)
_xrr.XRRSetCrtcConfig.argtypes = (
    c_display_p,
    _res_p,
    XID,
    ctypes.c_ulong,
    ctypes.c_int,
    ctypes.c_int,
    XID,
    ctypes.c_ushort,
    ctypes.POINTER(XID),
    ctypes.c_int,
)
_xrr.XRRSetScreenSize.argtypes = (c_display_p, XID, *(ctypes.c_int,) * 4)
_xrr.XRRGetScreenSizeRange.argtypes = (c_display_p, XID, *(_int_p,) * 4)


@dataclass(frozen=True)
class ScreenMode:
    width: int
    height: int
    refresh_hz: float


def has_randr(display: XDisplay) -> bool:
    event_base, error_base = ctypes.c_int(), ctypes.c_int()
    return bool(
        _xrr.XRRQueryExtension(display.ptr, ctypes.byref(event_base), ctypes.byref(error_base))
    )


class _Resources:
    """Screen resources plus the first connected output and its CRTC, freed on exit."""

    def __init__(self, display: XDisplay) -> None:
        self.display = display
        self.res = _xrr.XRRGetScreenResourcesCurrent(display.ptr, display.root)
        if not self.res:
            raise XError(f"RandR screen resources of {display.name} are unavailable")
        self.output, self.crtc, self.output_modes = 0, 0, ()
        r = self.res.contents
        for i in range(r.noutput):
            info = _xrr.XRRGetOutputInfo(display.ptr, self.res, r.outputs[i])
            try:
                o = info.contents
                if o.connection == RR_CONNECTED and (o.crtc or o.ncrtc):
                    self.output = int(r.outputs[i])
                    self.crtc = int(o.crtc or o.crtcs[0])
                    self.output_modes = tuple(int(o.modes[j]) for j in range(o.nmode))
                    break
            finally:
                _xrr.XRRFreeOutputInfo(info)
        if not self.output:
            _xrr.XRRFreeScreenResources(self.res)
            raise XError(f"{display.name} has no connected RandR output")

    def modes(self) -> dict[int, XRRModeInfo]:
        r = self.res.contents
        return {int(r.modes[i].id): r.modes[i] for i in range(r.nmode)}

    def crtc_mode(self) -> int:
        info = _xrr.XRRGetCrtcInfo(self.display.ptr, self.res, self.crtc)
        try:
            return int(info.contents.mode)
        finally:
            _xrr.XRRFreeCrtcInfo(info)

    def __enter__(self) -> _Resources:
        return self

    def __exit__(self, *exc: object) -> None:
        _xrr.XRRFreeScreenResources(self.res)


def _refresh(mode: XRRModeInfo) -> float:
    total = mode.hTotal * mode.vTotal
    return mode.dotClock / total if total else 0.0


def current_mode(display: XDisplay) -> ScreenMode:
    """The mode the first connected output shows now (size from the root window)."""
    width, height = display.root_size()
    with _Resources(display) as res:
        mode = res.modes().get(res.crtc_mode())
        refresh = _refresh(mode) if mode is not None else 0.0
        return ScreenMode(width, height, refresh)


def output_modes(display: XDisplay) -> list[ScreenMode]:
    """Every mode the connected output offers (what a game's mode list shows)."""
    with _Resources(display) as res:
        modes = res.modes()
        return [
            ScreenMode(m.width, m.height, _refresh(m))
            for mid in res.output_modes
            if (m := modes.get(mid)) is not None
        ]


def _flags(timing: Timing) -> int:
    h = RR_HSYNC_POSITIVE if timing.h_sync_positive else RR_HSYNC_NEGATIVE
    return h | (RR_VSYNC_POSITIVE if timing.v_sync_positive else RR_VSYNC_NEGATIVE)


def add_mode(display: XDisplay, timing: Timing, name: str) -> int:
    """Create a mode and offer it on the connected output; returns its id."""
    info = XRRModeInfo(
        width=timing.width,
        height=timing.height,
        dotClock=timing.pixel_clock_hz,
        hSyncStart=timing.h_sync_start,
        hSyncEnd=timing.h_sync_end,
        hTotal=timing.h_total,
        vSyncStart=timing.v_sync_start,
        vSyncEnd=timing.v_sync_end,
        vTotal=timing.v_total,
        name=name.encode(),
        nameLength=len(name),
        modeFlags=_flags(timing),
    )
    with _Resources(display) as res:
        for mid, mode in res.modes().items():
            if mode.name == name.encode() and mid in res.output_modes:
                return mid
        mode_id = int(_xrr.XRRCreateMode(display.ptr, display.root, ctypes.byref(info)))
        display.sync(f"RRCreateMode {name}")
        _xrr.XRRAddOutputMode(display.ptr, res.output, mode_id)
        display.sync(f"RRAddOutputMode {name}")
        return mode_id


def set_mode(display: XDisplay, width: int, height: int, refresh_hz: float | None = None) -> None:
    """Switch the output to an offered `width`x`height` mode (the closest refresh), resizing the
    screen to match; XError if no such mode is offered or the server refuses."""
    with _Resources(display) as res:
        modes = res.modes()
        fits = [
            m
            for mid in res.output_modes
            if (m := modes.get(mid)) is not None and (m.width, m.height) == (width, height)
        ]
        if not fits:
            raise XError(f"{display.name} offers no {width}x{height} mode")
        lo_w, lo_h, hi_w, hi_h = (ctypes.c_int() for _ in range(4))
        _xrr.XRRGetScreenSizeRange(
            display.ptr, display.root, *(ctypes.byref(v) for v in (lo_w, lo_h, hi_w, hi_h))
        )
        if not (lo_w.value <= width <= hi_w.value and lo_h.value <= height <= hi_h.value):
            # Checked first: a refused size after the CRTC is switched off leaves no picture.
            raise XError(
                f"{display.name} screens range {lo_w.value}x{lo_h.value}.."
                f"{hi_w.value}x{hi_h.value}; {width}x{height} does not fit"
            )
        want = refresh_hz or 0.0
        mode = min(fits, key=lambda m: abs(_refresh(m) - want) if want else -_refresh(m))
        output = (XID * 1)(res.output)
        cur_w, cur_h = display.root_size()
        if width < cur_w or height < cur_h:
            # The screen cannot shrink below a lit CRTC: switch it off first, like xrandr does.
            _xrr.XRRSetCrtcConfig(display.ptr, res.res, res.crtc, 0, 0, 0, 0, RR_ROTATE_0, None, 0)
        mm_w, mm_h = round(width * _MM_PER_PX), round(height * _MM_PER_PX)
        _xrr.XRRSetScreenSize(display.ptr, display.root, width, height, mm_w, mm_h)
        status = _xrr.XRRSetCrtcConfig(
            display.ptr, res.res, res.crtc, 0, 0, 0, int(mode.id), RR_ROTATE_0, output, 1
        )
        display.sync(f"RandR mode set {width}x{height}")
        if status != 0:
            raise XError(
                f"{display.name} refused mode {width}x{height} (RRSetConfig status {status})"
            )
