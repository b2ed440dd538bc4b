"""MIT-SHM images: the X server copies the screen straight into memory shared with us.

One SysV segment per image, preallocated at a size and reused for every grab (allocating a
multi-MB buffer per frame costs more than the copy). The segment is marked for removal as soon
as the server has attached it, so it cannot outlive both processes, whatever happens.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from .core import XID, XDisplay, XError, c_display_p, libx11, load

_xext = load("libXext.so.6")
_libc = ctypes.CDLL(None, use_errno=True)

IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
Z_PIXMAP = 2
ALL_PLANES = ctypes.c_ulong(-1).value


class XShmSegmentInfo(ctypes.Structure):
    _fields_ = (
        ("shmseg", XID),
        ("shmid", ctypes.c_int),
        ("shmaddr", ctypes.c_void_p),
        ("readOnly", ctypes.c_int),
    )


class XImage(ctypes.Structure):
    """The leading fields of Xlib's XImage (we never touch the rest)."""

    _fields_ = (
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
    )


_xext.XShmQueryExtension.argtypes = (c_display_p,)
_xext.XShmCreateImage.restype = ctypes.POINTER(XImage)
_xext.XShmCreateImage.argtypes = (
    c_display_p,
    ctypes.c_void_p,
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.POINTER(XShmSegmentInfo),
    ctypes.c_uint,
    ctypes.c_uint,
)
_xext.XShmAttach.argtypes = (c_display_p, ctypes.POINTER(XShmSegmentInfo))
_xext.XShmDetach.argtypes = (c_display_p, ctypes.POINTER(XShmSegmentInfo))
_xext.XShmGetImage.argtypes = (
    c_display_p,
    XID,
    ctypes.POINTER(XImage),
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_ulong,
)
_xext.XShmPutImage.argtypes = (
    c_display_p,
    XID,
    ctypes.c_void_p,
    ctypes.POINTER(XImage),
    *(ctypes.c_int,) * 4,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_int,
)
_libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_libc.shmdt.argtypes = (ctypes.c_void_p,)
_libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_x11 = libx11
_x11.XDefaultGC.restype = ctypes.c_void_p
_x11.XDefaultGC.argtypes = (c_display_p, ctypes.c_int)


def shm_available(display: XDisplay) -> bool:
    return bool(_xext.XShmQueryExtension(display.ptr))


class ShmImage:
    """A `width` x `height` BGRX image in a shared segment; `pixels` views it (no copies).

    The views are valid until `close()`, which unmaps the segment.
    """

    def __init__(self, display: XDisplay, width: int, height: int) -> None:
        if display.depth not in (24, 32):
            raise XError(f"{display.name} has depth {display.depth}; only 24/32-bit is captured")
        self.display = display
        self.width, self.height = width, height
        self._info = XShmSegmentInfo()
        self._attached = False
        image = _xext.XShmCreateImage(
            display.ptr,
            display.visual,
            display.depth,
            Z_PIXMAP,
            None,
            ctypes.byref(self._info),
            width,
            height,
        )
        if not image:
            raise XError(f"XShmCreateImage {width}x{height} on {display.name} failed")
        self._image = image
        try:
            self._attach(image.contents)
        except BaseException:
            self.close()
            raise
        self.stride = image.contents.bytes_per_line
        raw = (ctypes.c_uint8 * (self.stride * height)).from_address(self._info.shmaddr)
        self.buffer = np.ctypeslib.as_array(raw).reshape(height, self.stride // 4, 4)
        self.pixels = self.buffer[:, :width, :]

    def _attach(self, image: XImage) -> None:
        if image.bits_per_pixel != 32:
            raise XError(f"{self.display.name}: {image.bits_per_pixel} bpp is not supported")
        size = image.bytes_per_line * image.height
        shmid = _libc.shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
        if shmid < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"shmget of {size} bytes: {os.strerror(errno)}")
        addr = _libc.shmat(shmid, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            errno = ctypes.get_errno()
            _libc.shmctl(shmid, IPC_RMID, None)
            raise OSError(errno, f"shmat: {os.strerror(errno)}")
        self._info.shmid, self._info.shmaddr, self._info.readOnly = shmid, addr, 0
        image.data = addr
        self._attached = True
        _xext.XShmAttach(self.display.ptr, ctypes.byref(self._info))
        try:
            self.display.sync("XShmAttach")
        finally:
            # Removed now: the segment lives exactly as long as someone has it attached.
            _libc.shmctl(shmid, IPC_RMID, None)

    def grab(self, x: int = 0, y: int = 0) -> bool:
        """Copy the root window's rectangle at (x, y) into `pixels`; False if the server said no
        (e.g. the screen shrank below this image) or is gone."""
        ok = _xext.XShmGetImage(self.display.ptr, self.display.root, self._image, x, y, ALL_PLANES)
        errors = self.display.take_errors()  # always: a stale error would fail a later sync
        return bool(ok) and not errors and self.display.alive

    def put(self, drawable: int | None = None, x: int = 0, y: int = 0) -> None:
        """Draw `pixels` onto `drawable` (the root window by default) and wait until done."""
        gc = _x11.XDefaultGC(self.display.ptr, self.display.screen)
        target = self.display.root if drawable is None else drawable
        _xext.XShmPutImage(
            self.display.ptr, target, gc, self._image, 0, 0, x, y, self.width, self.height, 0
        )
        self.display.sync("XShmPutImage")

    def close(self) -> None:
        self.pixels = self.buffer = np.empty((0, 0, 4), np.uint8)  # never a dangling view
        if self._attached:
            self._attached = False
            if self.display.alive:
                _xext.XShmDetach(self.display.ptr, ctypes.byref(self._info))
                _x11.XSync(self.display.ptr, 0)
            _libc.shmdt(self._info.shmaddr)
        image, self._image = self._image, None
        if image:
            image.contents.data = None  # the segment, not Xlib's to free
            _x11.XFree(ctypes.cast(image, ctypes.c_void_p))
