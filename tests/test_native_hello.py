"""ClientHello / ServerHello / Ready and the feature bitset (hello.rs, features.rs)."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punktfunk.native.wire.features import FeatureSet
from punktfunk.native.wire.hello import (
    ClientHello,
    HdrMeta,
    LinkFacts,
    Ready,
    ServerHello,
    SessionPreset,
)
from punktfunk.native.wire.messages import Mode
from punktfunk.native.wire.registry import (
    EXT_ABR_ACK_REASON,
    IFACE_KIND_ETHERNET,
    ClientCap,
    Codec,
    Feature,
    FecScheme,
    HostCap,
    HostCap2,
    MediaSuite,
    VideoCap,
)
from punktfunk.native.wire.tlv import Fields, FrameDecoder, WireError


def body_of(frame: bytes) -> bytes:
    ((_, body),) = FrameDecoder(prologue=False).feed(frame)
    return body


def test_client_hello_golden_from_hello_rs():
    # quic/v2/hello.rs @ 72d084e `start_extensions_and_session_fields_ride_along`: the same
    # ClientHello must give the same 134 bytes, tag 24 ahead of 23 and every default left out.
    ch = ClientHello(
        mode=Mode(1920, 1080, 60),
        name="Deck",
        video_caps=VideoCap.CHACHA20,
        video_codecs=Codec.HEVC,
        client_caps=ClientCap.EXT,
        max_shard_payload=1408,
        client_label="android 0.43",
        abr_features=EXT_ABR_ACK_REASON,
        preset=SessionPreset.new("p1", "Couch"),
        link=LinkFacts(IFACE_KIND_ETHERNET, 2500),
        probe_only=True,
        pyrowave_bpp_x100=120,
        resume=bytes([3] * 16),
        suites=(MediaSuite.CHACHA20_POLY1305, MediaSuite.AES_128_GCM),
        features=FeatureSet().with_bit(Feature.STREAM_CONFIG),
    )
    assert ch.encode().hex() == (
        "01408301100303030303030303030303030303030302020100030c80070000380400003c000000040100"
        "05010006040000000007044465636b090540400000010a01020b01020c01000e0280050f0480bb0000"
        "100110110100120100130c616e64726f696420302e3433140101150902703105436f756368160501c4"
        "09000018010119027800"
    )
    assert ClientHello.decode_body(body_of(ch.encode())) == ch


def test_server_hello_golden():
    # Ours: every field in ascending tag order as hello.rs writes them; features are the host
    # capability bytes at bits 16-31 plus native bit 32 (STREAM_CONFIG).
    sh = ServerHello(
        session_id=bytes(range(16)),
        clock_origin_ns=1_700_000_000_000_000_000,
        suite=MediaSuite.AES_128_GCM,
        host_caps=HostCap.GAMEPAD_STATE,
        host_caps2=HostCap2.EXT | HostCap2.INPUT_EDGES,
        features=FeatureSet().with_bit(Feature.STREAM_CONFIG),
        mode=Mode(1280, 720, 60),
        fec_scheme=FecScheme.GF8,
        fec_percent=10,
        max_data_per_block=200,
        shard_payload=1408,
        bitrate_kbps=20_000,
    )
    assert sh.encode().hex() == (
        "0240890110000102030405060708090a0b0c0d0e0f020800002a36fe9c971703010004050000014401"
        "050c00050000d00200003c00000006010007010a0802c800090280050a04000000000b01000c01000d"
        "04204e00000e01080f0401010100100101110102120102130200001404ff000000150400000000160100"
        "170480bb0000180110190200001a0100"
    )
    assert ServerHello.decode_body(body_of(sh.encode())) == sh


def test_preferred_suite():
    assert ClientHello().preferred_suite() is MediaSuite.AES_128_GCM
    both = (MediaSuite.CHACHA20_POLY1305, MediaSuite.AES_128_GCM)
    assert ClientHello(suites=both).preferred_suite() is MediaSuite.CHACHA20_POLY1305


def test_ready_is_an_empty_frame_and_skips_fields():
    assert Ready().encode() == b"\x03\x00"
    assert Ready.decode_body(Fields().u8(9, 1).body()) == Ready()


def test_server_hello_needs_a_session_id_and_a_known_suite():
    with pytest.raises(WireError):
        ServerHello.decode_body(Fields().u64(2, 1).body())
    with pytest.raises(WireError):
        ServerHello.decode_body(Fields().raw(1, bytes(16)).u8(3, 9).body())
    minimal = ServerHello.decode_body(Fields().raw(1, bytes(16)).body())
    # What an older host leaves out reads as hello.rs's defaults.
    assert (minimal.fec_scheme, minimal.codec, minimal.bit_depth) == (FecScheme.GF16, 2, 8)
    assert (minimal.grants, minimal.audio_rate_hz, minimal.color) == (0xFF, 48_000, b"\1\1\1\0")


def test_decoding_folds_what_cannot_be_honoured():
    sh = ServerHello.decode_body(
        Fields().raw(1, bytes(16)).u8(16, 7).u8(17, 5).u8(18, 0x40).u32(23, 12345)
        .u8(24, 20).u16(25, 300).body()
    )  # fmt: skip
    assert (sh.chroma_format, sh.audio_channels, sh.codec) == (1, 2, Codec.HEVC)
    assert (sh.audio_rate_hz, sh.audio_bits, sh.audio_frame_us) == (48_000, 16, 1000)
    ch = ClientHello.decode_body(
        Fields().str(7, "x" * 65).raw(8, b"\xff\xfe").u8(10, 3).u16(14, 1)
        .raw(19, b"  deck\n").raw(20, b"").raw(21, b"\x09x").raw(25, b"\x07").raw(26, b"\x01")
        .raw(2, b"\x01\x07\x00").body()
    )  # fmt: skip
    assert ch.name is None and ch.launch is None  # a label never fails the handshake
    assert ch.audio_channels == 2 and ch.client_label == "deck"
    assert ch.abr_features == 0 and ch.preset is None and ch.pyrowave_bpp_x100 == 0
    assert ch.access_only and ch.suites == (MediaSuite.CHACHA20_POLY1305, MediaSuite.AES_128_GCM)
    with pytest.raises(WireError):  # a resume id must be 16 bytes
        ClientHello.decode_body(Fields().raw(1, bytes(15)).body())
    with pytest.raises(WireError):  # the hellos refuse a repeated tag too
        ClientHello.decode_body(Fields().u8(4, 1).u8(4, 2).body())


def test_profile_is_never_truncated_and_hdr_meta_rides_tag_13():
    ch = ClientHello(profile="9" * 65, display_hdr=HdrMeta(((1, 2), (3, 4), (5, 6)), (7, 8), 9))
    back = ClientHello.decode_body(body_of(ch.encode()))
    assert back.profile is None and back.display_hdr == ch.display_hdr
    assert len(ch.display_hdr.pack()) == 28


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**16 - 1),
    st.one_of(st.none(), st.text(max_size=70)),
)
def test_hellos_settle_after_one_trip(rate, channels, bits, shard, name):
    # hello.rs `hellos_settle_after_one_trip`: the second trip changes nothing.
    ch = ClientHello(
        audio_rate_hz=rate,
        audio_channels=channels,
        audio_bits=bits,
        max_shard_payload=shard,
        name=name,
    )
    once = ClientHello.decode_body(body_of(ch.encode()))
    assert ClientHello.decode_body(body_of(once.encode())) == once
    sh = ServerHello(audio_rate_hz=rate, audio_channels=channels, audio_bits=bits, codec=bits)
    once_sh = ServerHello.decode_body(body_of(sh.encode()))
    assert ServerHello.decode_body(body_of(once_sh.encode())) == once_sh


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_hello_decoders_survive_any_bytes(body):
    for cls in (ClientHello, ServerHello):
        with contextlib.suppress(WireError):
            cls.decode_body(body)


# features.rs @ 38d3248 tests.
def test_feature_set_v1_bytes_in_place():
    c = FeatureSet.client(VideoCap.MULTI_SLICE | 0x01, ClientCap.EXT)
    h = FeatureSet.host(HostCap.AUDIO_HIRES, HostCap2.INPUT_EDGES)
    assert (c.video_caps, c.client_caps) == (0x81, ClientCap.EXT)
    assert (h.host_caps, h.host_caps2) == (HostCap.AUDIO_HIRES, HostCap2.INPUT_EDGES)
    assert (c.host_caps, h.video_caps) == (0, 0)
    assert c.has(7) and c.has(14) and not c.has(16)


def test_feature_set_drops_trailing_zeros_and_ignores_unknown_bits():
    assert FeatureSet().encode() == b""
    assert FeatureSet.client(0x03, 0).encode() == b"\x03"
    far = FeatureSet().with_bit(127).with_bit(40)
    assert FeatureSet.decode(far.encode()) == far
    assert FeatureSet.decode(far.encode() + b"\xff" * 8) == far
    assert not far.with_bit(500).has(500)
    a, b = FeatureSet().with_bit(1).with_bit(33), FeatureSet().with_bit(33).with_bit(2)
    assert a.intersect(b) == FeatureSet().with_bit(33)
    assert FeatureSet.client(0xFF, 0xFF).with_bit(33).native() == FeatureSet().with_bit(33)
