"""The handshake: ClientHello -> ServerHello -> Ready (`quic/v2/hello.rs`).

Decoding folds what this build cannot honour onto its default (unknown codec to HEVC, an
unsupported rate to 48 kHz, a bad name to none), so callers only see values they can act on;
a second encode/decode round trip changes nothing. The hellos carry no wire version (ALPN
picks the wire), no data port and no key (both ends derive the media keys).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from .features import FeatureSet
from .messages import Message, Mode, truncate_utf8
from .registry import (
    CHROMA_IDC_420,
    CHROMA_IDC_444,
    EXT_CLIENT_MAX,
    FIELD_TAGS,
    GRANT_ALL,
    HDR_META_BODY_LEN,
    HELLO_LAUNCH_MAX,
    HELLO_NAME_MAX,
    PRESET_ID_MAX,
    PRESET_NAME_MAX,
    PROFILE_ID_MAX,
    SESSION_ID_LEN,
    AudioCodec,
    Codec,
    FecScheme,
    MediaSuite,
    MsgType,
)
from .tlv import Fields, WireError, WireErrorCode, uint_of, unique_fields

SAMPLE_RATE_HZ = 48_000
BITS_16, BITS_24 = 16, 24
# audio/layout.rs `normalize_channels` and audio/pcm.rs `rate_is_supported`.
_CHANNELS = frozenset({2, 6, 8})
_RATES = frozenset({44_100, 48_000, 88_200, 96_000, 176_400})
_SDR_BT709 = bytes((1, 1, 1, 0))


def _channels(n: int) -> int:
    return n if n in _CHANNELS else 2


def _label(value: bytes, limit: int) -> str | None:
    """A name never fails the handshake: empty, too long or not UTF-8 reads as none."""
    if not value or len(value) > limit:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def client_label(text: str) -> str:
    """Trimmed, control characters dropped, at most EXT_CLIENT_MAX bytes (handshake.rs)."""
    clean = "".join(c for c in text.strip() if c.isprintable() or c == " ")
    return truncate_utf8(clean, EXT_CLIENT_MAX)


@dataclass(frozen=True)
class HdrMeta:
    """ST.2086 mastering volume: primaries G,B,R and white point in 1/50000, luminance in
    0.0001 cd/m², MaxCLL/MaxFALL in nits (`quic/datagram.rs` `write_hdr_meta_body`)."""

    primaries: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = ((0, 0),) * 3
    white_point: tuple[int, int] = (0, 0)
    max_luminance: int = 0
    min_luminance: int = 0
    max_cll: int = 0
    max_fall: int = 0

    def pack(self) -> bytes:
        flat = [c for p in self.primaries for c in p]
        return struct.pack(
            "<8HIIHH", *flat, *self.white_point, self.max_luminance, self.min_luminance,
            self.max_cll, self.max_fall,
        )  # fmt: skip

    @classmethod
    def unpack(cls, value: bytes) -> HdrMeta:
        v = struct.unpack("<8HIIHH", value)
        return cls(((v[0], v[1]), (v[2], v[3]), (v[4], v[5])), (v[6], v[7]), *v[8:])


@dataclass(frozen=True)
class SessionPreset:
    """`id_len u8 ‖ id ‖ name_len u8 ‖ name`; a malformed one is no preset (handshake.rs)."""

    id: str
    name: str

    @classmethod
    def new(cls, preset_id: str, name: str) -> SessionPreset | None:
        pid = "".join(c for c in preset_id.strip() if c.isascii() and c.isprintable() and c != " ")
        clean = "".join(c for c in name.strip() if c.isprintable() or c == " ")
        pid = pid[:PRESET_ID_MAX]
        return cls(pid, truncate_utf8(clean, PRESET_NAME_MAX)) if pid else None

    def encode(self) -> bytes:
        pid, name = self.id.encode(), self.name.encode()
        return bytes((len(pid),)) + pid + bytes((len(name),)) + name

    @classmethod
    def decode(cls, value: bytes) -> SessionPreset | None:
        if not value or len(value) < 1 + value[0] + 1:
            return None
        id_end = 1 + value[0]
        name_end = id_end + 1 + value[id_end]
        if name_end > len(value):
            return None
        try:
            pid = value[1:id_end].decode()
        except UnicodeDecodeError:
            return None
        return cls.new(pid, value[id_end + 1 : name_end].decode(errors="replace"))


@dataclass(frozen=True)
class LinkFacts:
    """`kind u8 ‖ mbps u32`; a short value reads the missing fields as zero."""

    kind: int = 0
    mbps: int = 0

    def encode(self) -> bytes:
        return struct.pack("<BI", self.kind, self.mbps)

    @classmethod
    def decode(cls, value: bytes) -> LinkFacts:
        padded = value[:5].ljust(5, b"\x00")
        return cls(*struct.unpack("<BI", padded))


def _bad(what: str) -> WireError:
    return WireError(WireErrorCode.BAD_FIELD, what)


def _u8(v: int) -> bytes:
    return struct.pack("<B", v)


def _u16(v: int) -> bytes:
    return struct.pack("<H", v)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _frame_fields(tags: dict[str, int], items: list[tuple[str, bytes]]) -> Fields:
    f = Fields()
    for name, value in items:
        f.raw(tags[name], value)
    return f


_CH = FIELD_TAGS[MsgType.CLIENT_HELLO]
_CH_NAME = {tag: name for name, tag in _CH.items()}
_SH = FIELD_TAGS[MsgType.SERVER_HELLO]
_SH_NAME = {tag: name for name, tag in _SH.items()}
# Fixed-width unsigned fields, by name and width, for the two decoders.
_CH_UINT = {
    "compositor": 1, "gamepad": 1, "bitrate_kbps": 4, "audio_channels": 1, "video_codecs": 1,
    "preferred_codec": 1, "max_shard_payload": 2, "audio_rate_hz": 4, "audio_bits": 1,
    "audio_layout": 1, "video_fit": 1,
}  # fmt: skip
_SH_UINT = {
    "clock_origin_ns": 8, "fec_percent": 1, "max_data_per_block": 2, "shard_payload": 2,
    "frames": 4, "compositor": 1, "gamepad": 1, "bitrate_kbps": 4, "bit_depth": 1,
    "chroma_format": 1, "audio_channels": 1, "codec": 1, "mgmt_port": 2, "grants": 4,
    "expires_in_secs": 4, "audio_codec": 1, "audio_rate_hz": 4, "audio_bits": 1,
    "audio_frame_us": 2, "audio_layout": 1,
}  # fmt: skip


@dataclass(frozen=True)
class ClientHello(Message):
    """`client → host`, first frame of the control stream: the client and its ask."""

    TYPE = MsgType.CLIENT_HELLO
    mode: Mode = field(default_factory=Mode)
    compositor: int = 0
    gamepad: int = 0
    bitrate_kbps: int = 0
    name: str | None = None
    launch: str | None = None
    video_caps: int = 0
    audio_channels: int = 2
    video_codecs: int = 0
    preferred_codec: int = 0
    display_hdr: HdrMeta | None = None
    client_caps: int = 0
    max_shard_payload: int = 0
    audio_rate_hz: int = SAMPLE_RATE_HZ
    audio_bits: int = BITS_16
    audio_layout: int = 0
    video_fit: int = 0
    client_label: str | None = None
    abr_features: int = 0
    preset: SessionPreset | None = None
    link: LinkFacts = LinkFacts()
    probe_only: bool = False
    pyrowave_bpp_x100: int = 0
    resume: bytes | None = None
    suites: tuple[MediaSuite, ...] = ()
    features: FeatureSet = field(default_factory=FeatureSet)
    profile: str | None = None
    access_only: bool = False

    def preferred_suite(self) -> MediaSuite:
        """The media AEAD to grant: the client's first choice, AES-128-GCM when it lists none
        (crypto.rs: "AES-128-GCM by default, ChaCha20-Poly1305 for peers without hardware AES")."""
        return self.suites[0] if self.suites else MediaSuite.AES_128_GCM

    def fields(self) -> Fields:
        out: list[tuple[str, bytes]] = []
        if self.resume is not None:
            out.append(("resume", self.resume))
        if self.suites:
            out.append(("suites", bytes(self.suites)))
        out += [
            ("mode", self.mode.pack()),
            ("compositor", _u8(self.compositor)),
            ("gamepad", _u8(self.gamepad)),
            ("bitrate_kbps", _u32(self.bitrate_kbps)),
        ]
        if self.name is not None:
            out.append(("name", truncate_utf8(self.name, HELLO_NAME_MAX).encode()))
        if self.launch is not None:
            out.append(("launch", truncate_utf8(self.launch, HELLO_LAUNCH_MAX).encode()))
        caps = FeatureSet.client(self.video_caps, self.client_caps)
        out += [
            ("features", caps.union(self.features.native()).encode()),
            ("audio_channels", _u8(self.audio_channels)),
            ("video_codecs", _u8(self.video_codecs)),
            ("preferred_codec", _u8(self.preferred_codec)),
        ]
        if self.display_hdr is not None:
            out.append(("display_hdr", self.display_hdr.pack()))
        out += [
            ("max_shard_payload", _u16(self.max_shard_payload)),
            ("audio_rate_hz", _u32(self.audio_rate_hz)),
            ("audio_bits", _u8(self.audio_bits)),
            ("audio_layout", _u8(self.audio_layout)),
            ("video_fit", _u8(self.video_fit)),
        ]
        # What a client adds is left out at its default; 24 goes before 23 as in hello.rs.
        if self.client_label:
            out.append(("client_label", self.client_label.encode()))
        if self.abr_features:
            out.append(("abr_features", _u8(self.abr_features)))
        if self.preset is not None:
            out.append(("preset", self.preset.encode()))
        if self.link != LinkFacts():
            out.append(("link", self.link.encode()))
        if self.probe_only:
            out.append(("probe_only", b"\x01"))
        if self.pyrowave_bpp_x100:
            out.append(("pyrowave_bpp_x100", _u16(self.pyrowave_bpp_x100)))
        # A profile id is never truncated: a cut one would name another profile.
        if self.profile is not None and len(self.profile.encode()) <= PROFILE_ID_MAX:
            out.append(("profile", self.profile.encode()))
        if self.access_only:
            out.append(("access_only", b"\x01"))
        return _frame_fields(_CH, out)

    @classmethod
    def decode_body(cls, body: bytes) -> ClientHello:
        v: dict[str, object] = {}
        for tag, value in unique_fields(body):
            name = _CH_NAME.get(tag)
            if name in _CH_UINT:
                v[name] = uint_of(value, _CH_UINT[name])
                continue
            match name:
                case "resume":
                    if len(value) != SESSION_ID_LEN:
                        raise _bad("resume id of another length")
                    v[name] = value
                case "suites":
                    known = MediaSuite._value2member_map_
                    v[name] = tuple(MediaSuite(i) for i in value if i in known)
                case "mode":
                    v[name] = Mode.unpack(value)
                case "name":
                    v[name] = _label(value, HELLO_NAME_MAX)
                case "launch":
                    v[name] = _label(value, HELLO_LAUNCH_MAX)
                case "features":
                    fs = FeatureSet.decode(value)
                    v.update(video_caps=fs.video_caps, client_caps=fs.client_caps)
                    v[name] = fs.native()
                case "display_hdr":
                    ok = len(value) == HDR_META_BODY_LEN
                    v[name] = HdrMeta.unpack(value) if ok else None
                # What the client adds informs and never gates: a bad value is its default.
                case "client_label":
                    v[name] = client_label(value.decode(errors="replace")) or None
                case "abr_features":
                    v[name] = value[0] if value else 0
                case "preset":
                    v[name] = SessionPreset.decode(value)
                case "link":
                    v[name] = LinkFacts.decode(value)
                case "profile":
                    v[name] = _label(value, PROFILE_ID_MAX)
                case "probe_only":
                    v[name] = True
                case "pyrowave_bpp_x100":
                    v[name] = uint_of(value[:2], 2) if len(value) >= 2 else 0
                case "access_only":
                    v[name] = value[:1] == b"\x01"
        hello = cls(**v)  # type: ignore[arg-type]
        return replace(
            hello,
            audio_channels=_channels(hello.audio_channels),
            audio_rate_hz=hello.audio_rate_hz or SAMPLE_RATE_HZ,
            audio_bits=hello.audio_bits if hello.audio_bits in (BITS_16, BITS_24) else BITS_16,
        )


@dataclass(frozen=True)
class ServerHello(Message):
    """`host → client`: the session — its id, the features in force, what the host will do."""

    TYPE = MsgType.SERVER_HELLO
    session_id: bytes = bytes(SESSION_ID_LEN)
    clock_origin_ns: int = 0
    suite: MediaSuite | None = None
    host_caps: int = 0
    host_caps2: int = 0
    features: FeatureSet = field(default_factory=FeatureSet)
    mode: Mode = field(default_factory=Mode)
    fec_scheme: FecScheme = FecScheme.GF8
    fec_percent: int = 0
    max_data_per_block: int = 0
    shard_payload: int = 0
    frames: int = 0
    compositor: int = 0
    gamepad: int = 0
    bitrate_kbps: int = 0
    bit_depth: int = 8
    color: bytes = _SDR_BT709
    chroma_format: int = CHROMA_IDC_420
    audio_channels: int = 2
    codec: int = Codec.HEVC
    mgmt_port: int = 0
    grants: int = GRANT_ALL
    expires_in_secs: int = 0
    audio_codec: int = AudioCodec.OPUS
    audio_rate_hz: int = SAMPLE_RATE_HZ
    audio_bits: int = BITS_16
    audio_frame_us: int = 0
    audio_layout: int = 0
    profile: str | None = None

    def fields(self) -> Fields:
        vals = {name: getattr(self, name).to_bytes(w, "little") for name, w in _SH_UINT.items()}
        caps = FeatureSet.host(self.host_caps, self.host_caps2).union(self.features.native())
        vals.update(
            session_id=self.session_id,
            features=caps.encode(),
            mode=self.mode.pack(),
            fec_scheme=_u8(self.fec_scheme),
            color=self.color,
        )
        if self.suite is not None:
            vals["suite"] = _u8(self.suite)
        if self.profile is not None:
            vals["profile"] = self.profile.encode()
        # hello.rs writes every ServerHello field in ascending tag order.
        return _frame_fields(_SH, sorted(vals.items(), key=lambda kv: _SH[kv[0]]))

    @classmethod
    def decode_body(cls, body: bytes) -> ServerHello:
        # An absent scheme reads as GF16 (hello.rs's Welcome default); only 1 is GF16.
        v: dict[str, object] = {"fec_scheme": FecScheme.GF16}
        for tag, value in unique_fields(body):
            name = _SH_NAME.get(tag)
            if name in _SH_UINT:
                v[name] = uint_of(value, _SH_UINT[name])
                continue
            match name:
                case "session_id":
                    if len(value) != SESSION_ID_LEN:
                        raise _bad("session id of another length")
                    v[name] = value
                case "suite":
                    suite = uint_of(value, 1)
                    # A suite this build lacks cannot open the media: refuse the session.
                    if suite not in MediaSuite._value2member_map_:
                        raise _bad(f"unknown media suite {suite}")
                    v[name] = MediaSuite(suite)
                case "features":
                    fs = FeatureSet.decode(value)
                    v.update(host_caps=fs.host_caps, host_caps2=fs.host_caps2)
                    v[name] = fs.native()
                case "mode":
                    v[name] = Mode.unpack(value)
                case "fec_scheme":
                    v[name] = FecScheme.GF16 if uint_of(value, 1) == 1 else FecScheme.GF8
                case "color":
                    if len(value) != 4:
                        raise _bad("colour field of another length")
                    v[name] = value
                case "profile":
                    v[name] = _label(value, PROFILE_ID_MAX)
        if "session_id" not in v:
            raise _bad("ServerHello without a session id")
        sh = cls(**v)  # type: ignore[arg-type]
        codecs = (Codec.H264, Codec.AV1, Codec.PYROWAVE)
        return replace(
            sh,
            chroma_format=CHROMA_IDC_444 if sh.chroma_format == CHROMA_IDC_444 else CHROMA_IDC_420,
            audio_channels=_channels(sh.audio_channels),
            codec=sh.codec if sh.codec in codecs else Codec.HEVC,
            audio_rate_hz=sh.audio_rate_hz if sh.audio_rate_hz in _RATES else SAMPLE_RATE_HZ,
            audio_bits=sh.audio_bits if sh.audio_bits in (BITS_16, BITS_24) else BITS_16,
            audio_frame_us=max(sh.audio_frame_us, 1000) if sh.audio_frame_us else 0,
        )


@dataclass(frozen=True)
class Ready(Message):
    """`client → host`: decoder and reassembler exist; send the first frame."""

    TYPE = MsgType.READY
