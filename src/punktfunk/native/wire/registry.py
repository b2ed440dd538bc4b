"""Every number on the punktfunk/2 wire, in one module.

Values follow punktfunk's `quic/v2/registry.rs` (frame/stream/datagram kinds, feature bits,
body bounds), `reject.rs` and `quic/handshake.rs` (close codes), the per-message field tags in
`quic/v2/msg.rs`, `quic/v2/hello.rs` and `quic/v2/dgram.rs`, the media header in
`packet/v2.rs`, and the key schedule in `crypto.rs`. docs/wire.md names the file per value.
A number is never reused for a second meaning, so every space here is an `@unique` enum.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag, unique

ALPN = b"pkf2"
ALPN_V1 = b"pkf1"
# client/pairing.rs dials with this server name; hosts present a self-signed cert anyway.
SERVER_NAME = "punktfunk"
# Issue 7 names 9777 as punktfunk's default port; the indexed source does not show it.
DEFAULT_PORT = 9777

# Bound on a body of a type this build does not know: it is skipped, but held first.
UNKNOWN_MAX_BODY = 64 * 1024


@unique
class MsgType(IntEnum):
    """Control-stream frame types (registry.rs `MSG_*`)."""

    CLIENT_HELLO = 0x01
    SERVER_HELLO = 0x02
    READY = 0x03
    PENDING = 0x04
    REDIRECT = 0x05
    REFUSED = 0x06
    PAIR_REQUEST = 0x10
    PAIR_CHALLENGE = 0x11
    PAIR_PROOF = 0x12
    PAIR_RESULT = 0x13
    AUTH_CHALLENGE = 0x14
    AUTH_RESPONSE = 0x15
    RECONFIGURE = 0x20
    RECONFIGURED = 0x21
    STREAM_CONFIG = 0x22
    AUDIO_CONFIG = 0x23
    SET_BITRATE = 0x24
    BITRATE_CHANGED = 0x25
    PIPELINE_GAP = 0x26
    PROBE_REQUEST = 0x2B
    PROBE_RESULT = 0x2C
    PHASE_REPORT = 0x2D
    CURSOR_SHAPE = 0x30
    CURSOR_RENDER = 0x31
    ACCESS_UPDATE = 0x32
    AUDIO_STATE = 0x33
    LAUNCH_OUTCOME = 0x34
    PAD_SLOTS = 0x35
    SHARD_PAYLOAD_CHANGED = 0x38
    SHARD_PAYLOAD_ACK = 0x39
    CLOCK_PROBE = 0x3A
    CLOCK_ECHO = 0x3B
    CLIP_CONTROL = 0x40
    CLIP_STATE = 0x41
    CLIP_OFFER = 0x42
    CLIP_FETCH = 0x43
    CLIP_FETCH_HDR = 0x44
    INPUT_EVENT = 0x50
    PAD_IDENTITY = 0x51
    PAD_FEATURE = 0x52


_K = 1024
# registry.rs `FRAMES`: the bound on each type's body, checked before the body is buffered.
MAX_BODY: dict[MsgType, int] = {
    MsgType.CLIENT_HELLO: 16 * _K,
    MsgType.SERVER_HELLO: 16 * _K,
    MsgType.READY: 256,
    MsgType.PENDING: _K,
    MsgType.REDIRECT: _K,
    MsgType.REFUSED: _K,
    MsgType.PAIR_REQUEST: 4 * _K,
    MsgType.PAIR_CHALLENGE: _K,
    MsgType.PAIR_PROOF: 256,
    MsgType.PAIR_RESULT: 256,
    MsgType.AUTH_CHALLENGE: 256,
    MsgType.AUTH_RESPONSE: _K,
    MsgType.RECONFIGURE: _K,
    MsgType.RECONFIGURED: _K,
    MsgType.STREAM_CONFIG: 4 * _K,
    MsgType.AUDIO_CONFIG: _K,
    MsgType.SET_BITRATE: 256,
    MsgType.BITRATE_CHANGED: 256,
    MsgType.PIPELINE_GAP: 256,
    MsgType.PROBE_REQUEST: 256,
    MsgType.PROBE_RESULT: 256,
    MsgType.PHASE_REPORT: 256,
    MsgType.CURSOR_SHAPE: 128 * _K,
    MsgType.CURSOR_RENDER: 256,
    MsgType.ACCESS_UPDATE: 256,
    MsgType.AUDIO_STATE: 256,
    MsgType.LAUNCH_OUTCOME: _K,
    MsgType.PAD_SLOTS: 256,
    MsgType.SHARD_PAYLOAD_CHANGED: 256,
    MsgType.SHARD_PAYLOAD_ACK: 256,
    MsgType.CLOCK_PROBE: 256,
    MsgType.CLOCK_ECHO: 256,
    MsgType.CLIP_CONTROL: 256,
    MsgType.CLIP_STATE: 256,
    MsgType.CLIP_OFFER: 8 * _K,
    MsgType.CLIP_FETCH: _K,
    MsgType.CLIP_FETCH_HDR: 256,
    MsgType.INPUT_EVENT: 256,
    MsgType.PAD_IDENTITY: 8 * _K,
    MsgType.PAD_FEATURE: 256,
}


def max_body(msg_type: int) -> int:
    """The bound on a body of `msg_type`; UNKNOWN_MAX_BODY for a type this build lacks."""
    return MAX_BODY.get(msg_type, UNKNOWN_MAX_BODY)  # type: ignore[call-overload]


@unique
class StreamType(IntEnum):
    """The first varint on every QUIC stream."""

    CONTROL = 0x00
    INPUT = 0x01
    TRANSFER = 0x02
    MANAGEMENT = 0x03


@unique
class DgramKind(IntEnum):
    """The first varint of every QUIC datagram (`quic/v2/dgram.rs`)."""

    MEDIA = 0x00
    AUDIO = 0x01
    INPUT_STATE = 0x02
    FEEDBACK = 0x03
    CLOCK = 0x04
    RUMBLE = 0x05
    HID_OUTPUT = 0x06
    CURSOR_STATE = 0x07
    HOST_TIMING = 0x08
    HDR_META = 0x09


@unique
class DgramTag(IntEnum):
    """First byte of a wrapped datagram payload (`quic/datagram.rs`, `input.rs`)."""

    INPUT = 0xC8
    AUDIO = 0xC9
    RUMBLE = 0xCA
    MIC = 0xCB
    RICH_INPUT = 0xCC
    HID_OUTPUT = 0xCD
    HDR_META = 0xCE
    HOST_TIMING = 0xCF
    CURSOR_STATE = 0xD0
    PAD_AUDIO = 0xD1
    AUDIO_RED = 0xD2
    AUDIO_PCM = 0xD3


# dgram.rs `inner_tags`: the payload tags each wrapped kind may carry.
DGRAM_INNER_TAGS: dict[DgramKind, frozenset[DgramTag]] = {
    DgramKind.AUDIO: frozenset(
        {DgramTag.AUDIO, DgramTag.AUDIO_RED, DgramTag.AUDIO_PCM, DgramTag.PAD_AUDIO, DgramTag.MIC}
    ),
    DgramKind.INPUT_STATE: frozenset({DgramTag.INPUT, DgramTag.RICH_INPUT}),
    DgramKind.RUMBLE: frozenset({DgramTag.RUMBLE}),
    DgramKind.HID_OUTPUT: frozenset({DgramTag.HID_OUTPUT}),
    DgramKind.CURSOR_STATE: frozenset({DgramTag.CURSOR_STATE}),
    DgramKind.HOST_TIMING: frozenset({DgramTag.HOST_TIMING}),
    DgramKind.HDR_META: frozenset({DgramTag.HDR_META}),
}


# Field tags per message: attribute name -> tag (msg.rs `v2_message!`, hello.rs, dgram.rs).
# Tags are per message and never reused; tests/test_native_registry.py pins every one.
# fmt: off
FIELD_TAGS: dict[MsgType, dict[str, int]] = {
    MsgType.CLIENT_HELLO: {
        "resume": 1, "suites": 2, "mode": 3, "compositor": 4, "gamepad": 5, "bitrate_kbps": 6,
        "name": 7, "launch": 8, "features": 9, "audio_channels": 10, "video_codecs": 11,
        "preferred_codec": 12, "display_hdr": 13, "max_shard_payload": 14, "audio_rate_hz": 15,
        "audio_bits": 16, "audio_layout": 17, "video_fit": 18, "client_label": 19,
        "abr_features": 20, "preset": 21, "link": 22, "profile": 23, "probe_only": 24,
        "pyrowave_bpp_x100": 25, "access_only": 26,
    },
    MsgType.SERVER_HELLO: {
        "session_id": 1, "clock_origin_ns": 2, "suite": 3, "features": 4, "mode": 5,
        "fec_scheme": 6, "fec_percent": 7, "max_data_per_block": 8, "shard_payload": 9,
        "frames": 10, "compositor": 11, "gamepad": 12, "bitrate_kbps": 13, "bit_depth": 14,
        "color": 15, "chroma_format": 16, "audio_channels": 17, "codec": 18, "mgmt_port": 19,
        "grants": 20, "expires_in_secs": 21, "audio_codec": 22, "audio_rate_hz": 23,
        "audio_bits": 24, "audio_frame_us": 25, "audio_layout": 26, "profile": 27,
    },
    MsgType.READY: {},
    MsgType.PENDING: {},
    MsgType.REDIRECT: {
        "addr": 1, "port": 2, "profile": 3, "seat_no": 4, "seat_name": 5, "occupant": 6,
        "pin": 7,
    },
    MsgType.REFUSED: {"code": 1, "reason": 2},
    MsgType.PAIR_REQUEST: {"name": 1, "spake_a": 2, "device_key": 3},
    MsgType.PAIR_CHALLENGE: {"spake_b": 1, "confirm": 2},
    MsgType.PAIR_PROOF: {"confirm": 1},
    MsgType.PAIR_RESULT: {"ok": 1},
    MsgType.AUTH_CHALLENGE: {"nonce": 1},
    MsgType.AUTH_RESPONSE: {"device_key": 1, "signature": 2},
    MsgType.RECONFIGURE: {"mode": 1},
    MsgType.RECONFIGURED: {"accepted": 1, "mode": 2},
    MsgType.STREAM_CONFIG: {
        "epoch": 1, "mode": 2, "codec": 3, "bit_depth": 4, "color": 5, "chroma_format": 6,
        "host_iface_kind": 7, "host_link_mbps": 8, "host_sndbuf_kb": 9, "host_forced_shape": 10,
    },
    MsgType.AUDIO_CONFIG: {
        "stream": 1, "epoch": 2, "codec": 3, "rate_hz": 4, "bits": 5, "channels": 6,
        "layout": 7, "frame_us": 8, "redundant": 9,
    },
    MsgType.SET_BITRATE: {"bitrate_kbps": 1},
    MsgType.BITRATE_CHANGED: {"bitrate_kbps": 1, "reason": 2},
    MsgType.PIPELINE_GAP: {"gap_ms": 1},
    MsgType.PROBE_REQUEST: {
        "target_kbps": 1, "duration_ms": 2, "burst_hz": 3, "group_bytes": 4,
        "group_rate_kbps": 5,
    },
    MsgType.PROBE_RESULT: {
        "bytes_sent": 1, "packets_sent": 2, "duration_ms": 3, "wire_packets_sent": 4,
        "send_dropped": 5,
    },
    MsgType.CURSOR_SHAPE: {"serial": 1, "w": 2, "h": 3, "hot_x": 4, "hot_y": 5, "rgba": 6},
    MsgType.CURSOR_RENDER: {"client_draws": 1},
    MsgType.ACCESS_UPDATE: {"grants": 1, "remaining_secs": 2},
    MsgType.AUDIO_STATE: {"muted": 1},
    MsgType.LAUNCH_OUTCOME: {"kind": 1, "message": 2},
    MsgType.PAD_SLOTS: {"slots": 1},
    MsgType.SHARD_PAYLOAD_CHANGED: {"shard_payload": 1},
    MsgType.SHARD_PAYLOAD_ACK: {"shard_payload": 1},
    MsgType.CLOCK_PROBE: {"t1_ns": 1},
    MsgType.CLOCK_ECHO: {"t1_ns": 1, "t2_ns": 2, "t3_ns": 3},
    MsgType.CLIP_CONTROL: {"enabled": 1, "flags": 2},
    MsgType.CLIP_STATE: {"enabled": 1, "policy": 2, "reason": 3},
    MsgType.CLIP_OFFER: {"seq": 1, "kind": 2},
    MsgType.CLIP_FETCH: {"seq": 1, "file_index": 2, "mime": 3},
    MsgType.CLIP_FETCH_HDR: {"status": 1, "total_size": 2},
    MsgType.PAD_IDENTITY: {"pad": 1, "serial": 2, "replies": 3, "slot": 4},
    MsgType.PAD_FEATURE: {"pad": 1, "data": 2},
}

# Tagged datagram payloads (dgram.rs): feedback, and clock probe (tag 1) / echo (1-3).
DGRAM_FIELD_TAGS: dict[DgramKind, dict[str, int]] = {
    DgramKind.FEEDBACK: {
        "window": 1, "loss_ppm": 2, "packets_received": 3, "ask": 4, "invalidate_first": 5,
        "invalidate_last": 6, "keyframe": 7, "acked_last": 14, "acked_mask": 15,
    },
    DgramKind.CLOCK: {"t1_ns": 1, "t2_ns": 2, "t3_ns": 3},
}
# fmt: on


@unique
class CloseCode(IntEnum):
    """QUIC application close and stream stop codes (registry.rs `CODES`, reject.rs)."""

    REJECT_BUSY = 0x42
    QUIT = 0x51
    APP_EXITED = 0x52
    PAIR_NOT_ARMED = 0x60
    PAIR_BOUND_OTHER = 0x61
    PAIR_RATE_LIMITED = 0x62
    PAIR_NO_IDENTITY = 0x63
    PAIR_DENIED = 0x64
    PAIR_APPROVAL_TIMEOUT = 0x65
    PAIR_SUPERSEDED = 0x66
    WIRE_VERSION = 0x67
    SETUP_FAILED = 0x68
    ACCESS_EXPIRED = 0x69
    LAUNCH_NOT_PERMITTED = 0x6A
    HOST_POWER = 0x6B
    PROFILE_UNKNOWN = 0x6C
    NO_SEAT = 0x6D
    SEAT_OCCUPIED = 0x6E
    SEAT_UNAVAILABLE = 0x6F
    CLIP_CANCELLED = 0x70
    STOP_UNKNOWN_STREAM = 0x71
    ACCESS_GRANTED = 0x72


# client/pairing.rs closes a pairing connection with 0 (done) or 1 (refused/aborted). We use
# the same two for every close that carries no registry code (docs/wire.md, "Choices").
CLOSE_OK = 0x00
CLOSE_ABORT = 0x01


@unique
class Feature(IntEnum):
    """Bit positions in the hello feature sets (`quic/v2/features.rs`)."""

    V1_VIDEO_CAPS = 0
    V1_CLIENT_CAPS = 8
    V1_HOST_CAPS = 16
    V1_HOST_CAPS2 = 24
    STREAM_CONFIG = 32
    PAD_WRITES = 33
    PROFILES = 34


class VideoCap(IntFlag):
    """`video_caps`, feature bits 0-7 (`quic/caps.rs`)."""

    TEN_BIT = 0x01
    HDR = 0x02
    YUV444 = 0x04
    HOST_TIMING = 0x08
    PROBE_SEQ = 0x10
    STREAMED_AU = 0x20
    CHACHA20 = 0x40
    MULTI_SLICE = 0x80


class ClientCap(IntFlag):
    """`client_caps`, feature bits 8-15 (0x02 and 0x80 are unassigned)."""

    CURSOR = 0x01
    AUDIO_RED = 0x04
    PAD_AUDIO = 0x08
    AUDIO_HIRES = 0x10
    KEEP_HOST_AUDIO = 0x20
    EXT = 0x40


class HostCap(IntFlag):
    """`host_caps`, feature bits 16-23."""

    GAMEPAD_STATE = 0x01
    CLIPBOARD = 0x02
    TEXT_INPUT = 0x04
    CURSOR = 0x08
    PEN = 0x10
    AUDIO_RED = 0x20
    PAD_AUDIO = 0x40
    AUDIO_HIRES = 0x80


class HostCap2(IntFlag):
    """`host_caps2`, feature bits 24-31."""

    REPEAT_MARK = 0x01
    TOUCH = 0x02
    EXT = 0x04
    SCROLL = 0x08
    RAMP = 0x10
    DELIVERY = 0x20
    INPUT_EDGES = 0x40


class Codec(IntFlag):
    """`video_codecs` bits; `ServerHello.codec` carries exactly one."""

    H264 = 0x01
    HEVC = 0x02
    AV1 = 0x04
    PYROWAVE = 0x08


CHROMA_IDC_420 = 1
CHROMA_IDC_444 = 3


@unique
class AudioCodec(IntEnum):
    OPUS = 0
    FLAC_RESERVED = 1
    PCM = 2


@unique
class MediaSuite(IntEnum):
    """Media AEAD ids in ClientHello tag 2 / ServerHello tag 3 (`hello.rs` `suite_id`)."""

    AES_128_GCM = 0
    CHACHA20_POLY1305 = 1


@unique
class FecScheme(IntEnum):
    GF8 = 0  # Cauchy Reed-Solomon, nanors parity (fec/gf8.rs); punktfunk.fec implements it
    GF16 = 1


@unique
class AckReason(IntEnum):
    """BitrateChanged tag 2 (`quic/control.rs` `AckReason::to_wire`)."""

    GRANTED = 0
    ENCODER_LIMIT = 1
    CADENCE = 2
    GOVERNOR = 3
    PINNED = 4


@unique
class ClipReason(IntEnum):
    """ClipState `reason` (`quic/control.rs` `CLIP_REASON_*`)."""

    OK = 0
    BACKEND_UNAVAILABLE = 1  # the client shows "not supported in this session type"
    TAKEN_OVER = 2
    POLICY_DISABLED = 3
    NO_FILES = 4


IFACE_KIND_ETHERNET = 1  # LinkFacts.kind; only this value is pinned by hello.rs's golden frame
EXT_ABR_ACK_REASON = 0x01  # ClientHello.abr_features bit 0
GRANT_ALL = 0xFF  # ServerHello.grants when absent (newest `quic` grants table)

# Lengths bounded on the wire (handshake.rs, control.rs, msg.rs).
HELLO_NAME_MAX = 64
HELLO_LAUNCH_MAX = 128
EXT_CLIENT_MAX = 96
PRESET_ID_MAX = 32
PRESET_NAME_MAX = 64
PROFILE_ID_MAX = 64
REFUSED_REASON_MAX = 256
HDR_META_BODY_LEN = 28
SESSION_ID_LEN = 16
FINGERPRINT_LEN = 32

# Media packets (packet/v2.rs, packet/header.rs, config.rs).
V2_HEADER_LEN = 30
V2_CLEAR_LEN = 5
AEAD_TAG_LEN = 16
WIRE_OVERHEAD = V2_HEADER_LEN + AEAD_TAG_LEN
V2_LAST_BLOCK = 0x8000
MAX_DATAGRAM_BYTES = 9216
DEFAULT_SHARD_PAYLOAD = 1408
MIN_SHARD_PAYLOAD = 512
MIN_RECOVERY_SHARDS = 2
RFI_MAX_RANGE = 256


@unique
class MediaStream(IntEnum):
    """The low nibble of a media packet's first byte."""

    VIDEO = 0
    PROBE = 1


class UserFlag(IntFlag):
    """Per-AU `user_flags`; the low 15 bits ride the media header's `flags`."""

    PIC = 0x01
    SOF = 0x04
    PROBE = 0x08
    RECOVERY_POINT = 0x10
    RECOVERY_ANCHOR = 0x20
    CHUNK_ALIGNED = 0x40
    SLICE_STREAM = 0x80
    REPEAT = 0x100
    RECOVERY_CLOSE = 0x200


# Key schedule (registry.rs label, crypto.rs `MediaKeys::derive` / `MediaDir::key`).
MEDIA_EXPORTER_LABEL = b"EXPORTER-punktfunk/2 media"
MEDIA_EXPORTER_LEN = 32
SECRET_INFO_H2C = b"pf2 media h2c"
SECRET_INFO_C2H = b"pf2 media c2h"
KEY_INFO = b"pf2 key"
IV_INFO = b"pf2 iv"
MEDIA_KEY_PACKETS = 1 << 23
REPLAY_WINDOW = 131072  # session/replay.rs

# Pairing confirmation MAC labels (quic/pake.rs).
PAIR_CONFIRM_HOST = b"punktfunk-pair-host"
PAIR_CONFIRM_CLIENT = b"punktfunk-pair-client"

# Timing (quic/endpoint.rs, the host's native.rs, quic/clock.rs).
IDLE_TIMEOUT_S = 8.0
KEEPALIVE_S = 4.0
HANDSHAKE_TIMEOUT_S = 10.0
PAIRING_TIMEOUT_S = 60.0
PAIR_RESULT_LINGER_S = 5.0
CLOCK_ROUNDS = 8
