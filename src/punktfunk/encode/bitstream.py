"""Just enough Annex-B (H.264/HEVC) and AV1 OBU parsing to check and patch access units.

The encoder uses it to guarantee parameter sets and HDR metadata on every IDR whatever the
backend emits; tests use it to look inside what was encoded.
"""

from __future__ import annotations

from ..proto.frame import HdrMeta
from . import hdr
from .base import Codec

START_CODE = b"\x00\x00\x00\x01"

# H.264 nal_unit_type values.
H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
# HEVC nal_unit_type values.
HEVC_IDR_W_RADL = 19
HEVC_IDR_N_LP = 20
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34
HEVC_AUD = 35
HEVC_PREFIX_SEI = 39
# AV1 obu_type values.
OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
OBU_METADATA = 5


def split_nals(au: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, start codes (3 or 4 bytes) removed."""
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    pos = au.find(b"\x00\x00\x01")
    while pos >= 0:
        code = pos - 1 if pos > 0 and au[pos - 1] == 0 else pos
        starts.append((code, pos + 3))
        pos = au.find(b"\x00\x00\x01", pos + 3)
    ends = [code for code, _ in starts[1:]] + [len(au)]
    return [au[begin:end] for (_, begin), end in zip(starts, ends, strict=True)]


def nal_type(codec: Codec, nal: bytes) -> int:
    if codec is Codec.H264:
        return nal[0] & 0x1F
    return (nal[0] >> 1) & 0x3F


def is_vcl(codec: Codec, kind: int) -> bool:
    return 1 <= kind <= 5 if codec is Codec.H264 else kind < 32


def is_idr(codec: Codec, kind: int) -> bool:
    return kind == H264_IDR if codec is Codec.H264 else kind in (HEVC_IDR_W_RADL, HEVC_IDR_N_LP)


def parameter_set_types(codec: Codec) -> frozenset[int]:
    if codec is Codec.H264:
        return frozenset({H264_SPS, H264_PPS})
    return frozenset({HEVC_VPS, HEVC_SPS, HEVC_PPS})


def join_nals(nals: list[bytes]) -> bytes:
    return b"".join(START_CODE + nal for nal in nals)


def insert_before_vcl(codec: Codec, au: bytes, extra: list[bytes]) -> bytes:
    """`au` with the NAL units `extra` placed right before its first slice."""
    nals = split_nals(au)
    first_vcl = next(i for i, nal in enumerate(nals) if is_vcl(codec, nal_type(codec, nal)))
    return join_nals(nals[:first_vcl] + extra + nals[first_vcl:])


def prepend_parameter_sets(codec: Codec, au: bytes, params: list[bytes]) -> bytes:
    """`au` with the parameter-set NAL units `params` at its start (after an AUD, if any)."""
    nals = split_nals(au)
    aud = H264_AUD if codec is Codec.H264 else HEVC_AUD
    at = 1 if nals and nal_type(codec, nals[0]) == aud else 0
    return join_nals(nals[:at] + params + nals[at:])


def add_emulation_prevention(rbsp: bytes) -> bytes:
    """RBSP -> EBSP: a 0x03 after every 00 00 that is followed by a byte <= 3."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def remove_emulation_prevention(ebsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for byte in ebsp:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def sei_nal(codec: Codec, rbsp: bytes) -> bytes:
    """A prefix SEI NAL unit (header + EBSP) carrying the SEI RBSP `rbsp`."""
    header = bytes([H264_SEI]) if codec is Codec.H264 else bytes([HEVC_PREFIX_SEI << 1, 1])
    return header + add_emulation_prevention(rbsp)


def parse_sei(codec: Codec, nal: bytes) -> list[tuple[int, bytes]]:
    """(payloadType, payload) of every message in an SEI NAL unit."""
    rbsp = remove_emulation_prevention(nal[1 if codec is Codec.H264 else 2 :])
    messages: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(rbsp) and rbsp[pos:] != b"\x80":
        values = []
        for _ in range(2):
            value = 0
            while rbsp[pos] == 0xFF:
                value += 255
                pos += 1
            values.append(value + rbsp[pos])
            pos += 1
        kind, size = values
        messages.append((kind, rbsp[pos : pos + size]))
        pos += size
    return messages


# --- AV1 (low-overhead bitstream format: every OBU has a size field) ---------------------------


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ValueError("leb128 longer than 8 bytes")


def split_obus(tu: bytes) -> list[tuple[int, bytes]]:
    """(obu_type, whole OBU bytes) for each OBU of a temporal unit."""
    obus: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(tu):
        header = tu[pos]
        if not header & 0x02:
            raise ValueError("AV1 OBU without obu_size (not the low-overhead format)")
        body = pos + 1 + (1 if header & 0x04 else 0)
        size, payload = _read_leb128(tu, body)
        obus.append(((header >> 3) & 0x0F, tu[pos : payload + size]))
        pos = payload + size
    return obus


def obu_payload(obu: bytes) -> bytes:
    body = 1 + (1 if obu[0] & 0x04 else 0)
    size, start = _read_leb128(obu, body)
    return obu[start : start + size]


def metadata_obu(metadata_type: int, payload: bytes) -> bytes:
    """An OBU_METADATA with the given metadata_type, payload and trailing bits."""
    body = _leb128(metadata_type) + payload + b"\x80"
    return bytes([OBU_METADATA << 3 | 0x02]) + _leb128(len(body)) + body


def insert_after_sequence_header(tu: bytes, extra: list[bytes]) -> bytes:
    """`tu` with the OBUs `extra` placed after its sequence header (or temporal delimiter)."""
    obus = split_obus(tu)
    kinds = [kind for kind, _ in obus]
    anchor = OBU_SEQUENCE_HEADER if OBU_SEQUENCE_HEADER in kinds else OBU_TEMPORAL_DELIMITER
    at = kinds.index(anchor) + 1 if anchor in kinds else 0
    parts = [obu for _, obu in obus]
    return b"".join(parts[:at] + extra + parts[at:])


def patch_idr(
    codec: Codec, au: bytes, headers: list[bytes], hdr10: HdrMeta | None
) -> tuple[bytes, list[bytes]]:
    """An IDR access unit made self-contained: the parameter sets (or AV1 sequence header) it
    carries become the new `headers`; lacking them, it gets the previous `headers`. With
    `hdr10`, the ST.2086 and content-light metadata go in too (SEI, or AV1 metadata OBUs).
    Returns the access unit and the headers to remember."""
    if codec is Codec.AV1:
        own = [obu for kind, obu in split_obus(au) if kind == OBU_SEQUENCE_HEADER]
        if not own and headers:
            au = insert_after_sequence_header(au, headers)
        if hdr10 is not None:
            metadata = [
                metadata_obu(hdr.AV1_METADATA_HDR_MDCV, hdr.av1_mdcv_payload(hdr10)),
                metadata_obu(hdr.AV1_METADATA_HDR_CLL, hdr.av1_cll_payload(hdr10)),
            ]
            au = insert_after_sequence_header(au, metadata)
        return au, own or headers
    wanted = parameter_set_types(codec)
    own = [nal for nal in split_nals(au) if nal_type(codec, nal) in wanted]
    complete = {nal_type(codec, nal) for nal in own} == wanted
    if not complete and headers:
        au = prepend_parameter_sets(codec, au, headers)
    if hdr10 is not None:
        au = insert_before_vcl(codec, au, [sei_nal(codec, hdr.hdr10_sei_rbsp(hdr10))])
    return au, own if complete else headers
