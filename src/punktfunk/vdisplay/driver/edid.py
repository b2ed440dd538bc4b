"""EDID for a virtual monitor (pure): 128-byte base block + one CTA-861 extension.

The base block's first detailed timing is the preferred timing = the requested mode (CVT-RB2,
see `timing.py`). A mode a detailed timing cannot hold (wider or taller than 4095, or a pixel
clock above 655.35 MHz) is carried exactly by a DisplayID Type VII timing block inside the CTA
extension and named first by a Video Format Preference block, the CTA-861-H way to prefer it;
the base block then holds the largest fitting fallback. The CTA extension always has the
CTA-861.3 HDR static metadata block (SDR gamma only, or + SMPTE ST 2084 when `hdr`) and, with
HDR, BT.2020 colorimetry. The serial number comes from the client identity, so a client that
returns gets the same monitor identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..timing import Timing, cvt_rb2

EDID_SIZE = 256
MANUFACTURER = "PFK"
PRODUCT_CODE = 0x0001
MODEL_NAME = "punktfunk"
DPI = 96

_DTD_MAX_CLOCK_HZ = 655_350_000
_DTD_MAX_ACTIVE = 4095
_FALLBACK_RATES = (240, 165, 144, 120, 100, 75, 60, 50, 30, 24)
# sRGB / BT.709 primaries and D65 white, CIE x/y.
_SRGB = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), (0.3127, 0.3290))


@dataclass(frozen=True)
class EdidRequest:
    width: int
    height: int
    refresh_hz: int
    hdr: bool
    serial: int


def serial_for(client_id: str) -> int:
    """A stable 32-bit serial for a client identity (0 is "unspecified", so never used)."""
    digest = hashlib.sha256(client_id.encode()).digest()
    return int.from_bytes(digest[:4], "little") or 1


def fits_dtd(t: Timing) -> bool:
    return (
        t.pixel_clock_hz <= _DTD_MAX_CLOCK_HZ
        and t.width <= _DTD_MAX_ACTIVE
        and t.height <= _DTD_MAX_ACTIVE
        and t.h_total - t.width <= _DTD_MAX_ACTIVE
        and t.v_total - t.height <= _DTD_MAX_ACTIVE
    )


def fallback_timing(width: int, height: int, refresh_hz: int) -> Timing:
    """The largest same-aspect, fitting timing: halve the size until a DTD holds it, then
    take the highest common refresh at or below the requested one whose clock fits."""
    w, h = width, height
    while w > _DTD_MAX_ACTIVE or h > _DTD_MAX_ACTIVE:
        w, h = w // 2, h // 2
    for rate in (refresh_hz, *(r for r in _FALLBACK_RATES if r < refresh_hz)):
        t = cvt_rb2(w, h, rate)
        if fits_dtd(t):
            return t
    raise ValueError(f"no detailed timing fits {width}x{height}")


def _checksum(block: bytearray) -> None:
    block[127] = (-sum(block[:127])) & 0xFF


def _mm(px: int) -> int:
    return round(px * 25.4 / DPI)


def _dtd(t: Timing, hmm: int, vmm: int) -> bytes:
    """An 18-byte detailed timing; the image size is the screen's, whichever timing it shows."""
    hblank, vblank = t.h_total - t.width, t.v_total - t.height
    hfp, hsw = t.h_sync_start - t.width, t.h_sync_end - t.h_sync_start
    vfp, vsw = t.v_sync_start - t.height, t.v_sync_end - t.v_sync_start
    flags = 0x18 | (0x04 if t.v_sync_positive else 0) | (0x02 if t.h_sync_positive else 0)
    return bytes(
        (
            *(t.pixel_clock_hz // 10_000).to_bytes(2, "little"),
            t.width & 0xFF,
            hblank & 0xFF,
            (t.width >> 8) << 4 | hblank >> 8,
            t.height & 0xFF,
            vblank & 0xFF,
            (t.height >> 8) << 4 | vblank >> 8,
            hfp & 0xFF,
            hsw & 0xFF,
            (vfp & 0xF) << 4 | vsw & 0xF,
            (hfp >> 8) << 6 | (hsw >> 8) << 4 | (vfp >> 4) << 2 | vsw >> 4,
            hmm & 0xFF,
            vmm & 0xFF,
            (hmm >> 8) << 4 | vmm >> 8,
            0,
            0,
            flags,
        )
    )


def _text_descriptor(tag: int, text: str) -> bytes:
    data = text.encode("ascii")[:13]
    if len(data) < 13:
        data += b"\n" + b" " * (12 - len(data))
    return bytes((0, 0, 0, tag, 0)) + data


# The established 640x480@60 timing the base block also lists (range limits must cover it).
_VGA = Timing(640, 480, 25_175_000, 656, 752, 800, 490, 492, 525, False, False)


def _range_limits(timings: list[Timing]) -> bytes | None:
    """Display range limits covering every timing, or None if the fields cannot say it."""
    v_min = min(int(t.refresh_hz) for t in timings)
    v_max = max(int(t.refresh_hz + 0.999) for t in timings)
    h_rates = [t.pixel_clock_hz / t.h_total / 1000 for t in timings]
    h_min, h_max = int(min(h_rates)), int(max(h_rates) + 0.999)
    clock = -(-max(t.pixel_clock_hz for t in timings) // 10_000_000)
    if v_max > 510 or h_max > 510 or clock > 255:
        return None
    offsets = (0x02 if v_max > 255 else 0) | (0x08 if h_max > 255 else 0)
    return bytes(
        (
            0,
            0,
            0,
            0xFD,
            offsets,
            max(1, v_min),
            v_max - 255 if v_max > 255 else v_max,
            max(1, h_min),
            h_max - 255 if h_max > 255 else h_max,
            clock,
            0x01,
            0x0A,
            *b"      ",
        )
    )


def _low_bits(a: int, b: int, c: int, d: int) -> int:
    """The 2 least significant bits of four 10-bit chromaticity values, packed."""
    return (a & 3) << 6 | (b & 3) << 4 | (c & 3) << 2 | (d & 3)


def _chromaticity() -> bytes:
    coords = [round(c * 1024) for xy in _SRGB for c in xy]
    rx, ry, gx, gy, bx, by, wx, wy = coords
    return bytes((_low_bits(rx, ry, gx, gy), _low_bits(bx, by, wx, wy), *(v >> 2 for v in coords)))


def _base_block(req: EdidRequest, preferred: Timing, exact: Timing) -> bytearray:
    b = bytearray(128)
    b[0:8] = b"\x00\xff\xff\xff\xff\xff\xff\x00"
    letters = [ord(c) - ord("A") + 1 for c in MANUFACTURER]
    b[8:10] = (letters[0] << 10 | letters[1] << 5 | letters[2]).to_bytes(2, "big")
    b[10:12] = PRODUCT_CODE.to_bytes(2, "little")
    b[12:16] = req.serial.to_bytes(4, "little")
    b[16], b[17] = 1, 2024 - 1990
    b[18], b[19] = 1, 4
    b[20] = 0x80 | (0x30 if req.hdr else 0x20) | 0x05  # digital, 10/8 bpc, DisplayPort
    b[21], b[22] = max(1, round(_mm(req.width) / 10)), max(1, round(_mm(req.height) / 10))
    b[23] = 120  # gamma 2.2
    b[24] = 0x06  # RGB 4:4:4, sRGB default, preferred timing is native
    b[25:35] = _chromaticity()
    b[35] = 0x20  # 640x480@60, the mode every CTA-861 sink must accept
    b[38:54] = b"\x01\x01" * 8
    limits = _range_limits([preferred, exact, _VGA])
    descriptors = [
        _dtd(preferred, _mm(req.width), _mm(req.height)),
        limits if limits is not None else _text_descriptor(0xFE, "no range"),
        _text_descriptor(0xFC, MODEL_NAME),
        bytes((0, 0, 0, 0x10)) + bytes(14),  # dummy: the serial is the numeric one above
    ]
    for i, d in enumerate(descriptors):
        b[54 + 18 * i : 72 + 18 * i] = d
    b[126] = 1
    _checksum(b)
    return b


_ASPECTS = {(1, 1): 0, (5, 4): 1, (4, 3): 2, (15, 9): 3, (16, 9): 4, (16, 10): 5, (64, 27): 6}


def _aspect_code(width: int, height: int) -> int:
    """DisplayID aspect-ratio code; 8 = "compute it from the active size"."""
    return next((code for (w, h), code in _ASPECTS.items() if width * h == height * w), 8)


def _u16(value: int) -> bytes:
    return (value & 0xFFFF).to_bytes(2, "little")


def _t7_timing(t: Timing) -> bytes:
    """A DisplayID 2.0 Type VII timing descriptor (20 bytes); the VFPDB makes it preferred."""
    hblank, vblank = t.h_total - t.width, t.v_total - t.height
    hfp, hsw = t.h_sync_start - t.width, t.h_sync_end - t.h_sync_start
    vfp, vsw = t.v_sync_start - t.height, t.v_sync_end - t.v_sync_start
    return (
        (t.pixel_clock_hz // 1000 - 1).to_bytes(3, "little")
        + bytes((_aspect_code(t.width, t.height),))
        + _u16(t.width - 1)
        + _u16(hblank - 1)
        + _u16((hfp - 1) | (0x8000 if t.h_sync_positive else 0))
        + _u16(hsw - 1)
        + _u16(t.height - 1)
        + _u16(vblank - 1)
        + _u16((vfp - 1) | (0x8000 if t.v_sync_positive else 0))
        + _u16(vsw - 1)
    )


def _data_block(tag: int, payload: bytes) -> bytes:
    return bytes((tag << 5 | len(payload),)) + payload


def _extended_block(ext_tag: int, payload: bytes) -> bytes:
    return _data_block(7, bytes((ext_tag,)) + payload)


def _cta_block(req: EdidRequest, exact: Timing | None) -> bytearray:
    blocks = []
    if exact is not None:
        blocks.append(_extended_block(0x22, bytes((0x02,)) + _t7_timing(exact)))
        blocks.append(_extended_block(0x0D, bytes((145,))))  # VFPDB: first T7 timing
    # Video capability: RGB quantization selectable; IT and CE formats underscanned.
    blocks.append(_extended_block(0x00, bytes((0x40 | 0x08 | 0x02,))))
    if req.hdr:
        blocks.append(_extended_block(0x05, bytes((0xC0, 0x00))))  # BT2020 YCC + RGB
    eotf = 0x01 | (0x04 if req.hdr else 0)  # traditional SDR gamma (+ SMPTE ST 2084)
    hdr_payload = bytes((eotf, 0x01))
    if req.hdr:
        hdr_payload += bytes((138, 96, 0))  # 1000 cd/m2 max, 400 frame-average, min ~0
    blocks.append(_extended_block(0x06, hdr_payload))
    body = b"".join(blocks)
    c = bytearray(128)
    c[0], c[1] = 0x02, 0x03
    c[2] = 4 + len(body)  # no detailed timings follow the data blocks
    c[3] = 0x80  # IT formats underscanned by default
    c[4 : 4 + len(body)] = body
    _checksum(c)
    return c


def build_edid(req: EdidRequest) -> bytes:
    """The 256-byte EDID of a monitor at `req`'s mode."""
    exact = cvt_rb2(req.width, req.height, req.refresh_hz)
    if fits_dtd(exact):
        return bytes(_base_block(req, exact, exact) + _cta_block(req, None))
    preferred = fallback_timing(req.width, req.height, req.refresh_hz)
    return bytes(_base_block(req, preferred, exact) + _cta_block(req, exact))


def edid_has_hdr(edid: bytes) -> bool:
    """Whether an EDID (as built here) advertises SMPTE ST 2084 in its HDR static metadata."""
    if len(edid) < 256 or edid[128] != 0x02:
        return False
    i, end = 132, 128 + edid[130]
    while i < end:
        tag, length = edid[i] >> 5, edid[i] & 0x1F
        if tag == 7 and length >= 2 and edid[i + 1] == 0x06:
            return bool(edid[i + 2] & 0x04)
        i += 1 + length
    return False
