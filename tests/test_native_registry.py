"""The numbering registry against the numbers read out of punktfunk's source.

Each table below was copied by hand from the named file of punktfunk/punktfunk (commits in
docs/wire.md). A number missing from native.registry, an extra one, a changed one or two
names sharing a number fails here.
"""

from enum import Enum

import pytest

from punktfunk.native.wire import registry as reg

# quic/v2/registry.rs @ f4070d2457dee14c523e4b9c67175bbb5df9897e: `FRAMES` (name, type, bound).
SOURCE_FRAMES = {
    "CLIENT_HELLO": (0x01, 16384), "SERVER_HELLO": (0x02, 16384), "READY": (0x03, 256),
    "PENDING": (0x04, 1024), "REDIRECT": (0x05, 1024), "REFUSED": (0x06, 1024),
    "PAIR_REQUEST": (0x10, 4096), "PAIR_CHALLENGE": (0x11, 1024), "PAIR_PROOF": (0x12, 256),
    "PAIR_RESULT": (0x13, 256), "AUTH_CHALLENGE": (0x14, 256), "AUTH_RESPONSE": (0x15, 1024),
    "RECONFIGURE": (0x20, 1024), "RECONFIGURED": (0x21, 1024), "STREAM_CONFIG": (0x22, 4096),
    "AUDIO_CONFIG": (0x23, 1024), "SET_BITRATE": (0x24, 256), "BITRATE_CHANGED": (0x25, 256),
    "PIPELINE_GAP": (0x26, 256), "PROBE_REQUEST": (0x2B, 256), "PROBE_RESULT": (0x2C, 256),
    "PHASE_REPORT": (0x2D, 256), "CURSOR_SHAPE": (0x30, 131072), "CURSOR_RENDER": (0x31, 256),
    "ACCESS_UPDATE": (0x32, 256), "AUDIO_STATE": (0x33, 256), "LAUNCH_OUTCOME": (0x34, 1024),
    "PAD_SLOTS": (0x35, 256), "SHARD_PAYLOAD_CHANGED": (0x38, 256),
    "SHARD_PAYLOAD_ACK": (0x39, 256), "CLOCK_PROBE": (0x3A, 256), "CLOCK_ECHO": (0x3B, 256),
    "CLIP_CONTROL": (0x40, 256), "CLIP_STATE": (0x41, 256), "CLIP_OFFER": (0x42, 8192),
    "CLIP_FETCH": (0x43, 1024), "CLIP_FETCH_HDR": (0x44, 256), "INPUT_EVENT": (0x50, 256),
    "PAD_IDENTITY": (0x51, 8192), "PAD_FEATURE": (0x52, 256),
}  # fmt: skip

# registry.rs `STREAMS`, `DGRAMS`, `FEATURES`.
SOURCE_STREAMS = {"CONTROL": 0, "INPUT": 1, "TRANSFER": 2, "MANAGEMENT": 3}
SOURCE_DGRAMS = {
    "MEDIA": 0, "AUDIO": 1, "INPUT_STATE": 2, "FEEDBACK": 3, "CLOCK": 4, "RUMBLE": 5,
    "HID_OUTPUT": 6, "CURSOR_STATE": 7, "HOST_TIMING": 8, "HDR_META": 9,
}  # fmt: skip
SOURCE_FEATURES = {
    "V1_VIDEO_CAPS": 0, "V1_CLIENT_CAPS": 8, "V1_HOST_CAPS": 16, "V1_HOST_CAPS2": 24,
    "STREAM_CONFIG": 32, "PAD_WRITES": 33, "PROFILES": 34,
}  # fmt: skip
# registry.rs `CODES` (values from reject.rs @ ff1f196 and quic/handshake.rs @ 38d3248).
SOURCE_CODES = {
    "REJECT_BUSY": 0x42, "QUIT": 0x51, "APP_EXITED": 0x52, "PAIR_NOT_ARMED": 0x60,
    "PAIR_BOUND_OTHER": 0x61, "PAIR_RATE_LIMITED": 0x62, "PAIR_NO_IDENTITY": 0x63,
    "PAIR_DENIED": 0x64, "PAIR_APPROVAL_TIMEOUT": 0x65, "PAIR_SUPERSEDED": 0x66,
    "WIRE_VERSION": 0x67, "SETUP_FAILED": 0x68, "ACCESS_EXPIRED": 0x69,
    "LAUNCH_NOT_PERMITTED": 0x6A, "HOST_POWER": 0x6B, "PROFILE_UNKNOWN": 0x6C, "NO_SEAT": 0x6D,
    "SEAT_OCCUPIED": 0x6E, "SEAT_UNAVAILABLE": 0x6F, "CLIP_CANCELLED": 0x70,
    "STOP_UNKNOWN_STREAM": 0x71, "ACCESS_GRANTED": 0x72,
}  # fmt: skip
# quic/datagram.rs @ 867f3f4 and input.rs @ 867f3f4: the wrapped payloads' tag bytes.
SOURCE_DGRAM_TAGS = {
    "INPUT": 0xC8, "AUDIO": 0xC9, "RUMBLE": 0xCA, "MIC": 0xCB, "RICH_INPUT": 0xCC,
    "HID_OUTPUT": 0xCD, "HDR_META": 0xCE, "HOST_TIMING": 0xCF, "CURSOR_STATE": 0xD0,
    "PAD_AUDIO": 0xD1, "AUDIO_RED": 0xD2, "AUDIO_PCM": 0xD3,
}  # fmt: skip

# Field tags: msg.rs @ 867f3f4 (`v2_message!` lines), hello.rs @ 72d084e, dgram.rs.
SOURCE_TAGS = {
    "CLIENT_HELLO": [
        "resume", "suites", "mode", "compositor", "gamepad", "bitrate_kbps", "name", "launch",
        "features", "audio_channels", "video_codecs", "preferred_codec", "display_hdr",
        "max_shard_payload", "audio_rate_hz", "audio_bits", "audio_layout", "video_fit",
        "client_label", "abr_features", "preset", "link", "profile", "probe_only",
        "pyrowave_bpp_x100", "access_only",
    ],
    "SERVER_HELLO": [
        "session_id", "clock_origin_ns", "suite", "features", "mode", "fec_scheme",
        "fec_percent", "max_data_per_block", "shard_payload", "frames", "compositor", "gamepad",
        "bitrate_kbps", "bit_depth", "color", "chroma_format", "audio_channels", "codec",
        "mgmt_port", "grants", "expires_in_secs", "audio_codec", "audio_rate_hz", "audio_bits",
        "audio_frame_us", "audio_layout", "profile",
    ],
    "READY": [], "PENDING": [],
    "REDIRECT": ["addr", "port", "profile", "seat_no", "seat_name", "occupant", "pin"],
    "REFUSED": ["code", "reason"],
    "PAIR_REQUEST": ["name", "spake_a", "device_key"],
    "PAIR_CHALLENGE": ["spake_b", "confirm"], "PAIR_PROOF": ["confirm"], "PAIR_RESULT": ["ok"],
    "AUTH_CHALLENGE": ["nonce"], "AUTH_RESPONSE": ["device_key", "signature"],
    "RECONFIGURE": ["mode"], "RECONFIGURED": ["accepted", "mode"],
    "STREAM_CONFIG": [
        "epoch", "mode", "codec", "bit_depth", "color", "chroma_format", "host_iface_kind",
        "host_link_mbps", "host_sndbuf_kb", "host_forced_shape",
    ],
    "AUDIO_CONFIG": [
        "stream", "epoch", "codec", "rate_hz", "bits", "channels", "layout", "frame_us",
        "redundant",
    ],
    "SET_BITRATE": ["bitrate_kbps"], "BITRATE_CHANGED": ["bitrate_kbps", "reason"],
    "PIPELINE_GAP": ["gap_ms"],
    "PROBE_REQUEST": ["target_kbps", "duration_ms", "burst_hz", "group_bytes", "group_rate_kbps"],
    "PROBE_RESULT": [
        "bytes_sent", "packets_sent", "duration_ms", "wire_packets_sent", "send_dropped",
    ],
    "CURSOR_SHAPE": ["serial", "w", "h", "hot_x", "hot_y", "rgba"],
    "CURSOR_RENDER": ["client_draws"], "ACCESS_UPDATE": ["grants", "remaining_secs"],
    "AUDIO_STATE": ["muted"], "LAUNCH_OUTCOME": ["kind", "message"], "PAD_SLOTS": ["slots"],
    "SHARD_PAYLOAD_CHANGED": ["shard_payload"], "SHARD_PAYLOAD_ACK": ["shard_payload"],
    "CLOCK_PROBE": ["t1_ns"], "CLOCK_ECHO": ["t1_ns", "t2_ns", "t3_ns"],
    "CLIP_CONTROL": ["enabled", "flags"], "CLIP_STATE": ["enabled", "policy", "reason"],
    "CLIP_OFFER": ["seq", "kind"], "CLIP_FETCH": ["seq", "file_index", "mime"],
    "CLIP_FETCH_HDR": ["status", "total_size"],
    "PAD_IDENTITY": ["pad", "serial", "replies", "slot"], "PAD_FEATURE": ["pad", "data"],
}  # fmt: skip
# dgram.rs at 27fa515: Feedback tags 8-13, 16, 17 are not read here (docs/wire.md).
SOURCE_DGRAM_FIELDS = {
    "FEEDBACK": {
        "window": 1, "loss_ppm": 2, "packets_received": 3, "ask": 4, "invalidate_first": 5,
        "invalidate_last": 6, "keyframe": 7, "acked_last": 14, "acked_mask": 15,
    },
    "CLOCK": {"t1_ns": 1, "t2_ns": 2, "t3_ns": 3},
}  # fmt: skip


def members(enum: type[Enum]) -> dict[str, int]:
    return {name: int(m.value) for name, m in enum.__members__.items()}


@pytest.mark.parametrize(
    ("enum", "source"),
    [
        (reg.MsgType, {k: v[0] for k, v in SOURCE_FRAMES.items()}),
        (reg.StreamType, SOURCE_STREAMS),
        (reg.DgramKind, SOURCE_DGRAMS),
        (reg.Feature, SOURCE_FEATURES),
        (reg.CloseCode, SOURCE_CODES),
        (reg.DgramTag, SOURCE_DGRAM_TAGS),
    ],
)
def test_every_number_is_tabled_and_matches_the_source(enum, source):
    # An IntEnum alias (two names, one value) would hide in __members__ but not in iteration.
    assert len(list(enum)) == len(enum.__members__), f"{enum.__name__} has a duplicate number"
    assert members(enum) == source


def test_every_frame_type_has_its_source_bound():
    assert {t.name: (int(t), reg.MAX_BODY[t]) for t in reg.MsgType} == SOURCE_FRAMES
    assert reg.max_body(reg.MsgType.CURSOR_SHAPE) == 128 * 1024
    assert reg.max_body(0x3FFF) == reg.UNKNOWN_MAX_BODY == 64 * 1024
    assert all(b >= 256 for b in reg.MAX_BODY.values())


def test_field_tags_are_unique_per_message_and_match_the_source():
    assert set(reg.FIELD_TAGS) <= set(reg.MsgType)
    for msg_type, tags in reg.FIELD_TAGS.items():
        assert len(set(tags.values())) == len(tags), f"{msg_type.name} reuses a tag"
        # Every message numbers its fields 1, 2, 3... in source order.
        assert list(tags) == SOURCE_TAGS[msg_type.name], msg_type.name
        assert sorted(tags.values()) == list(range(1, len(tags) + 1)), msg_type.name
    assert {t.name for t in reg.FIELD_TAGS} == set(SOURCE_TAGS)
    for kind, tags in reg.DGRAM_FIELD_TAGS.items():
        assert tags == SOURCE_DGRAM_FIELDS[kind.name]


def test_native_feature_bits_sit_above_the_v1_bytes():
    native = [f for f in reg.Feature if not f.name.startswith("V1_")]
    assert all(32 <= f < 128 for f in native)


def test_capability_bits_match_caps_rs():
    # quic/caps.rs @ 867f3f4.
    assert members(reg.VideoCap) == {
        "TEN_BIT": 0x01, "HDR": 0x02, "YUV444": 0x04, "HOST_TIMING": 0x08, "PROBE_SEQ": 0x10,
        "STREAMED_AU": 0x20, "CHACHA20": 0x40, "MULTI_SLICE": 0x80,
    }  # fmt: skip
    assert members(reg.ClientCap) == {
        "CURSOR": 0x01, "AUDIO_RED": 0x04, "PAD_AUDIO": 0x08, "AUDIO_HIRES": 0x10,
        "KEEP_HOST_AUDIO": 0x20, "EXT": 0x40,
    }  # fmt: skip
    assert members(reg.HostCap) == {
        "GAMEPAD_STATE": 0x01, "CLIPBOARD": 0x02, "TEXT_INPUT": 0x04, "CURSOR": 0x08,
        "PEN": 0x10, "AUDIO_RED": 0x20, "PAD_AUDIO": 0x40, "AUDIO_HIRES": 0x80,
    }  # fmt: skip
    assert members(reg.HostCap2) == {
        "REPEAT_MARK": 0x01, "TOUCH": 0x02, "EXT": 0x04, "SCROLL": 0x08, "RAMP": 0x10,
        "DELIVERY": 0x20, "INPUT_EDGES": 0x40,
    }  # fmt: skip
    assert members(reg.Codec) == {"H264": 1, "HEVC": 2, "AV1": 4, "PYROWAVE": 8}


def test_media_and_key_schedule_constants():
    # packet/v2.rs, packet/header.rs, crypto.rs, session/replay.rs, config.rs.
    assert (reg.V2_HEADER_LEN, reg.V2_CLEAR_LEN, reg.WIRE_OVERHEAD) == (30, 5, 46)
    assert reg.V2_LAST_BLOCK == 0x8000
    assert max(reg.UserFlag) < reg.V2_LAST_BLOCK  # a user flag never reads as LAST_BLOCK
    assert members(reg.MediaStream) == {"VIDEO": 0, "PROBE": 1}
    assert reg.MEDIA_KEY_PACKETS == 1 << 23 and reg.REPLAY_WINDOW == 131072
    assert reg.MEDIA_EXPORTER_LABEL == b"EXPORTER-punktfunk/2 media"
    assert (reg.SECRET_INFO_H2C, reg.SECRET_INFO_C2H) == (b"pf2 media h2c", b"pf2 media c2h")
    assert (reg.KEY_INFO, reg.IV_INFO) == (b"pf2 key", b"pf2 iv")
    assert members(reg.MediaSuite) == {"AES_128_GCM": 0, "CHACHA20_POLY1305": 1}
    assert members(reg.FecScheme) == {"GF8": 0, "GF16": 1}
    assert reg.ALPN == b"pkf2"
