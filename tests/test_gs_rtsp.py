"""RTSP as moonlight-common-c speaks it: request framing, the `rtspenc` encrypted framing in
both directions, the ANNOUNCE SDP SdpGenerator.c emits, and the DESCRIBE body substrings the
client greps for (codecs, RFI, encryption flags, Opus surround layouts)."""

from __future__ import annotations

import contextlib
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gs_client import (
    RtspClientCrypto,
    SdpConfig,
    moonlight_sdp,
    parse_rtsp_response,
    rtsp_request,
    surround_configs,
)
from punktfunk.gamestream.rtsp import (
    ENC_AUDIO,
    ENC_CONTROL_V2,
    ENC_VIDEO,
    MAX_REQUEST,
    DescribeCaps,
    RtspCipher,
    RtspError,
    build_response,
    describe_body,
    parse_announce,
    parse_request,
    request_length,
    stream_type,
)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
TARGET = "rtsp://192.168.1.50:48010"


# --- plain framing ----------------------------------------------------------------------------


def test_request_length_waits_for_headers_then_body() -> None:
    body = moonlight_sdp(SdpConfig())
    request = rtsp_request(
        "ANNOUNCE",
        "streamid=control/13/0",
        6,
        {
            "Session": "DEADBEEFCAFE",
            "Content-type": "application/sdp",
            "Content-length": str(len(body)),
        },
        body,
    )
    head_len = request.index(b"\r\n\r\n") + 4
    for cut in (0, 10, head_len - 1):
        assert request_length(request[:cut]) is None
    assert request_length(request[:head_len]) == len(request)
    assert request_length(request + b"next") == len(request)


def test_request_length_without_body() -> None:
    request = rtsp_request("OPTIONS", TARGET, 1)
    assert request_length(request) == len(request)


@pytest.mark.parametrize("name", ["Content-length", "Content-Length", "CONTENT-LENGTH"])
def test_content_length_name_is_case_insensitive(name: str) -> None:
    request = rtsp_request("ANNOUNCE", "x", 1, {name: "5"}, b"hello")
    assert request_length(request) == len(request)


@pytest.mark.parametrize("value", ["abc", "-5", str(MAX_REQUEST)])
def test_bad_content_length(value: str) -> None:
    with pytest.raises(RtspError) as err:
        request_length(rtsp_request("ANNOUNCE", "x", 1, {"Content-length": value}))
    assert err.value.status == 400


def test_endless_headers_are_refused() -> None:
    with pytest.raises(RtspError):
        request_length(b"OPTIONS x RTSP/1.0\r\nX: " + b"a" * (MAX_REQUEST + 1))


def test_parse_moonlight_requests() -> None:
    req = parse_request(
        rtsp_request(
            "SETUP",
            "streamid=video/0/0",
            4,
            {
                "Session": "DEADBEEFCAFE",
                "Transport": "unicast;X-GS-ClientPort=50000-50001",
                "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT",
            },
        )
    )
    assert req.method == "SETUP"
    assert req.target == "streamid=video/0/0"
    assert req.cseq == "4"
    assert req.headers["session"] == "DEADBEEFCAFE"
    assert req.headers["if-modified-since"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert stream_type(req.target) == "video"
    assert stream_type("streamid=audio/0/0") == "audio"
    assert stream_type("streamid=control/13/0") == "control"


@pytest.mark.parametrize(
    "data", [b"GARBAGE\r\n\r\n", b"OPTIONS x HTTP/1.1\r\n\r\n", b"\xff\xfe x RTSP/1.0\r\n\r\n"]
)
def test_malformed_request_line(data: bytes) -> None:
    with pytest.raises(RtspError) as err:
        parse_request(data)
    assert err.value.status == 400


def test_build_response_parses_as_the_client_expects() -> None:
    body = describe_body(DescribeCaps(hevc=True, av1=False, rfi=True))
    raw = build_response("2", headers={"Session": "DEADBEEFCAFE;timeout = 90"}, body=body)
    assert raw.startswith(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n")
    code, headers, payload = parse_rtsp_response(raw)
    assert code == 200
    assert headers["cseq"] == "2"
    assert headers["session"].split(";")[0] == "DEADBEEFCAFE"
    assert int(headers["content-length"]) == len(body) and payload == body
    code, _, payload = parse_rtsp_response(build_response("3", 404, "Not Found"))
    assert code == 404 and payload == b""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_framing_never_raises_anything_but_rtsp_error(data: bytes) -> None:
    for parse in (request_length, parse_request, RtspCipher.message_length):
        with contextlib.suppress(RtspError):
            parse(data)
    with contextlib.suppress(RtspError):
        RtspCipher(KEY).decrypt(data)


# --- rtspenc ----------------------------------------------------------------------------------


def test_encrypted_handshake_both_directions() -> None:
    client = RtspClientCrypto(KEY)
    host = RtspCipher(KEY)
    requests = [
        ("OPTIONS", TARGET),
        ("DESCRIBE", TARGET),
        ("SETUP", "streamid=audio/0/0"),
        ("SETUP", "streamid=video/0/0"),
        ("SETUP", "streamid=control/13/0"),
        ("ANNOUNCE", "streamid=control/13/0"),
        ("PLAY", "/"),
    ]
    for cseq, (method, target) in enumerate(requests, start=1):
        plain = rtsp_request(method, target, cseq)
        wire = client.seal(plain)
        assert RtspCipher.is_encrypted(wire)
        assert struct.unpack_from(">I", wire, 4)[0] == cseq  # client seq starts at 1
        assert RtspCipher.message_length(wire[:4]) == len(wire)
        assert host.decrypt(wire) == plain
        reply = host.encrypt(build_response(str(cseq)))
        seq, opened = client.open(reply)
        assert seq == cseq  # host replies count from 1 as well
        assert parse_rtsp_response(opened)[0] == 200


def test_plain_requests_are_not_mistaken_for_encrypted() -> None:
    for method in ("OPTIONS", "DESCRIBE", "SETUP", "ANNOUNCE", "PLAY"):
        assert not RtspCipher.is_encrypted(rtsp_request(method, TARGET, 1))


def test_encrypted_request_tampering_is_refused() -> None:
    wire = bytearray(RtspClientCrypto(KEY).seal(rtsp_request("OPTIONS", TARGET, 1)))
    for position in (8, 30, len(wire) - 1, 7):  # tag, ciphertext, last byte, seq
        bad = bytearray(wire)
        bad[position] ^= 0x40
        with pytest.raises(RtspError):
            RtspCipher(KEY).decrypt(bytes(bad))
    with pytest.raises(RtspError):
        RtspCipher(KEY).decrypt(bytes(wire[:-1]))
    with pytest.raises(RtspError):
        RtspCipher(bytes(16)).decrypt(bytes(wire))


def test_host_direction_byte_is_not_accepted_from_the_client() -> None:
    """A message sealed with the host's IV ('H','R') must not open as a client request."""
    host_sealed = RtspCipher(KEY).encrypt(b"OPTIONS x RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    with pytest.raises(RtspError):
        RtspCipher(KEY).decrypt(host_sealed)


def test_host_reply_iv_layout() -> None:
    """Decrypt a host reply by hand: IV = LE32 seq, 6 zero bytes, 'H', 'R'."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    host = RtspCipher(KEY)
    host.encrypt(b"first")
    reply = host.encrypt(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n")
    word, seq = struct.unpack_from(">II", reply)
    assert word == 0x80000000 | len(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n") and seq == 2
    iv = struct.pack("<I", 2) + bytes(6) + b"HR"
    assert AESGCM(KEY).decrypt(iv, reply[24:] + reply[8:24], None).startswith(b"RTSP/1.0")


# --- ANNOUNCE ---------------------------------------------------------------------------------


def test_announce_of_a_real_moonlight_sdp() -> None:
    cfg = SdpConfig(
        width=2560,
        height=1440,
        fps=120,
        packet_size=1392 - 32,
        bitrate_kbps=40000,
        codec=1,
        hdr=True,
        encryption_enabled=ENC_CONTROL_V2 | ENC_VIDEO,
        csc=(2 << 1) | 1,
    )
    body = moonlight_sdp(cfg)
    assert b"a=x-nv-video[0].packetSize:1360 \r\n" in body  # the trailing space is real
    request = rtsp_request(
        "ANNOUNCE",
        "streamid=control/13/0",
        6,
        {
            "Session": "DEADBEEFCAFE",
            "Content-type": "application/sdp",
            "Content-length": str(len(body)),
        },
        body,
    )
    assert request_length(request) == len(request)
    n = parse_announce(parse_request(request).body)
    assert (n.width, n.height, n.fps) == (2560, 1440, 120)
    assert n.packet_size == 1360
    assert n.bitrate_kbps == 40000  # x-ml-video.configuredBitrateKbps wins
    assert n.codec == 1
    assert n.hdr is True
    assert n.csc_mode == 5
    assert n.min_fec_packets == 2
    assert n.encryption == ENC_CONTROL_V2 | ENC_VIDEO
    assert n.ml_feature_flags == 3
    assert (n.audio_channels, n.audio_mask, n.audio_high_quality) == (2, 3, False)
    assert n.audio_packet_ms == 5
    assert n.max_ref_frames == 0
    assert n.control_protocol == 13
    assert n.extra["x-nv-video[0].rateControlMode"] == "4"  # one trailing space dropped
    assert n.extra["x-nv-vqos[0].bw.maximumBitrateKbps"] == "32000"


def test_announce_surround_high_quality_and_av1() -> None:
    cfg = SdpConfig(codec=2, channels=8, channel_mask=0x63F, high_quality=True, packet_duration=5)
    n = parse_announce(moonlight_sdp(cfg))
    assert n.codec == 2
    assert (n.audio_channels, n.audio_mask, n.audio_high_quality) == (8, 0x63F, True)


def test_announce_without_configured_bitrate_uses_maximum() -> None:
    body = moonlight_sdp(SdpConfig(bitrate_kbps=10000)).replace(
        b"a=x-ml-video.configuredBitrateKbps:10000 \r\n", b""
    )
    assert parse_announce(body).bitrate_kbps == 8000


def test_announce_legacy_audio_encryption_flag() -> None:
    """x-nv-general.featureFlags bit 0x20 is the legacy audio-encryption opt-in (moonlight sets
    it, with AudioEncryptionEnabled, whenever it encrypts audio); Sunshine ORs it into the
    enabled set as SS_ENC_AUDIO (rtsp.cpp:1160-1163)."""
    cfg = SdpConfig(encryption_enabled=ENC_CONTROL_V2, nv_feature_flags=0x07 | 0x80 | 0x20)
    assert parse_announce(moonlight_sdp(cfg)).encryption & ENC_AUDIO
    cfg = SdpConfig(encryption_enabled=ENC_CONTROL_V2, nv_feature_flags=0x07 | 0x80)
    assert not parse_announce(moonlight_sdp(cfg)).encryption & ENC_AUDIO


@pytest.mark.parametrize(
    "name",
    [
        "x-nv-video[0].clientViewportWd",
        "x-nv-video[0].clientViewportHt",
        "x-nv-video[0].maxFPS",
        "x-nv-video[0].packetSize",
        "x-nv-vqos[0].bw.maximumBitrateKbps",
        "x-nv-audio.surround.numChannels",
        "x-nv-audio.surround.channelMask",
    ],
)
def test_announce_missing_required_attribute_is_400(name: str) -> None:
    lines = moonlight_sdp(SdpConfig()).split(b"\r\n")
    body = b"\r\n".join(line for line in lines if not line.startswith(f"a={name}:".encode()))
    with pytest.raises(RtspError) as err:
        parse_announce(body)
    assert err.value.status == 400
    assert name in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-nv-video[0].packetSize", "1000"),
        ("x-nv-video[0].packetSize", "big"),
        ("x-nv-video[0].clientViewportWd", "0"),
        ("x-nv-video[0].maxFPS", "sixty"),
    ],
)
def test_announce_bad_values_are_400(name: str, value: str) -> None:
    body = re.sub(
        rf"a={re.escape(name)}:[^ ]* ".encode(),
        f"a={name}:{value} ".encode(),
        moonlight_sdp(SdpConfig()),
    )
    with pytest.raises(RtspError) as err:
        parse_announce(body)
    assert err.value.status == 400


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_announce_garbage_only_raises_rtsp_error(data: bytes) -> None:
    with contextlib.suppress(RtspError):
        parse_announce(data)


# --- DESCRIBE ---------------------------------------------------------------------------------


def strtoul_attribute(payload: bytes, name: str) -> int | None:
    """parseSdpAttributeToUInt: strstr(name), then strtoul after the next ':' (base 0)."""
    text = payload.decode()
    at = text.find(name)
    if at < 0:
        return None
    colon = text.find(":", at)
    digits = re.match(r"\s*(0[xX][0-9a-fA-F]+|\d+)", text[colon + 1 :])
    assert digits, f"{name} has no number"
    return int(digits.group(1), 0)


def test_describe_codecs_and_rfi() -> None:
    full = describe_body(DescribeCaps(hevc=True, av1=True, rfi=True))
    assert b"sprop-parameter-sets=AAAAAU" in full
    assert b"AV1/90000" in full and b"a=rtpmap:98 AV1/90000" in full
    assert b"x-nv-video[0].refPicInvalidation" in full
    bare = describe_body(DescribeCaps(hevc=False, av1=False, rfi=False))
    assert b"sprop-parameter-sets=AAAAAU" not in bare
    assert b"AV1/90000" not in bare
    assert b"refPicInvalidation" not in bare


def test_describe_encryption_and_feature_flags() -> None:
    body = describe_body(DescribeCaps(hevc=True, av1=False, rfi=False, feature_flags=0x3))
    assert strtoul_attribute(body, "x-ss-general.featureFlags") == 3
    supported = strtoul_attribute(body, "x-ss-general.encryptionSupported")
    requested = strtoul_attribute(body, "x-ss-general.encryptionRequested")
    assert supported == ENC_CONTROL_V2 | ENC_VIDEO | ENC_AUDIO
    assert requested == ENC_CONTROL_V2
    assert b"a=x-ss-general.featureFlags:" in body


@pytest.mark.parametrize(
    ("channels", "normal_streams", "high_streams"), [(6, (4, 2), (6, 0)), (8, (5, 3), (8, 0))]
)
def test_surround_params_normal_then_high_quality(
    channels: int, normal_streams: tuple[int, int], high_streams: tuple[int, int]
) -> None:
    body = describe_body(DescribeCaps(hevc=True, av1=True, rfi=True))
    normal, high = surround_configs(body, channels)
    assert tuple(normal[:2]) == normal_streams
    assert normal[2:] == list(range(channels)), "rotated normal mapping must be FL FR C LFE ..."
    assert high is not None, "a second surround-params entry enables high quality"
    assert tuple(high[:2]) == high_streams
    assert high[2:] == list(range(channels))
    # streams + coupled streams cover exactly the channels (Opus multistream invariant)
    for streams, coupled in (normal[:2], high[:2]):
        assert streams + coupled == channels


def test_surround_params_lines_are_well_formed() -> None:
    body = describe_body(DescribeCaps(hevc=False, av1=False, rfi=False)).decode()
    params = re.findall(r"a=fmtp:97 surround-params=(\d+)", body)
    assert params
    for value in params:
        channels, mapping = int(value[0]), value[3:]
        assert len(mapping) == channels
        assert sorted(int(c) for c in mapping) == list(range(channels))
