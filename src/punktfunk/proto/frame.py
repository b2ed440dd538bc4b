"""Frame plane of the host<->driver ABI: the shared-memory ring a virtual display publishes into.

The host creates the ring (`SharedHeader` + `slot_count` slots of `slot_size` bytes, each slot a
`SlotHeader` followed by pixels); the driver opens it and publishes with a 0 ms try-acquire,
dropping on full. `SharedHeader.latest` holds a packed `FrameToken`; a token whose generation
is not the ring's is stale (a frame from before a mode change) and is rejected.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum

from ._layout import LE, pin

FRAME_MAGIC = 0x44564650  # "PFVD" little-endian
ABI_VERSION = 1
SHM_PREFIX = "pfvd"

GENERATION_BITS = 24
SEQ_BITS = 32
SLOT_BITS = 8
MAX_SLOTS = 1 << SLOT_BITS


class PixelFormat(IntEnum):
    """Pixel layouts a slot can hold. Values are wire codes; 0 is never valid."""

    BGRA8 = 1
    RGB10A2 = 2
    FP16_RGBA = 3

    @property
    def bytes_per_pixel(self) -> int:
        return 8 if self is PixelFormat.FP16_RGBA else 4

    @property
    def is_hdr_capable(self) -> bool:
        return self is not PixelFormat.BGRA8


class SlotState(IntEnum):
    """Per-slot ownership; the producer only takes FREE slots (never waits)."""

    FREE = 0
    WRITING = 1
    READY = 2
    READING = 3


class HdrMetadata(LE):
    """ST.2086 mastering display + CTA-861.3 content light level, in their native units.

    Primaries and white point in 0.00002 units (R, G, B order), luminance in 0.0001 cd/m^2,
    MaxCLL/MaxFALL in cd/m^2.
    """

    _fields_ = (
        ("primaries_x", ctypes.c_uint16 * 3),
        ("primaries_y", ctypes.c_uint16 * 3),
        ("white_x", ctypes.c_uint16),
        ("white_y", ctypes.c_uint16),
        ("max_luminance", ctypes.c_uint32),
        ("min_luminance", ctypes.c_uint32),
        ("max_cll", ctypes.c_uint16),
        ("max_fall", ctypes.c_uint16),
        ("_reserved", ctypes.c_uint8 * 4),
    )


class SharedHeader(LE):
    """Start of every frame ring. Written by the host at creation, `latest` by the driver."""

    _fields_ = (
        ("magic", ctypes.c_uint32),
        ("abi_version", ctypes.c_uint32),
        ("header_size", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("stride", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("hdr", ctypes.c_uint32),
        ("slot_count", ctypes.c_uint32),
        ("slot_size", ctypes.c_uint64),
        ("latest", ctypes.c_uint64),
        ("producer_heartbeat", ctypes.c_uint64),
        ("consumer_heartbeat", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("hdr_meta", HdrMetadata),
        ("_reserved", ctypes.c_uint8 * 16),
    )


class SlotHeader(LE):
    """Head of each slot; the pixels follow at `SLOT_HEADER_SIZE`."""

    _fields_ = (
        ("token", ctypes.c_uint64),
        ("capture_ns", ctypes.c_uint64),
        ("state", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("stride", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint8 * 24),
    )


pin(
    HdrMetadata,
    32,
    {
        "primaries_x": 0,
        "primaries_y": 6,
        "white_x": 12,
        "white_y": 14,
        "max_luminance": 16,
        "min_luminance": 20,
        "max_cll": 24,
        "max_fall": 26,
    },
)
pin(
    SharedHeader,
    128,
    {
        "magic": 0,
        "abi_version": 4,
        "header_size": 8,
        "generation": 12,
        "width": 16,
        "height": 20,
        "stride": 24,
        "pixel_format": 28,
        "hdr": 32,
        "slot_count": 36,
        "slot_size": 40,
        "latest": 48,
        "producer_heartbeat": 56,
        "consumer_heartbeat": 64,
        "dropped": 72,
        "hdr_meta": 80,
    },
)
pin(
    SlotHeader,
    64,
    {
        "token": 0,
        "capture_ns": 8,
        "state": 16,
        "width": 20,
        "height": 24,
        "stride": 28,
        "pixel_format": 32,
        "flags": 36,
    },
)

HEADER_SIZE = ctypes.sizeof(SharedHeader)
SLOT_HEADER_SIZE = ctypes.sizeof(SlotHeader)


@dataclass(frozen=True, order=True)
class FrameToken:
    """Names one published frame: ring generation, frame sequence number, slot index.

    Packed as `generation<<40 | seq<<8 | slot` into one u64 so it can be published with a
    single aligned store. 0 (generation 0) means "nothing published yet".
    """

    generation: int
    seq: int
    slot: int

    def __post_init__(self) -> None:
        for name, bits in (("generation", GENERATION_BITS), ("seq", SEQ_BITS), ("slot", SLOT_BITS)):
            value = getattr(self, name)
            if not 0 <= value < (1 << bits):
                raise OverflowError(f"FrameToken.{name}={value} does not fit in {bits} bits")

    def pack(self) -> int:
        return (self.generation << (SEQ_BITS + SLOT_BITS)) | (self.seq << SLOT_BITS) | self.slot

    @classmethod
    def unpack(cls, value: int) -> FrameToken:
        if not 0 <= value < (1 << 64):
            raise OverflowError(f"token {value} is not a u64")
        return cls(
            generation=value >> (SEQ_BITS + SLOT_BITS),
            seq=(value >> SLOT_BITS) & ((1 << SEQ_BITS) - 1),
            slot=value & ((1 << SLOT_BITS) - 1),
        )

    def next(self, slot: int) -> FrameToken:
        """The token of the following frame in `slot`; seq wraps at 2^32 like the driver's."""
        return FrameToken(self.generation, (self.seq + 1) & ((1 << SEQ_BITS) - 1), slot)


def ring_size(slot_count: int, slot_size: int) -> int:
    """Bytes of shared memory a ring of `slot_count` slots of `slot_size` bytes needs."""
    if not 1 <= slot_count <= MAX_SLOTS:
        raise ValueError(f"slot_count {slot_count} outside 1..{MAX_SLOTS}")
    return HEADER_SIZE + slot_count * slot_size


def slot_offset(index: int, slot_size: int) -> int:
    """Byte offset of slot `index` (its SlotHeader) within the ring."""
    return HEADER_SIZE + index * slot_size


def slot_size_for(width: int, height: int, fmt: PixelFormat) -> int:
    """Slot size for a mode, 64-byte aligned so each slot's pixels start cache-aligned."""
    raw = SLOT_HEADER_SIZE + width * height * fmt.bytes_per_pixel
    return (raw + 63) & ~63


_SHM_NAME = re.compile(rf"^{SHM_PREFIX}-(\d+)-(\d+)-(\d+)-[0-9a-f]{{16}}$")


def shm_name(monitor_id: int, generation: int) -> str:
    """Shared-memory object name of a monitor's ring, `pfvd-<monitor>-<generation>-<pid>-<token>`:
    the creating host's pid (a later host or driver removes rings of dead pids) and 64 random
    bits, so no other local user can plant anything at the name beforehand."""
    if monitor_id < 0 or generation < 0:
        raise ValueError("monitor id and generation are non-negative")
    return f"{SHM_PREFIX}-{monitor_id}-{generation}-{os.getpid()}-{secrets.token_hex(8)}"


def parse_shm_name(name: str) -> tuple[int, int, int]:
    """(monitor, generation, creator pid) of a `shm_name`; ValueError for anything else."""
    match = _SHM_NAME.match(name.lstrip("/"))
    if match is None:
        raise ValueError(
            f"{name!r} is not a punktfunk ring name ({SHM_PREFIX}-<monitor>-<gen>-<pid>-<token>)"
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


@dataclass(frozen=True)
class HdrMeta:
    """HDR static metadata as the seams pass it around (same units as `HdrMetadata`)."""

    primaries_x: tuple[int, int, int]
    primaries_y: tuple[int, int, int]
    white_x: int
    white_y: int
    max_luminance: int
    min_luminance: int
    max_cll: int
    max_fall: int

    def to_struct(self) -> HdrMetadata:
        return HdrMetadata(
            (ctypes.c_uint16 * 3)(*self.primaries_x),
            (ctypes.c_uint16 * 3)(*self.primaries_y),
            self.white_x,
            self.white_y,
            self.max_luminance,
            self.min_luminance,
            self.max_cll,
            self.max_fall,
        )

    @classmethod
    def from_struct(cls, s: HdrMetadata) -> HdrMeta:
        return cls(
            tuple(s.primaries_x),  # type: ignore[arg-type]
            tuple(s.primaries_y),  # type: ignore[arg-type]
            s.white_x,
            s.white_y,
            s.max_luminance,
            s.min_luminance,
            s.max_cll,
            s.max_fall,
        )


# BT.2020 primaries, D65, a 1000-nit mastering display: what the pattern display advertises.
HDR10_DEFAULT = HdrMeta(
    primaries_x=(35400, 8500, 6550),
    primaries_y=(14600, 39850, 2300),
    white_x=15635,
    white_y=16450,
    max_luminance=1000 * 10000,
    min_luminance=50,
    max_cll=1000,
    max_fall=400,
)
