"""The IDD-push frame ring in POSIX shared memory: the host creates it, the driver publishes.

Layout and token packing are the ABI in `proto/frame.py`. The slot handoff uses the per-slot
`SlotHeader.state` word with a strict single-writer rule, so no compare-and-swap is needed:

    FREE --producer--> WRITING --producer--> READY --consumer--> READING --consumer--> FREE

The producer only ever writes a slot that is FREE or WRITING; the consumer only one that is
READY or READING. Ownership passes with one aligned 32-bit store (READY hands a slot to the
consumer, FREE hands it back), written after the data it publishes; x86-64 keeps stores in
order (TSO), so a reader that sees READY sees the pixels and the header. The producer never
waits: no FREE slot means the frame is dropped and `dropped` counted. The consumer takes only
the slot `latest` names, after checking the token's generation against the ring's (a frame
produced for an older mode is never delivered), and hands back every READY slot the newest
frame supersedes, including stale-generation ones.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ownfiles import NotOursError, create_exclusive, open_own, owned, pid_alive, unlink_own
from ..proto.frame import (
    ABI_VERSION,
    FRAME_MAGIC,
    HEADER_SIZE,
    SEQ_BITS,
    SLOT_HEADER_SIZE,
    FrameToken,
    HdrMeta,
    PixelFormat,
    SharedHeader,
    SlotHeader,
    SlotState,
    parse_shm_name,
    ring_size,
    slot_offset,
    slot_size_for,
)

SHM_DIR = Path("/dev/shm")
DEFAULT_SLOTS = 3
_SEQ_MOD = 1 << SEQ_BITS


class RingError(RuntimeError):
    """A ring cannot be created or opened, or its header is not one we understand."""


def _pixel_view(buf: memoryview, fmt: PixelFormat, width: int, height: int) -> np.ndarray:
    if fmt is PixelFormat.FP16_RGBA:
        return np.frombuffer(buf, dtype=np.float16).reshape(height, width, 4)
    return np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 4)


class FrameRing:
    """A mapped ring. `create` (host, owner: unlinks on close) or `open` (driver)."""

    def __init__(self, name: str, fd: int, size: int, owner: bool) -> None:
        self.name = name
        self.owner = owner
        self._fd = fd
        self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        self._view = memoryview(self._map)
        self.header = SharedHeader.from_buffer(self._map)
        h = self.header
        self.generation = int(h.generation)
        self.width, self.height = int(h.width), int(h.height)
        self.pixel_format = PixelFormat(h.pixel_format)
        self.slot_count = int(h.slot_count)
        self.slot_size = int(h.slot_size)
        self.slots: list[SlotHeader] = []
        self.pixels: list[np.ndarray] = []
        frame_bytes = self.width * self.height * self.pixel_format.bytes_per_pixel
        for i in range(self.slot_count):
            off = slot_offset(i, self.slot_size)
            self.slots.append(SlotHeader.from_buffer(self._map, off))
            start = off + SLOT_HEADER_SIZE
            self.pixels.append(
                _pixel_view(
                    self._view[start : start + frame_bytes],
                    self.pixel_format,
                    self.width,
                    self.height,
                )
            )

    @classmethod
    def create(
        cls,
        name: str,
        width: int,
        height: int,
        fmt: PixelFormat,
        generation: int,
        *,
        slot_count: int = DEFAULT_SLOTS,
        hdr_meta: HdrMeta | None = None,
    ) -> FrameRing:
        """Create `/dev/shm/<name>` (exclusively, 0600, never through a symlink) and write its
        header."""
        slot_size = slot_size_for(width, height, fmt)
        size = ring_size(slot_count, slot_size)
        try:
            fd = create_exclusive(SHM_DIR / name)
        except FileExistsError:
            raise RingError(f"ring {name} already exists") from None
        except OSError as exc:
            raise RingError(f"cannot create ring {name}: {exc.strerror}") from None
        try:
            os.ftruncate(fd, size)
            h = SharedHeader(
                magic=FRAME_MAGIC,
                abi_version=ABI_VERSION,
                header_size=HEADER_SIZE,
                generation=generation,
                width=width,
                height=height,
                stride=width * fmt.bytes_per_pixel,
                pixel_format=fmt,
                hdr=int(hdr_meta is not None),
                slot_count=slot_count,
                slot_size=slot_size,
            )
            if hdr_meta is not None:
                h.hdr_meta = hdr_meta.to_struct()
            os.pwrite(fd, bytes(h), 0)
            return cls(name, fd, size, owner=True)
        except BaseException:
            os.close(fd)
            unlink_own(SHM_DIR / name)
            raise

    @classmethod
    def open(cls, name: str) -> FrameRing:
        """Open a ring the host (our own user) created; RingError if it is missing, a symlink,
        someone else's file, or not a ring we speak."""
        try:
            fd = open_own(SHM_DIR / name)
        except NotOursError as exc:
            raise RingError(f"cannot open ring {name}: {exc}") from None
        except OSError as exc:
            raise RingError(f"cannot open ring {name}: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise RingError(f"ring {name} is {size} bytes, smaller than its header")
            h = SharedHeader.from_buffer_copy(os.pread(fd, HEADER_SIZE, 0))
            problem = _header_problem(h, size)
            if problem:
                raise RingError(f"ring {name}: {problem}")
            return cls(name, fd, size, owner=False)
        except BaseException:
            os.close(fd)
            raise

    @property
    def hdr(self) -> bool:
        return bool(self.header.hdr)

    def unlinked(self) -> bool:
        """True once the ring's name is gone (its creator closed it, or cleaned up after)."""
        return self._fd >= 0 and os.fstat(self._fd).st_nlink == 0

    def close(self) -> None:
        """Unmap (and, for the creator, unlink). Views handed out before must be dropped."""
        if self._fd < 0:
            return
        self.slots.clear()
        self.pixels.clear()
        del self.header
        self._view.release()
        # If a caller still holds a view, the mapping goes when the last view does.
        with contextlib.suppress(BufferError):
            self._map.close()
        os.close(self._fd)
        self._fd = -1
        if self.owner:
            unlink_own(SHM_DIR / self.name)


def stale_rings(directory: Path = SHM_DIR) -> list[Path]:
    """Rings of ours whose creating host is gone (host and driver were killed together)."""
    stale = []
    for path in directory.glob("pfvd-*"):
        try:
            pid = parse_shm_name(path.name)[2]
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid) and owned(path):
            stale.append(path)
    return stale


def sweep_stale_rings(directory: Path = SHM_DIR) -> list[Path]:
    """Remove `stale_rings`; returns what was removed."""
    return [path for path in stale_rings(directory) if unlink_own(path)]


def _header_problem(h: SharedHeader, size: int) -> str | None:
    if h.magic != FRAME_MAGIC:
        return f"bad magic 0x{h.magic:08x}"
    if h.abi_version != ABI_VERSION or h.header_size != HEADER_SIZE:
        return f"frame ABI {h.abi_version} (header {h.header_size} B), we speak {ABI_VERSION}"
    try:
        fmt = PixelFormat(h.pixel_format)
        expected = ring_size(h.slot_count, h.slot_size)
    except ValueError as exc:
        return str(exc)
    if h.slot_size < slot_size_for(h.width, h.height, fmt) or expected > size:
        return f"slots of {h.slot_size} B do not hold {h.width}x{h.height} {fmt.name}"
    return None


def _older(seq: int, than: int) -> bool:
    """Serial-number order over the 32-bit wrapping sequence."""
    return 0 < (than - seq) % _SEQ_MOD < _SEQ_MOD // 2


class RingWriter:
    """Producer side (the driver): 0 ms try-acquire, drop on full, publish `latest`."""

    def __init__(self, ring: FrameRing, notify_fd: int | None = None) -> None:
        self.ring = ring
        self.notify_fd = notify_fd
        self._next = 0

    def try_acquire(self) -> int | None:
        """A FREE slot now marked WRITING, or None (the frame is dropped and counted)."""
        ring = self.ring
        for k in range(ring.slot_count):
            i = (self._next + k) % ring.slot_count
            slot = ring.slots[i]
            if slot.state == SlotState.FREE:
                slot.state = SlotState.WRITING
                self._next = (i + 1) % ring.slot_count
                return i
        ring.header.dropped += 1
        return None

    def publish(self, slot: int, token: FrameToken, capture_ns: int) -> None:
        """Hand a written slot to the consumer and point `latest` at it."""
        ring = self.ring
        s = ring.slots[slot]
        s.token = token.pack()
        s.capture_ns = capture_ns
        s.width, s.height = ring.width, ring.height
        s.stride = ring.width * ring.pixel_format.bytes_per_pixel
        s.pixel_format = ring.pixel_format
        s.state = SlotState.READY
        ring.header.latest = token.pack()
        if self.notify_fd is not None:
            try:
                os.eventfd_write(self.notify_fd, 1)
            except OSError:
                self.notify_fd = None  # the host closed its end; it polls on its own timeout

    def abandon(self, slot: int) -> None:
        """Give back a slot acquired for a frame that was not produced after all."""
        self.ring.slots[slot].state = SlotState.FREE

    def heartbeat(self) -> None:
        self.ring.header.producer_heartbeat = time.monotonic_ns()


@dataclass(frozen=True)
class Taken:
    slot: int
    token: FrameToken
    capture_ns: int
    pixels: np.ndarray


class RingReader:
    """Consumer side (the host): take the newest frame of this ring's generation."""

    def __init__(self, ring: FrameRing) -> None:
        self.ring = ring
        self._last = 0
        self.stale = 0

    def take_latest(self) -> Taken | None:
        """The newest published frame not yet taken, marked READING; None if there is none.

        A token of another generation is counted in `stale`, its slot handed back, and never
        returned. Call `release()` when done with the pixels.
        """
        ring = self.ring
        ring.header.consumer_heartbeat = time.monotonic_ns()
        packed = int(ring.header.latest)
        if packed == 0 or packed == self._last:
            return None
        self._last = packed
        token = FrameToken.unpack(packed)
        if token.generation != ring.generation or token.slot >= ring.slot_count:
            self.stale += 1
            self._recycle(None)
            return None
        slot = ring.slots[token.slot]
        if slot.state != SlotState.READY or slot.token != packed:
            return None
        slot.state = SlotState.READING
        self._recycle(token)
        return Taken(token.slot, token, int(slot.capture_ns), ring.pixels[token.slot])

    def _recycle(self, newest: FrameToken | None) -> None:
        """Hand back READY slots that `newest` supersedes, and any of a stale generation."""
        ring = self.ring
        for i, slot in enumerate(ring.slots):
            if newest is not None and i == newest.slot:
                continue
            if slot.state != SlotState.READY:
                continue
            other = FrameToken.unpack(int(slot.token))
            if other.generation != ring.generation or (
                newest is not None and _older(other.seq, newest.seq)
            ):
                slot.state = SlotState.FREE

    def release(self, taken: Taken) -> None:
        self.ring.slots[taken.slot].state = SlotState.FREE

    @property
    def dropped(self) -> int:
        return int(self.ring.header.dropped)
