"""RTSP, sans-I/O: message parsing, the encrypted `rtspenc` framing, DESCRIBE/SETUP/ANNOUNCE.

Moonlight opens one TCP connection per request and reads until the host closes it. After
/launch it sends OPTIONS, DESCRIBE, SETUP audio/video/control, ANNOUNCE (the stream settings
as SDP `a=name:value` lines) and PLAY. The session starts at ANNOUNCE; PLAY is a formality.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_REQUEST = 16 * 1024
ENCRYPTED_BIT = 0x80000000
SESSION_ID = "DEADBEEFCAFE"

# x-ss-general.encryption* bits
ENC_CONTROL_V2 = 0x01
ENC_VIDEO = 0x02
ENC_AUDIO = 0x04


class RtspError(Exception):
    """A request that cannot be served; `status` is the RTSP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class RtspRequest:
    method: str
    target: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @property
    def cseq(self) -> str:
        return self.headers.get("cseq", "0")


def request_length(data: bytes) -> int | None:
    """Total length of the first request in `data` (headers + Content-length body), or None if
    the headers are not complete yet."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_REQUEST:
            raise RtspError(400, "request headers too long")
        return None
    length = 0
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise RtspError(400, "bad Content-length") from None
    if length < 0 or end + 4 + length > MAX_REQUEST:
        raise RtspError(400, "request too long")
    return end + 4 + length


def parse_request(data: bytes) -> RtspRequest:
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[:end], data[end + 4 :])
    try:
        lines = head.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        raise RtspError(400, "request is not UTF-8") from None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("RTSP/"):
        raise RtspError(400, f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return RtspRequest(parts[0].upper(), parts[1], headers, body)


def build_response(
    cseq: str,
    status: int = 200,
    reason: str = "OK",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}"]
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RtspCipher:
    """`rtspenc` framing: BE32(0x80000000|len) BE32 seq, 16-byte tag, AES-128-GCM ciphertext.

    IV = LE32 seq, 6 zero bytes, direction ('C' client, 'H' host), 'R'. Each direction counts
    from 1.
    """

    HEADER = 24

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._send_seq = 0

    @staticmethod
    def is_encrypted(data: bytes) -> bool:
        return len(data) >= 4 and bool(data[0] & 0x80)

    @staticmethod
    def message_length(data: bytes) -> int | None:
        if len(data) < 4:
            return None
        (word,) = struct.unpack_from(">I", data)
        length = RtspCipher.HEADER + (word & ~ENCRYPTED_BIT)
        if length > MAX_REQUEST:
            raise RtspError(400, "encrypted request too long")
        return length

    @staticmethod
    def _iv(seq: int, direction: bytes) -> bytes:
        return struct.pack("<I", seq) + bytes(6) + direction + b"R"

    def decrypt(self, data: bytes) -> bytes:
        if len(data) < self.HEADER:
            raise RtspError(400, "truncated encrypted request")
        word, seq = struct.unpack_from(">II", data)
        length = word & ~ENCRYPTED_BIT
        if not word & ENCRYPTED_BIT or len(data) != self.HEADER + length:
            raise RtspError(400, "malformed encrypted request")
        tag, ciphertext = data[8:24], data[24:]
        try:
            return self._aead.decrypt(self._iv(seq, b"C"), ciphertext + tag, None)
        except InvalidTag:
            raise RtspError(400, "encrypted request failed authentication") from None

    def encrypt(self, plaintext: bytes) -> bytes:
        self._send_seq += 1
        sealed = self._aead.encrypt(self._iv(self._send_seq, b"H"), plaintext, None)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        header = struct.pack(">II", ENCRYPTED_BIT | len(ciphertext), self._send_seq)
        return header + tag + ciphertext


@dataclass(frozen=True)
class Negotiation:
    """The stream as the client's ANNOUNCE asks for it."""

    width: int
    height: int
    fps: int
    packet_size: int
    bitrate_kbps: int
    codec: int  # bitStreamFormat: 0 H.264, 1 HEVC, 2 AV1
    hdr: bool
    csc_mode: int  # (colorspace << 1) | full_range
    min_fec_packets: int
    encryption: int  # ENC_* bits the client enabled
    ml_feature_flags: int
    audio_channels: int
    audio_mask: int
    audio_high_quality: bool
    audio_packet_ms: int
    max_ref_frames: int
    control_protocol: int
    extra: Mapping[str, str] = field(default_factory=dict)


AUDIO_CHANNELS = (2, 6, 8)  # stereo, 5.1, 7.1: what DESCRIBE offers Opus layouts for
AUDIO_PACKET_MS = (5, 10, 20)  # Opus frame durations a client may ask for
_REQUIRED = (
    "x-nv-video[0].clientViewportWd",
    "x-nv-video[0].clientViewportHt",
    "x-nv-video[0].maxFPS",
    "x-nv-video[0].packetSize",
    "x-nv-vqos[0].bw.maximumBitrateKbps",
    "x-nv-audio.surround.numChannels",
    "x-nv-audio.surround.channelMask",
)


def parse_sdp_attributes(sdp: str) -> dict[str, str]:
    """`a=name:value` lines; one trailing space on the value is Moonlight's and is dropped."""
    attrs: dict[str, str] = {}
    for raw in sdp.replace("\r", "\n").split("\n"):
        if not raw.startswith("a="):
            continue
        name, sep, value = raw[2:].partition(":")
        if sep:
            attrs[name] = value[:-1] if value.endswith(" ") else value
    return attrs


def parse_announce(body: bytes, host_header: str = "") -> Negotiation:
    """`host_header` is the request's Host: for stereo, clients ask for high quality audio by
    sending the real address there (and 0.0.0.0 otherwise)."""
    attrs = parse_sdp_attributes(body.decode("utf-8", errors="replace"))
    missing = [name for name in _REQUIRED if name not in attrs]
    if missing:
        raise RtspError(400, f"ANNOUNCE lacks {', '.join(missing)}")

    def num(name: str, default: int | None = None) -> int:
        text = attrs.get(name)
        if text is None:
            assert default is not None
            return default
        try:
            return int(text, 0)
        except ValueError:
            raise RtspError(400, f"ANNOUNCE {name}={text!r} is not a number") from None

    configured = num("x-ml-video.configuredBitrateKbps", 0)
    packet_size = num("x-nv-video[0].packetSize")
    if packet_size < 64 or packet_size % 16 or packet_size > 8192:
        raise RtspError(400, f"packetSize {packet_size} must be a multiple of 16 in 64..8192")
    width, height = num("x-nv-video[0].clientViewportWd"), num("x-nv-video[0].clientViewportHt")
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise RtspError(400, f"viewport {width}x{height} is not a sane size")
    if not 0 < num("x-nv-video[0].maxFPS") <= 1000:
        raise RtspError(400, f"maxFPS {num('x-nv-video[0].maxFPS')} is not a frame rate")
    # The audio thread sizes its Opus frames from these: a zero or negative size never fills.
    if num("x-nv-audio.surround.numChannels") not in AUDIO_CHANNELS:
        raise RtspError(400, f"numChannels {num('x-nv-audio.surround.numChannels')} is not 2/6/8")
    if num("x-nv-aqos.packetDuration", 5) not in AUDIO_PACKET_MS:
        raise RtspError(400, f"packetDuration {num('x-nv-aqos.packetDuration', 5)} is not 5/10/20")
    return Negotiation(
        width=width,
        height=height,
        fps=num("x-nv-video[0].maxFPS"),
        packet_size=packet_size,
        bitrate_kbps=configured or num("x-nv-vqos[0].bw.maximumBitrateKbps"),
        codec=num("x-nv-vqos[0].bitStreamFormat", 0),
        hdr=num("x-nv-video[0].dynamicRangeMode", 0) == 1,
        csc_mode=num("x-nv-video[0].encoderCscMode", 0),
        min_fec_packets=num("x-nv-vqos[0].fec.minRequiredFecPackets", 0),
        # nv featureFlags 0x20 is the legacy audio-encryption opt-in (Sunshine ORs it in too)
        encryption=num("x-ss-general.encryptionEnabled", 0)
        | (ENC_AUDIO if num("x-nv-general.featureFlags", 0x87) & 0x20 else 0),
        ml_feature_flags=num("x-ml-general.featureFlags", 0),
        audio_channels=num("x-nv-audio.surround.numChannels"),
        audio_mask=num("x-nv-audio.surround.channelMask"),
        audio_high_quality=(
            num("x-nv-audio.surround.AudioQuality", 0) == 1
            if num("x-nv-audio.surround.numChannels") > 2
            else bool(host_header) and "0.0.0.0" not in host_header
        ),
        audio_packet_ms=num("x-nv-aqos.packetDuration", 5),
        max_ref_frames=num("x-nv-video[0].maxNumReferenceFrames", 1),
        control_protocol=num("x-nv-general.useReliableUdp", 1),
        extra=attrs,
    )


@dataclass(frozen=True)
class DescribeCaps:
    """What DESCRIBE advertises, from the encoder probe and the host's policy."""

    hevc: bool
    av1: bool
    rfi: bool
    encryption_supported: int = ENC_CONTROL_V2 | ENC_VIDEO | ENC_AUDIO
    encryption_requested: int = ENC_CONTROL_V2
    feature_flags: int = 0


# Opus multistream layouts (channels, streams, coupled streams, mapping digits), each channel
# count normal quality first, then high quality: clients take the first match as normal and a
# second as high quality. Normal-quality surround mappings are rotated left from index 3
# because clients rotate them right (a GameStream legacy); high quality is sent as is.
SURROUND_PARAMS = (
    "21101",
    "21101",
    "642012453",
    "660012345",
    "85301245673",
    "88001234567",
)


def describe_body(caps: DescribeCaps) -> bytes:
    lines = [
        f"a=x-ss-general.featureFlags:{caps.feature_flags}",
        f"a=x-ss-general.encryptionSupported:{caps.encryption_supported}",
        f"a=x-ss-general.encryptionRequested:{caps.encryption_requested}",
    ]
    if caps.rfi:
        lines.append("a=x-nv-video[0].refPicInvalidation:1")
    if caps.hevc:
        lines.append("sprop-parameter-sets=AAAAAU")
    if caps.av1:
        lines.append("a=rtpmap:98 AV1/90000")
    lines.extend(f"a=fmtp:97 surround-params={p}" for p in SURROUND_PARAMS)
    return ("\n".join(lines) + "\n").encode()


def stream_type(target: str) -> str:
    """`streamid=video/0/0` -> `video` (what SETUP is for)."""
    _, _, rest = target.partition("streamid=")
    return rest.split("/", 1)[0]
