"""HDR10 colour math and metadata payloads. Pure: no I/O, no FFmpeg.

- PQ (SMPTE ST 2084) transfer in both directions, on floats or numpy arrays, in cd/m^2.
- BT.709 -> BT.2020 primaries in linear light, derived from the chromaticities (BT.2087).
- Y'CbCr code values (non-constant luminance, limited range) for any bit depth.
- ST.2086 mastering display and CTA-861.3 content light level payloads, big-endian, as the
  HEVC/H.264 SEI messages and the AV1 metadata OBUs carry them, plus the option strings that
  libx265 and SVT-AV1 take for the same values.
"""

from __future__ import annotations

import struct
from typing import overload

import numpy as np

from ..proto.frame import HdrMeta

# --- SMPTE ST 2084 (PQ) ------------------------------------------------------------------------
PQ_PEAK_NITS = 10000.0
PQ_M1 = 2610 / 16384
PQ_M2 = 2523 / 4096 * 128
PQ_C1 = 3424 / 4096
PQ_C2 = 2413 / 4096 * 32
PQ_C3 = 2392 / 4096 * 32

# scRGB (the FP16 desktop format) puts 1.0 at 80 cd/m^2; BT.2408 puts SDR white at 203 cd/m^2.
SCRGB_WHITE_NITS = 80.0
SDR_WHITE_NITS = 203.0

ArrayOrFloat = np.ndarray | float


@overload
def pq_oetf(nits: float) -> float: ...
@overload
def pq_oetf(nits: np.ndarray) -> np.ndarray: ...
def pq_oetf(nits: ArrayOrFloat) -> ArrayOrFloat:
    """Luminance in cd/m^2 -> PQ signal 0..1 (ST 2084 inverse EOTF); clips outside 0..10000."""
    y = np.clip(np.asarray(nits, dtype=np.float64) / PQ_PEAK_NITS, 0.0, 1.0)
    ym = np.power(y, PQ_M1)
    out = np.power((PQ_C1 + PQ_C2 * ym) / (1.0 + PQ_C3 * ym), PQ_M2)
    return float(out) if out.ndim == 0 else out


@overload
def pq_eotf(signal: float) -> float: ...
@overload
def pq_eotf(signal: np.ndarray) -> np.ndarray: ...
def pq_eotf(signal: ArrayOrFloat) -> ArrayOrFloat:
    """PQ signal 0..1 -> luminance in cd/m^2 (ST 2084 EOTF)."""
    e = np.power(np.clip(np.asarray(signal, dtype=np.float64), 0.0, 1.0), 1.0 / PQ_M2)
    y = np.power(np.maximum(e - PQ_C1, 0.0) / (PQ_C2 - PQ_C3 * e), 1.0 / PQ_M1)
    out = y * PQ_PEAK_NITS
    return float(out) if out.ndim == 0 else out


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 -> linear 0..1 (IEC 61966-2-1)."""
    v = np.asarray(v, dtype=np.float64)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear 0..1 -> sRGB-encoded 0..1, clipping outside 0..1."""
    v = np.clip(np.asarray(v, dtype=np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)


# --- primaries ---------------------------------------------------------------------------------
# (x, y) chromaticities of R, G, B and the D65 white point.
BT709_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
BT2020_PRIMARIES = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))
D65 = (0.3127, 0.3290)


def rgb_to_xyz(
    primaries: tuple[tuple[float, float], ...], white: tuple[float, float]
) -> np.ndarray:
    """The 3x3 linear RGB -> CIE XYZ matrix of a colour space (SMPTE RP 177)."""
    xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in primaries]).T
    wx, wy = white
    scale = np.linalg.solve(xyz, np.array([wx / wy, 1.0, (1 - wx - wy) / wy]))
    return xyz * scale


BT709_TO_BT2020 = np.linalg.solve(
    rgb_to_xyz(BT2020_PRIMARIES, D65), rgb_to_xyz(BT709_PRIMARIES, D65)
)
"""Linear BT.709 RGB -> linear BT.2020 RGB (rows sum to 1: white stays white)."""


# --- Y'CbCr ------------------------------------------------------------------------------------
BT709_KR_KB = (0.2126, 0.0722)
BT2020_KR_KB = (0.2627, 0.0593)


def rgb_to_ycbcr_matrix(kr: float, kb: float) -> np.ndarray:
    """R'G'B' 0..1 -> (Y' 0..1, Cb -0.5..0.5, Cr -0.5..0.5) for luma weights kr, kb."""
    kg = 1.0 - kr - kb
    return np.array(
        [
            [kr, kg, kb],
            [-kr / (2 - 2 * kb), -kg / (2 - 2 * kb), 0.5],
            [0.5, -kg / (2 - 2 * kr), -kb / (2 - 2 * kr)],
        ]
    )


def limited_range(ycbcr: np.ndarray, bits: int) -> np.ndarray:
    """(Y' 0..1, Cb, Cr -0.5..0.5) in the last axis -> integer code values, limited range."""
    scale = 1 << (bits - 8)
    ycbcr = np.asarray(ycbcr, dtype=np.float64)
    y = 16 * scale + 219 * scale * ycbcr[..., 0]
    c = 128 * scale + 224 * scale * ycbcr[..., 1:]
    return np.rint(np.concatenate([y[..., None], c], axis=-1)).astype(np.int64)


def hdr10_code_values(rgb_nits_bt709: np.ndarray) -> np.ndarray:
    """Linear BT.709 RGB in cd/m^2 -> 10-bit limited BT.2020 PQ Y'CbCr codes (per pixel, 4:4:4).

    The reference the converter and its self-test are checked against.
    """
    lin2020 = np.asarray(rgb_nits_bt709, dtype=np.float64) @ BT709_TO_BT2020.T
    signal = pq_oetf(np.maximum(lin2020, 0.0))
    return limited_range(signal @ rgb_to_ycbcr_matrix(*BT2020_KR_KB).T, 10)


# --- ST.2086 / CTA-861.3 payloads --------------------------------------------------------------
SEI_MASTERING_DISPLAY = 137
SEI_CONTENT_LIGHT_LEVEL = 144
AV1_METADATA_HDR_CLL = 1
AV1_METADATA_HDR_MDCV = 2

# HdrMeta keeps primaries in R, G, B order; the HEVC/H.264 SEI wants c=0 green, 1 blue, 2 red.
_SEI_PRIMARY_ORDER = (1, 2, 0)


def mastering_display_payload(meta: HdrMeta) -> bytes:
    """mastering_display_colour_volume SEI payload (24 bytes, big-endian, G B R order)."""
    prims = [v for i in _SEI_PRIMARY_ORDER for v in (meta.primaries_x[i], meta.primaries_y[i])]
    return struct.pack(
        ">8H2I", *prims, meta.white_x, meta.white_y, meta.max_luminance, meta.min_luminance
    )


def content_light_payload(meta: HdrMeta) -> bytes:
    """content_light_level_info SEI payload: MaxCLL, MaxFALL as big-endian u16."""
    return struct.pack(">2H", meta.max_cll, meta.max_fall)


def sei_message(payload_type: int, payload: bytes) -> bytes:
    """One sei_message(): type and size coded as 0xFF runs plus a final byte, then the payload."""
    out = bytearray()
    for value in (payload_type, len(payload)):
        while value >= 255:
            out.append(255)
            value -= 255
        out.append(value)
    return bytes(out) + payload


def hdr10_sei_rbsp(meta: HdrMeta) -> bytes:
    """The SEI RBSP (both HDR10 messages + rbsp_trailing_bits), before emulation prevention."""
    return (
        sei_message(SEI_MASTERING_DISPLAY, mastering_display_payload(meta))
        + sei_message(SEI_CONTENT_LIGHT_LEVEL, content_light_payload(meta))
        + b"\x80"
    )


def _chroma_016(value: int) -> int:
    """ST.2086 chromaticity (0.00002 units) -> AV1 0.16 fixed point."""
    return (value * 65536 + 25000) // 50000


def av1_mdcv_payload(meta: HdrMeta) -> bytes:
    """AV1 metadata_hdr_mdcv(): R, G, B primaries 0.16, white 0.16, max 24.8, min 18.14."""
    prims = [_chroma_016(v) for i in range(3) for v in (meta.primaries_x[i], meta.primaries_y[i])]
    return struct.pack(
        ">8H2I",
        *prims,
        _chroma_016(meta.white_x),
        _chroma_016(meta.white_y),
        (meta.max_luminance * 256 + 5000) // 10000,
        (meta.min_luminance * 16384 + 5000) // 10000,
    )


def av1_cll_payload(meta: HdrMeta) -> bytes:
    """AV1 metadata_hdr_cll(): MaxCLL, MaxFALL as big-endian u16."""
    return struct.pack(">2H", meta.max_cll, meta.max_fall)


def x265_hdr_params(meta: HdrMeta) -> str:
    """libx265 `master-display` and `max-cll` values in its G,B,R order and ST.2086 units."""
    p = [
        f"{c}({meta.primaries_x[i]},{meta.primaries_y[i]})"
        for c, i in zip("GBR", (1, 2, 0), strict=True)
    ]
    return (
        f"master-display={''.join(p)}WP({meta.white_x},{meta.white_y})"
        f"L({meta.max_luminance},{meta.min_luminance}):max-cll={meta.max_cll},{meta.max_fall}"
    )


def svtav1_hdr_params(meta: HdrMeta) -> str:
    """SVT-AV1 `mastering-display` (chromaticities and cd/m^2 as decimals) and `content-light`."""

    def xy(x: int, y: int) -> str:
        return f"({x / 50000:.5f},{y / 50000:.5f})"

    p = "".join(
        f"{c}{xy(meta.primaries_x[i], meta.primaries_y[i])}"
        for c, i in zip("GBR", (1, 2, 0), strict=True)
    )
    return (
        f"mastering-display={p}WP{xy(meta.white_x, meta.white_y)}"
        f"L({meta.max_luminance / 10000:.4f},{meta.min_luminance / 10000:.4f})"
        f":content-light={meta.max_cll},{meta.max_fall}"
    )
