"""xvfb: each monitor is an Xvfb server, read in place through its `-fbdir` framebuffer file.

Xvfb can only show sizes up to the one it started with, and only modes created through RandR
by a connection that stays open, so it starts at the largest mode the bounds allow and the
driver's connection adds the client's mode (and the usual smaller ones) and switches to it.
The framebuffer file is an XWD image whose pixels sit at a fixed offset with the start-up
stride; a smaller mode is its top-left corner. It is copied only after DAMAGE (re-armed before
the copy, so drawing that races the copy is copied again), never on a blind timer, which would
tear. Without libXdamage it copies with MIT-SHM on a refresh timer instead.
"""

from __future__ import annotations

import mmap
import shutil
import struct
from pathlib import Path

import numpy as np

from ....proto.control import MAX_HEIGHT, MAX_WIDTH
from ...base import DisplayBackend, DisplayMode
from ...xserver import XServer, XServerError, make_workdir, start_server
from . import BackendError
from .xscreen import XScreenSource

_XWD_FIELDS = 25  # CARD32 header fields before the window name


class FramebufferFile:
    """The XWD file Xvfb keeps its screen in, mapped read-only."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        fields = struct.unpack_from(f">{_XWD_FIELDS}I", self._map, 0)
        header_size, width, height = fields[0], fields[4], fields[5]
        bits_per_pixel, stride, ncolors = fields[11], fields[12], fields[19]
        if bits_per_pixel != 32 or fields[7] != 0:
            self._map.close()
            raise BackendError(f"{path}: {bits_per_pixel} bpp / byte order {fields[7]} unsupported")
        offset = header_size + ncolors * 12  # XWDColor entries follow the header
        self.pixels = np.frombuffer(self._map, np.uint8, stride * height, offset).reshape(
            height, stride // 4, 4
        )[:, :width]

    def close(self) -> None:
        del self.pixels
        self._map.close()


class XvfbSource(XScreenSource):
    max_size = (MAX_WIDTH, MAX_HEIGHT)

    def __init__(self, server: XServer, mode: DisplayMode, fb_path: Path) -> None:
        super().__init__(server, mode)
        try:
            self.fb = FramebufferFile(fb_path)
        except (OSError, ValueError, BackendError) as exc:
            self.close()
            raise BackendError(f"Xvfb framebuffer {fb_path}: {exc}") from None

    def _read(self, dst: np.ndarray) -> int | None:
        if self.watch.damage is None:
            return self.watch.grab(dst)
        height, width = dst.shape[:2]
        if (width, height) != self.watch.size:
            return None
        ns = self.watch.take()
        np.copyto(dst, self.fb.pixels[:height, :width])
        return ns

    def close(self) -> None:
        fb = getattr(self, "fb", None)
        if fb is not None:
            fb.close()
            self.fb = None
        super().close()


class XvfbBackend:
    name = DisplayBackend.XVFB
    renders_hdr = False

    def __init__(self, auth_dir: Path | None = None) -> None:
        self.auth_dir = auth_dir  # where its X servers' cookies go (None: their work dir)

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> XvfbSource:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise BackendError("Xvfb is not installed (apt-get install xvfb)")
        # tmpfs: the framebuffer file is written at every drawing operation.
        workdir = make_workdir("xvfb", Path("/dev/shm"))

        def argv(number: int) -> list[str]:
            return [
                binary,
                f":{number}",
                "-screen",
                "0",
                f"{MAX_WIDTH}x{MAX_HEIGHT}x24",
                "-fbdir",
                str(workdir),
                "-noreset",
                "-nolisten",
                "tcp",
                "+extension",
                "RANDR",
                "-dpi",
                "96",
            ]

        try:
            server = start_server("Xvfb", argv, workdir, auth_dir=self.auth_dir)
        except XServerError as exc:
            raise BackendError(str(exc)) from None
        return XvfbSource(server, mode, workdir / "Xvfb_screen0")
