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
from collections.abc import Callable

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


def gst_command(node_id: int, fd: int | None = None) -> list[str]:
    """The child that turns PipeWire node `node_id` into GDP-framed BGRx frames; `fd` is a
    portal's PipeWire connection (None: the PipeWire of the child's XDG_RUNTIME_DIR)."""
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        raise CaptureError(
            "PipeWire capture needs GStreamer (apt-get install gstreamer1.0-tools "
            "gstreamer1.0-pipewire gstreamer1.0-plugins-base gstreamer1.0-plugins-bad)"
        )
    remote = [] if fd is None else [f"fd={fd}"]
    return [
        gst, "-q",
        "pipewiresrc", *remote, f"path={node_id}", "always-copy=true", "do-timestamp=true",
        # WirePlumber 0.4 links a stream only to a node of its own media.type, which
        # pipewiresrc 0.3.65 does not set.
        "stream-properties=props,media.type=Video",
        "!", "videoconvert", "!", "video/x-raw,format=BGRx",
        "!", "gdppay", "!", "fdsink", "fd=1", "sync=false",
    ]  # fmt: skip


class PipeWireStream:
    """One PipeWire node read by a GStreamer child; keeps the newest frame (latest wins).

    Two buffers: one the reader fills, one handed out; `take` copies under the lock, so the
    reader never refills a buffer being read.
    """

    def __init__(
        self, node_id: int, *, fd: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.node_id = node_id
        self._cond = threading.Condition()
        self._caps: VideoCaps | None = None
        self._frame: tuple[VideoCaps, bytearray, int, int] | None = None  # caps, data, seq, ns
        self._spare: bytearray | None = None
        self._ended: str | None = None
        # No PDEATHSIG (it follows the forking thread, which may be a short-lived setup thread):
        # the child ends when its pipe breaks or its PipeWire connection closes.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        try:
            self._proc = subprocess.Popen(
                gst_command(node_id, fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                pass_fds=() if fd is None else (fd,),
                env=env,
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
        self._reader = threading.Thread(target=self._read, name=f"pipewire-{node_id}", daemon=True)
        self._reader.start()

    @property
    def caps(self) -> VideoCaps | None:
        """The stream's current format (None until the child has negotiated one)."""
        with self._cond:
            return self._caps

    @property
    def ended(self) -> str | None:
        """Why the stream ended (the child's exit and last words), or None while it runs."""
        with self._cond:
            return self._ended

    def wait(self, taken: int, timeout: float) -> bool:
        """Block up to `timeout` s for a frame newer than sequence number `taken`; False on
        timeout or once the stream ended (see `ended`)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._frame is None or self._frame[2] == taken:
                remaining = deadline - time.monotonic()
                if self._ended is not None or remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def take(self, copy: Callable[[VideoCaps, bytearray], bool]) -> tuple[int, int] | None:
        """Hand the newest frame to `copy(caps, data)` under the lock; its sequence number and
        capture time (CLOCK_MONOTONIC ns) if `copy` took it, else None."""
        with self._cond:
            if self._frame is None:
                return None
            caps, data, seq, capture_ns = self._frame
            return (seq, capture_ns) if copy(caps, data) else None

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
                    with self._cond:
                        self._caps = parse_caps(bytes(payload))
        except (GdpError, OSError, ValueError) as exc:
            reason = f"unreadable stream from GStreamer: {exc}"
        self._proc.wait()
        detail = ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            detail = self._stderr.read()[-400:].decode(errors="replace").strip()
        detail = detail.replace("\n", " | ")
        with self._cond:
            self._ended = (
                f"{reason} (exit {self._proc.returncode}){': ' + detail if detail else ''}"
            )
            self._cond.notify_all()

    def _take_buffer(self, stream: object, length: int) -> bool:
        with self._cond:
            caps = self._caps
            spare, self._spare = self._spare, None
        if caps is None or caps.frame_bytes != length:
            raise GdpError(f"a {length}-byte frame does not match caps {caps}")
        buf = spare if spare is not None and len(spare) == length else bytearray(length)
        if _read_exact(stream, buf) is None:
            return False
        now = time.monotonic_ns()
        with self._cond:
            previous = self._frame
            seq = previous[2] + 1 if previous is not None else 1
            self._frame = (caps, buf, seq, now)
            if previous is not None:
                self._spare = previous[1]
            self._cond.notify_all()
        return True

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


def as_bgra(caps: VideoCaps, data: bytearray) -> np.ndarray:
    """A frame's bytes as a height x width x 4 view (no copy)."""
    return np.frombuffer(data, np.uint8).reshape(caps.height, caps.width, 4)


class PipeWireCapturer(OutRingCapturer):
    def __init__(
        self, fd: int, node_id: int, fmt: OutputFormat, *, pipeline_depth: int = 2
    ) -> None:
        if fmt.hdr:
            raise CaptureError("portal capture here is 8-bit only")
        self._fmt = fmt
        self._depth = pipeline_depth
        self.node_id = node_id
        self._stream = PipeWireStream(node_id, fd=fd)
        self._out = OutRing()
        self._active = True
        self._taken = 0
        self._seq = 0
        self._last: CapturedFrame | None = None
        event(_log, "capture.opened", backend="pipewire", display=f"node {node_id}")

    def set_active(self, active: bool) -> None:
        self._active = active

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        if not self._stream.wait(self._taken, timeout):
            if (ended := self._stream.ended) is not None:
                raise CaptureLost(f"PipeWire node {self.node_id}: {ended}")
            return None

        def copy(caps: VideoCaps, data: bytearray) -> bool:
            if self._active:
                np.copyto(
                    self._out.slot(caps.width, caps.height, PixelFormat.BGRA8), as_bgra(caps, data)
                )
            return True

        taken = self._stream.take(copy)
        if taken is None:
            return None
        self._taken, capture_ns = taken
        if not self._active:
            return None
        self._seq += 1
        self._last = CapturedFrame(
            self._out.commit(), PixelFormat.BGRA8, self._seq, capture_ns, False
        )
        return self._last

    def close(self) -> None:
        self._stream.close()


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
