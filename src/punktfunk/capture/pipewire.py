"""Capture of a PipeWire video stream that a ScreenCast portal granted (`attach:portal`).

GStreamer's `pipewiresrc` does the PipeWire side (buffer negotiation, format conversion) in a
`gst-launch-1.0` child that owns nothing but the portal's PipeWire fd and writes BGRx frames,
framed by GDP (`wayland/gdp.py`) so each frame's size travels with it, down a pipe. A reader
thread keeps the newest frame (latest wins: a slow session skips frames, never queues them);
`next_frame` copies it into the OUT ring. The compositor sends a frame when the screen changed
(a static desktop costs nothing); a size change arrives as new caps before the first frame of
the new size. The child ending (the portal session closed, PipeWire gone) ends the capture
with `CaptureLost` and the child's last words.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

from ..log import event
from ..proto.frame import PixelFormat
from ..wayland.gdp import HEADER_SIZE, GdpError, PayloadType, VideoCaps, parse_caps, parse_header
from .base import CapturedFrame, CaptureError, OutputFormat
from .outring import OutRing, OutRingCapturer
from .recovery import CaptureLost

_log = logging.getLogger("punktfunk.capture")
_F_SETPIPE_SZ = 1031
_PIPE_BYTES = 1 << 20  # fewer reads per frame than the 64 KiB default


def gst_command(fd: int, node_id: int) -> list[str]:
    """The child that turns the portal's PipeWire node into GDP-framed BGRx frames."""
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        raise CaptureError(
            "portal capture needs GStreamer (apt-get install gstreamer1.0-tools "
            "gstreamer1.0-pipewire gstreamer1.0-plugins-base gstreamer1.0-plugins-bad)"
        )
    return [
        gst, "-q",
        "pipewiresrc", f"fd={fd}", f"path={node_id}", "always-copy=true", "do-timestamp=true",
        # WirePlumber 0.4 links a stream only to a node of its own media.type, which
        # pipewiresrc 0.3.65 does not set.
        "stream-properties=props,media.type=Video",
        "!", "videoconvert", "!", "video/x-raw,format=BGRx",
        "!", "gdppay", "!", "fdsink", "fd=1", "sync=false",
    ]  # fmt: skip


class _Latest:
    """The newest frame from the reader thread: two buffers, one being filled, one handed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.caps: VideoCaps | None = None
        self.frame: tuple[VideoCaps, bytearray, int, int] | None = None  # caps, data, seq, ns
        self.spare: bytearray | None = None
        self.ended: str | None = None


class PipeWireCapturer(OutRingCapturer):
    def __init__(
        self, fd: int, node_id: int, fmt: OutputFormat, *, pipeline_depth: int = 2
    ) -> None:
        if fmt.hdr:
            raise CaptureError("portal capture here is 8-bit only")
        self._fmt = fmt
        self._depth = pipeline_depth
        self.node_id = node_id
        # No PDEATHSIG (it follows the forking thread, which may be a short-lived setup thread):
        # the child ends when its pipe breaks or the portal session closes with our bus.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        try:
            self._proc = subprocess.Popen(
                gst_command(fd, node_id),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                pass_fds=(fd,),
                bufsize=0,
            )
        except OSError as exc:
            self._stderr.close()
            raise CaptureError(
                f"cannot start GStreamer for PipeWire node {node_id}: {exc}"
            ) from None
        assert self._proc.stdout is not None
        with contextlib.suppress(OSError):  # a smaller pipe only costs reads
            fcntl.fcntl(self._proc.stdout.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._latest = _Latest()
        self._out = OutRing()
        self._active = True
        self._taken = 0
        self._seq = 0
        self._last: CapturedFrame | None = None
        self._reader = threading.Thread(target=self._read, name=f"pipewire-{node_id}", daemon=True)
        self._reader.start()
        event(_log, "capture.opened", backend="pipewire", display=f"node {node_id}")

    # --- reader thread ---------------------------------------------------------------------

    def _read(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        reason = "GStreamer ended"
        try:
            while True:
                header = _read_exact(stream, bytearray(HEADER_SIZE))
                if header is None:
                    break
                packet = parse_header(bytes(header))
                if packet.kind is PayloadType.BUFFER:
                    if not self._take_buffer(stream, packet.length):
                        break
                    continue
                payload = _read_exact(stream, bytearray(packet.length))
                if payload is None:
                    break
                if packet.kind is PayloadType.CAPS:
                    with self._latest.cond:
                        self._latest.caps = parse_caps(bytes(payload))
        except (GdpError, OSError, ValueError) as exc:
            reason = f"unreadable stream from GStreamer: {exc}"
        self._proc.wait()
        detail = ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            detail = self._stderr.read()[-400:].decode(errors="replace").strip()
        detail = detail.replace("\n", " | ")
        with self._latest.cond:
            self._latest.ended = (
                f"{reason} (exit {self._proc.returncode}){': ' + detail if detail else ''}"
            )
            self._latest.cond.notify_all()

    def _take_buffer(self, stream: object, length: int) -> bool:
        latest = self._latest
        with latest.cond:
            caps = latest.caps
            spare, latest.spare = latest.spare, None
        if caps is None or caps.frame_bytes != length:
            raise GdpError(f"a {length}-byte frame does not match caps {caps}")
        buf = spare if spare is not None and len(spare) == length else bytearray(length)
        if _read_exact(stream, buf) is None:
            return False
        now = time.monotonic_ns()
        with latest.cond:
            previous = latest.frame
            seq = previous[2] + 1 if previous is not None else 1
            latest.frame = (caps, buf, seq, now)
            if previous is not None:
                latest.spare = previous[1]
            latest.cond.notify_all()
        return True

    # --- capture thread ---------------------------------------------------------------------

    def set_active(self, active: bool) -> None:
        self._active = active

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        latest = self._latest
        deadline = time.monotonic() + max(0.0, timeout)
        with latest.cond:
            while latest.frame is None or latest.frame[2] == self._taken:
                if latest.ended is not None:
                    raise CaptureLost(f"PipeWire node {self.node_id}: {latest.ended}")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not latest.cond.wait(remaining):
                    return None
            caps, data, seq, capture_ns = latest.frame
            self._taken = seq
            if not self._active:
                return None
            # The copy happens under the lock: the reader never refills a buffer being read.
            dst = self._out.slot(caps.width, caps.height, PixelFormat.BGRA8)
            np.copyto(dst, np.frombuffer(data, np.uint8).reshape(caps.height, caps.width, 4))
        self._seq += 1
        self._last = CapturedFrame(
            self._out.commit(), PixelFormat.BGRA8, self._seq, capture_ns, False
        )
        return self._last

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=3)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


def _read_exact(stream: object, buf: bytearray) -> bytearray | None:
    """Fill `buf` from the pipe; None at end of stream."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return None
        got += n
    return buf
