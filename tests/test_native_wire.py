"""Varint TLV framing and the bytes of every control message we send."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punktfunk.native.wire.codec import decode_message, encode_input_edge
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.native.wire.hello import Ready
from punktfunk.native.wire.messages import (
    AudioConfig,
    AudioState,
    BitrateChanged,
    ClockEcho,
    ClockProbe,
    CursorRenderMode,
    Mode,
    PairChallenge,
    PairProof,
    PairRequest,
    PairResult,
    Pending,
    PipelineGap,
    ProbeRequest,
    ProbeResult,
    Reconfigure,
    Reconfigured,
    Refused,
    SetBitrate,
    ShardPayloadAck,
    ShardPayloadChanged,
    StreamConfig,
)
from punktfunk.native.wire.registry import (
    REFUSED_REASON_MAX,
    AckReason,
    AudioCodec,
    CloseCode,
    Codec,
    MsgType,
    StreamType,
)
from punktfunk.native.wire.tlv import (
    Fields,
    FrameDecoder,
    WireError,
    WireErrorCode,
    decode_varint,
    encode_varint,
    frame,
)

MODE = Mode(1280, 720, 60)


# RFC 9000 §A.1 sample varints (quic/v2/mod.rs: "QUIC varints for the numbers").
@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (37, "25"),
        (15293, "7bbd"),
        (494878333, "9d7f3e7d"),
        (151288809941952652, "c2197c5eff14e88c"),
    ],
)
def test_quic_varints(value, wire):
    assert encode_varint(value).hex() == wire
    assert decode_varint(bytes.fromhex(wire)) == (value, len(wire) // 2)


def test_varint_decoder_accepts_a_longer_form_and_waits_for_a_cut_one():
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)  # RFC 9000: 2-byte 37
    assert decode_varint(bytes.fromhex("9d7f3e")) is None
    with pytest.raises(ValueError):
        encode_varint(1 << 62)


# Golden frames from quic/v2/msg.rs @ 867f3f4 `golden_frames`: a change here is a wire change.
def test_msg_rs_golden_frames():
    assert SetBitrate(80_000).encode() == bytes([0x24, 0x06, 0x01, 0x04, 0x80, 0x38, 0x01, 0x00])
    assert BitrateChanged(1, AckReason.CADENCE).encode() == bytes(
        [0x25, 0x09, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02]
    )
    assert PairResult(ok=True).encode() == bytes([0x13, 0x03, 0x01, 0x01, 0x01])


# Our golden bytes for every other control message we send. Layout per msg.rs `v2_message!`
# (every field, in tag order) with the tags of native.registry.FIELD_TAGS.
GOLDEN = [
    (Ready(), "0300"),  # hello.rs `Ready`: an empty body
    (Pending(), "0400"),  # msg.rs `Pending`
    (Refused(CloseCode.PAIR_DENIED, "not paired"), "0612010464000000020a6e6f7420706169726564"),
    (
        PairRequest("probe", bytes([0xAA]) * 33),
        "102c010570726f62650221" + "aa" * 33 + "0300",
    ),
    (
        PairChallenge(bytes([0xBB]) * 33, bytes([0xCC]) * 32),
        "1140450121" + "bb" * 33 + "0220" + "cc" * 32,  # 69-byte body: a 2-byte length
    ),
    (PairProof(bytes([0xDD]) * 32), "12220120" + "dd" * 32),
    (PairResult(ok=False), "1303010100"),
    (Reconfigure(MODE), "200e010c00050000d00200003c000000"),
    (Reconfigured(True, MODE), "2111010101020c00050000d00200003c000000"),
    (
        StreamConfig(2, MODE, Codec.HEVC, 8, bytes((1, 1, 1, 0)), 1, 1, 1000, 4096, 0),
        "2232010102020c00050000d00200003c0000000301020401080504010101000601010701010804e803"
        "00000904001000000a0100",
    ),
    (
        AudioConfig(0, 1, AudioCodec.OPUS, 48000, 16, 2, 0, 5000, False),
        "231f010100020101030100040480bb000005011006010207010008028813090100",
    ),
    (BitrateChanged(50_000), "2506010450c30000"),  # no reason field without a reason
    (PipelineGap(401), "2606010491010000"),
    (
        ProbeRequest(100_000, 500, 60, 65_536, 0),
        "2b1c0104a08601000204f401000003023c00040400000100050400000000",
    ),
    (
        ProbeResult(1 << 33, 9, 500, 9, 0),
        "2c22010800000000020000000204090000000304f4010000040409000000050400000000",
    ),
    (CursorRenderMode(True), "3103010101"),
    (AudioState(True), "3303010101"),
    (ShardPayloadChanged(1200), "38040102b004"),
    (ShardPayloadAck(1200), "39040102b004"),
    (ClockProbe(1_700_000_000_000_000_000), "3a0a010800002a36fe9c9717"),
    (ClockEcho(1, 2, 3), "3b1e010801000000000000000208020000000000000003080300000000000000"),
]


@pytest.mark.parametrize(("message", "wire"), GOLDEN, ids=lambda m: type(m).__name__)
def test_golden_bytes_and_round_trip(message, wire):
    data = message.encode()
    assert data.hex() == wire
    ((msg_type, body),) = FrameDecoder(prologue=False).feed(data)
    assert msg_type == message.TYPE
    assert decode_message(msg_type, body) == message


def test_input_edge_carries_the_18_byte_event():
    # msg.rs `encode_input_edge`: the body is the event's own encoding (input.rs).
    ev = InputEvent(InputKind.KEY_UP, code=30, flags=2)
    data = encode_input_edge(ev)
    # 0x50 >= 0x40, so the type takes a 2-byte varint: 0x4050.
    assert data.hex() == "405012c8011e000000000000000000000002000000"
    ((msg_type, body),) = FrameDecoder(prologue=False).feed(data)
    assert decode_message(msg_type, body) == ev


def test_decoder_reads_the_stream_type_then_frames_fed_byte_by_byte():
    stream = encode_varint(StreamType.CONTROL) + SetBitrate(7).encode() + Ready().encode()
    decoder = FrameDecoder()
    got = []
    for b in stream:
        got += decoder.feed(bytes([b]))
    assert decoder.stream_type == StreamType.CONTROL
    assert [t for t, _ in got] == [MsgType.SET_BITRATE, MsgType.READY]
    assert decoder.buffered == 0


def test_an_over_bound_body_fails_before_it_is_buffered():
    # READY's bound is 256: a header declaring 257 fails on the header alone.
    header = encode_varint(MsgType.READY) + encode_varint(257)
    decoder = FrameDecoder(prologue=False)
    with pytest.raises(WireError) as err:
        decoder.feed(header)
    assert err.value.code is WireErrorCode.OVERSIZE_BODY
    # An unknown type is held to UNKNOWN_MAX_BODY (64 KiB) the same way.
    with pytest.raises(WireError):
        FrameDecoder(prologue=False).feed(encode_varint(0x3FFF) + encode_varint(64 * 1024 + 1))
    # A huge declared length (a 2^61-byte body) never allocates.
    with pytest.raises(WireError):
        FrameDecoder(prologue=False).feed(bytes.fromhex("24") + bytes.fromhex("e0") + bytes(7))


def test_unknown_types_and_tags_are_skipped_and_repeats_refused():
    unknown = frame(0x3FFF, b"\x01\x02\x03")
    frames = FrameDecoder(prologue=False).feed(unknown + SetBitrate(9).encode())
    assert decode_message(*frames[0]) is None
    assert decode_message(*frames[1]) == SetBitrate(9)
    # A field from a newer peer is skipped (msg.rs `unknown_tags_skip_and_repeats_refuse`).
    body = Fields().u32(1, 9).str(77, "from a newer peer").u8(2, 200).body()
    assert BitrateChanged.decode_body(body) == BitrateChanged(9, None)
    with pytest.raises(WireError) as err:
        SetBitrate.decode_body(Fields().u32(1, 1).u32(1, 2).body())
    assert err.value.code is WireErrorCode.DUPLICATE_FIELD


def test_fields_are_checked_on_decode():
    with pytest.raises(WireError):  # a u32 field of 3 bytes
        SetBitrate.decode_body(Fields().raw(1, b"\x01\x02\x03").body())
    with pytest.raises(WireError):  # a field running past its body
        SetBitrate.decode_body(bytes.fromhex("0104ff"))
    with pytest.raises(WireError):  # a reason over REFUSED_REASON_MAX
        Refused.decode_body(Fields().u32(1, 1).str(2, "x" * (REFUSED_REASON_MAX + 1)).body())
    with pytest.raises(WireError):  # a name over HELLO_NAME_MAX
        PairRequest.decode_body(Fields().str(1, "x" * 65).body())
    with pytest.raises(WireError):  # a bool must be 0 or 1
        PairResult.decode_body(Fields().raw(1, b"\x02").body())
    # Absent fields decode to their zero.
    assert PairResult.decode_body(b"") == PairResult(ok=False)


def test_encoding_cuts_long_strings_on_a_character_boundary():
    long = Refused(1, "é" * 400).encode()
    ((_, body),) = FrameDecoder(prologue=False).feed(long)
    reason = Refused.decode_body(body).reason
    assert len(reason.encode()) <= REFUSED_REASON_MAX and set(reason) == {"é"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_never_escape_as_anything_but_wire_errors(data):
    try:
        for msg_type, body in FrameDecoder().feed(data):
            decode_message(msg_type, body)
    except WireError:
        pass
