"""The encrypted control stream (v2 envelope) in both directions, and the byte layout of the
host's messages as ControlStream.c parses them."""

from __future__ import annotations

import contextlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_client import client_open, client_seal, control_iv
from punktfunk.gamestream.control import (
    TERMINATION_GRACEFUL,
    ControlCipher,
    ControlError,
    MsgType,
    adaptive_triggers,
    hdr_mode,
    parse_rfi,
    rgb_led,
    rumble,
    rumble_triggers,
    ss_hdr_metadata,
    termination,
)
from punktfunk.proto.frame import HdrMeta

KEY = bytes.fromhex("a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8")


# --- client -> host ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_type", "payload"),
    [
        (0x0305, b"\0\0"),  # start A
        (0x0307, b"\0"),  # start B
        (0x0302, b"\0\0"),  # IDR request
        (0x0200, struct.pack("<HI", 4, 0) + b"\0\0"),  # periodic ping
        (0x0206, struct.pack(">I", 8) + struct.pack("<I", 0x07) + struct.pack(">hh", 5, -5)),
        (0x5502, bytes(21)),  # FEC status, sent unsequenced
        (0x0350, struct.pack("<II", 77, 0)),
    ],
)
@pytest.mark.parametrize("seq", [0, 1, 2**31, 2**32 - 1])
def test_client_messages_open(msg_type: int, payload: bytes, seq: int) -> None:
    msg = ControlCipher(KEY).open(client_seal(KEY, seq, msg_type, payload))
    assert (msg.type, msg.payload) == (msg_type, payload)


def test_rfi_request_as_the_client_sends_it() -> None:
    payload = struct.pack("<qqq", 1200, 1205, 0)  # LE64 first, LE64 last, LE64 0
    msg = ControlCipher(KEY).open(client_seal(KEY, 9, 0x0301, payload))
    assert msg.type == MsgType.RFI
    assert parse_rfi(msg.payload) == (1200, 1205)
    with pytest.raises(ControlError):
        parse_rfi(b"\0" * 15)


def test_envelope_layout_from_the_client() -> None:
    packet = client_seal(KEY, 3, 0x0302, b"\0\0")
    kind, length, seq = struct.unpack_from("<HHI", packet)
    assert (kind, length, seq) == (0x0001, 4 + 16 + 4 + 2, 3)
    assert len(packet) == 8 + 16 + 4 + 2
    assert control_iv(3, b"C") == b"\x03\0\0\0" + bytes(6) + b"CC"


def _tampered(position: int) -> bytes:
    packet = bytearray(client_seal(KEY, 5, 0x0206, b"hello input"))
    packet[position] ^= 0x80
    return bytes(packet)


@pytest.mark.parametrize(
    "packet",
    [
        _tampered(8),  # tag
        _tampered(30),  # ciphertext
        _tampered(4),  # seq (the IV changes)
        client_seal(bytes(16), 5, 0x0206, b"wrong key"),
        struct.pack("<HH", 0x0305, 0) + b"\0\0",  # a plaintext start-A
        struct.pack("<HH", 0x0305, 2) + bytes(30),  # plaintext, long enough
        b"",
        b"\x01\x00",
        client_seal(KEY, 1, 0x0302, b"\0\0")[:27],
        client_seal(KEY, 1, 0x0302, b"\0\0") + b"x",  # length field no longer matches
        ControlCipher(KEY).seal(0x0302, b"\0\0"),  # host-direction IV ('H','C')
    ],
    ids=[
        "tag",
        "ciphertext",
        "seq",
        "wrong-key",
        "plaintext-short",
        "plaintext",
        "empty",
        "two-bytes",
        "truncated",
        "trailing-byte",
        "host-direction",
    ],
)
def test_bad_packets_raise_control_error(packet: bytes) -> None:
    with pytest.raises(ControlError):
        ControlCipher(KEY).open(packet)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_only_raises_control_error(data: bytes) -> None:
    with contextlib.suppress(ControlError):
        ControlCipher(KEY).open(data)


# --- host -> client ---------------------------------------------------------------------------


def test_host_messages_count_from_zero_with_host_iv() -> None:
    cipher = ControlCipher(KEY)
    for expected_seq in range(4):
        packet = cipher.seal(*termination())
        seq, msg_type, _payload = client_open(KEY, packet)
        assert seq == expected_seq
        assert msg_type == 0x0109
    # by hand: IV = LE32 seq, 6 zero bytes, 'H', 'C'; tag right after the 8-byte header
    packet = cipher.seal(0x010B, b"abc")
    plain = AESGCM(KEY).decrypt(
        struct.pack("<I", 4) + bytes(6) + b"HC", packet[24:] + packet[8:24], None
    )
    assert plain == struct.pack("<HH", 0x010B, 3) + b"abc"


def test_termination_is_a_big_endian_hresult() -> None:
    msg_type, payload = termination()
    assert msg_type == 0x0109
    assert payload == b"\x80\x03\x00\x23"
    assert struct.unpack(">I", payload)[0] == TERMINATION_GRACEFUL
    _, _, opened = client_open(KEY, ControlCipher(KEY).seal(msg_type, payload))
    assert len(opened) + 4 >= 6  # the client reads the extended (HRESULT) form
    assert struct.unpack(">I", termination(0x800E9403)[1])[0] == 0x800E9403


def test_rumble_layout() -> None:
    msg_type, payload = rumble(controller=2, low=0x1234, high=0xFEDC)
    assert msg_type == 0x010B and len(payload) == 10
    # the client skips 4 bytes, then LE16 controller, low-frequency, high-frequency motor
    assert struct.unpack_from("<HHH", payload, 4) == (2, 0x1234, 0xFEDC)


def test_sunshine_extension_layouts() -> None:
    msg_type, payload = rumble_triggers(1, 0x0101, 0xFFFF)
    assert (msg_type, payload) == (0x5500, struct.pack("<HHH", 1, 0x0101, 0xFFFF))
    msg_type, payload = rgb_led(3, 10, 20, 30)
    assert (msg_type, payload) == (0x5502, b"\x03\x00\x0a\x14\x1e")
    left, right = bytes(range(10)), bytes(range(10, 20))
    msg_type, payload = adaptive_triggers(0, 0x04 | 0x08, 0x21, 0x26, left, right)
    assert msg_type == 0x5503 and len(payload) == 2 + 3 + 10 + 10
    assert payload[:5] == b"\x00\x00\x0c\x21\x26" and payload[5:15] == left
    assert payload[15:] == right


def _client_hdr(payload: bytes) -> tuple[bool, dict[str, object]]:
    """ControlStream.c, Sunshine path: enable byte then SS_HDR_METADATA, 13 x LE16."""
    enabled = payload[0] != 0
    values = list(struct.unpack_from("<13H", payload, 1))
    primaries = [(values[2 * i], values[2 * i + 1]) for i in range(3)]
    return enabled, {
        "primaries": primaries,
        "white": (values[6], values[7]),
        "max_display": values[8],
        "min_display": values[9],
        "max_cll": values[10],
        "max_fall": values[11],
        "max_full_frame": values[12],
    }


def test_hdr_mode_carries_the_full_sunshine_metadata() -> None:
    meta = (35400, 14600, 8500, 39850, 6550, 2300, 15635, 16450, 1000, 50, 1000, 400, 600)
    msg_type, payload = hdr_mode(True, meta)
    assert msg_type == 0x010E
    assert len(payload) == 1 + 13 * 2
    enabled, fields = _client_hdr(payload)
    assert enabled
    assert fields["primaries"] == [(35400, 14600), (8500, 39850), (6550, 2300)]
    assert fields["white"] == (15635, 16450)
    assert (fields["max_display"], fields["min_display"]) == (1000, 50)
    assert (fields["max_cll"], fields["max_fall"], fields["max_full_frame"]) == (1000, 400, 600)
    msg_type, payload = hdr_mode(False)
    assert payload == bytes(27)


def test_our_hdr_metadata_becomes_sunshines_fields_in_their_units() -> None:
    meta = HdrMeta(
        primaries_x=(35400, 8500, 6550),
        primaries_y=(14600, 39850, 2300),
        white_x=15635,
        white_y=16450,
        max_luminance=1000 * 10_000,  # 0.0001 cd/m^2 -> 1000 nits
        min_luminance=50,  # 0.005 nits, already in SS_HDR_METADATA's 0.0001-nit unit
        max_cll=1000,
        max_fall=400,
    )
    enabled, fields = _client_hdr(hdr_mode(True, ss_hdr_metadata(meta))[1])
    assert enabled
    assert fields["primaries"] == [(35400, 14600), (8500, 39850), (6550, 2300)]
    assert fields["white"] == (15635, 16450)
    assert (fields["max_display"], fields["min_display"]) == (1000, 50)
    assert (fields["max_cll"], fields["max_fall"], fields["max_full_frame"]) == (1000, 400, 400)
