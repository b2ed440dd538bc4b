"""The Encoder seam: what a session needs from any video encoder backend."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Protocol, runtime_checkable

from ..capture.base import CapturedFrame
from ..proto.frame import HdrMeta


class Codec(StrEnum):
    H264 = "h264"
    HEVC = "hevc"
    AV1 = "av1"

    @property
    def carries_hdr10(self) -> bool:
        """HDR10 needs a 10-bit profile with PQ signalling: HEVC Main10 or AV1, not H.264 here."""
        return self is not Codec.H264


class EncoderBackend(StrEnum):
    NVENC = "nvenc"
    VAAPI = "vaapi"
    QSV = "qsv"
    AMF = "amf"
    SOFTWARE = "software"


# encoder=auto takes the first backend in this order that the probe proved working.
PREFERENCE = (
    EncoderBackend.NVENC,
    EncoderBackend.VAAPI,
    EncoderBackend.QSV,
    EncoderBackend.AMF,
    EncoderBackend.SOFTWARE,
)


@dataclass(frozen=True)
class EncoderCaps:
    """What loss recovery and HDR signalling can rely on for an open encoder."""

    supports_rfi: bool
    supports_hdr_metadata: bool


@dataclass(frozen=True)
class ProbedEncoder:
    """One (backend, codec) pair the probe opened successfully on this machine."""

    backend: EncoderBackend
    codec: Codec
    max_bit_depth: int
    max_bitrate_kbps: int


class FrameType(IntEnum):
    IDR = 1
    P = 2


@dataclass(frozen=True)
class EncodedFrame:
    """One Annex-B access unit (parameter sets included on IDR)."""

    data: bytes
    frame_type: FrameType
    pts: int
    frame_index: int
    capture_ns: int
    encode_done_ns: int

    @property
    def size(self) -> int:
        return len(self.data)


@runtime_checkable
class Encoder(Protocol):
    @property
    def caps(self) -> EncoderCaps: ...
    def submit(self, frame: CapturedFrame) -> None:
        """Queue a frame; a new size, format or HDR state re-inits the encoder (IDR next)."""

    def poll(self, timeout: float = 0.0) -> list[EncodedFrame]:
        """Access units finished since the last poll, in order; waits up to `timeout` s while
        a submitted frame is still being encoded (so another thread can collect output)."""

    def wait_ready(self, timeout: float) -> bool:
        """Block up to `timeout` s until a frame submitted now would start converting at once
        and reach the encoder about when it frees up (never ahead of a busy encoder): the
        caller then takes its newest frame. True when ready (or failed: submit raises)."""

    def holds_input(self) -> bool:
        """True while a submitted frame's pixels are still to be read: the capturer must not
        write into that frame's buffer yet."""

    def request_keyframe(self) -> None: ...
    def invalidate_ref_frames(self, first: int, last: int) -> None:
        """Stop referencing frames first..last (or send an IDR where RFI is unsupported)."""

    def set_hdr_meta(self, meta: HdrMeta | None) -> None: ...
    def set_bitrate(self, kbps: int) -> None: ...
    def flush(self) -> list[EncodedFrame]: ...
    def close(self) -> None: ...
