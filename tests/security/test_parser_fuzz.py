"""Every protocol parser, fed malformed input for >= 30 s, raises nothing but its own error.

Pure (no sockets): a seeded random loop mutates valid golden messages - bit flips, interesting
integers over length fields, truncation, extension, splicing, QUIC varint corruption and, for
the text protocols, token edits - and feeds them to each parser the way its caller does.
"A parser's own error" is what that caller catches; anything else would escape into a socket
thread or a session and is a bug:

- GameStream control (`ControlCipher.open`, `parse_rfi`): ControlError (session.py);
- GameStream input (`parse_input`): InputError (the session's input loop);
- RTSP framing, requests and ANNOUNCE SDP: RtspError (rtsp_server.py answers with its status);
- nvhttp (`NvHttpCore.handle`, the query parsed as httpd.py does): nothing, every request gets
  an XML (or PNG) reply;
- native control stream (`FrameDecoder`, `decode_message`, hellos): WireError (core.py);
- native datagrams, media header, media opener, frame reassembly: nothing, bad input is
  dropped (None or a counter).

PF_FUZZ_SECONDS sets the total time (default 32 s, split evenly), PF_FUZZ_SEED the seed. A
failure names the seed, target and input, so it can become a regression case below.
"""

from __future__ import annotations

import contextlib
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from gs_client import (
    RtspClientCrypto,
    SdpConfig,
    arrival_packet,
    client_seal,
    controller_packet,
    haptics_packet,
    hscroll_packet,
    input_packet,
    key_packet,
    moonlight_sdp,
    mouse_abs_packet,
    mouse_button_packet,
    mouse_rel_packet,
    parse_xml,
    rtsp_request,
    scroll_packet,
    text_packet,
)
from punktfunk.gamestream.control import ControlCipher, ControlError, MsgType, parse_rfi
from punktfunk.gamestream.input import InputError, parse_input
from punktfunk.gamestream.nvhttp import HttpRequest
from punktfunk.gamestream.rtsp import (
    RtspCipher,
    RtspError,
    parse_announce,
    parse_request,
    request_length,
    stream_type,
)
from punktfunk.identity import load_or_create
from punktfunk.native.client.reassembly import FrameAssembler
from punktfunk.native.wire import dgram
from punktfunk.native.wire.codec import decode_message
from punktfunk.native.wire.dgram import Datagram, Feedback, HostTiming, InputEvent, InputKind
from punktfunk.native.wire.features import Feature, FeatureSet
from punktfunk.native.wire.hello import ClientHello, ServerHello
from punktfunk.native.wire.messages import ClockEcho, ClockProbe, Mode
from punktfunk.native.wire.packet import MediaHeader, is_media
from punktfunk.native.wire.registry import (
    V2_LAST_BLOCK,
    DgramKind,
    MediaStream,
    MediaSuite,
    StreamType,
)
from punktfunk.native.wire.seal import MediaKeys, MediaOpener, MediaSealer, Role
from punktfunk.native.wire.tlv import FrameDecoder, WireError, decode_varint, encode_varint
from test_gs_nvhttp import launch_params, make_host, pair
from test_native_wire import GOLDEN as NATIVE_GOLDEN

TOTAL_SECONDS = float(os.environ.get("PF_FUZZ_SECONDS", "32"))
SEED = int(os.environ.get("PF_FUZZ_SEED", "11"))
KEY = bytes(range(16))

INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF)
INTERESTING += (0x80000000, 0xFFFFFFFF, 1 << 62, (1 << 64) - 1)
NUMBERISH = ("-1", "0", "1", "65536", "9" * 30, "0x7fffffff", "1e9", "", " ", "1_0", "٣", "-0")
NUMBERISH += ("nan", "4294967296", "08", "0b1", "-99999999999")
TEXTISH = ("\r\n", "\n", ":", "=", "&", "?", "%", "%ZZ", "\x00", "/", " ", "\t", "x" * 300)


# --- the mutator ------------------------------------------------------------------------------


class Mutator:
    """Structure-aware-enough mutations of golden inputs (binary and text alike)."""

    def __init__(self, rng: random.Random, seeds: list[bytes], text: bool = False) -> None:
        self.rng, self.seeds, self.text = rng, seeds, text
        ops = [self._flip, self._byte, self._int, self._varint, self._cut, self._extend]
        ops += [self._delete, self._insert, self._dup, self._splice]
        if text:
            ops += [self._number, self._token, self._line_dup, self._line_drop] * 2
        self.ops = ops

    def __call__(self) -> bytes:
        data = bytearray(self.rng.choice(self.seeds))
        for _ in range(self.rng.choice((1, 1, 2, 3, 5))):
            data = self.rng.choice(self.ops)(data)
        return bytes(data)

    def _pos(self, data: bytearray) -> int:
        return self.rng.randrange(len(data) + 1)

    def _flip(self, d: bytearray) -> bytearray:
        if d:
            d[self.rng.randrange(len(d))] ^= 1 << self.rng.randrange(8)
        return d

    def _byte(self, d: bytearray) -> bytearray:
        if d:
            d[self.rng.randrange(len(d))] = self.rng.choice((0, 0xFF, 0x7F, 0x80, 0x40, 0xC0))
        return d

    def _int(self, d: bytearray) -> bytearray:
        """An interesting integer over whatever sits there: length and count fields."""
        size = self.rng.choice((1, 2, 4, 8))
        order = self.rng.choice("<>")
        value = self.rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
        packed = value.to_bytes(size, "little" if order == "<" else "big")
        at = self._pos(d)
        d[at : at + size] = packed
        return d

    def _varint(self, d: bytearray) -> bytearray:
        value = self.rng.choice(INTERESTING) & ((1 << 62) - 1)
        at = self._pos(d)
        raw = encode_varint(value)
        if self.rng.random() < 0.3:  # a varint cut short or a long form for a short value
            raw = raw[:1] if self.rng.random() < 0.5 else b"\xc0" + bytes(6) + raw[-1:]
        d[at : at + self.rng.choice((0, 1, len(raw)))] = raw
        return d

    def _cut(self, d: bytearray) -> bytearray:
        return d[: self._pos(d)]

    def _extend(self, d: bytearray) -> bytearray:
        tail = self.rng.randbytes(self.rng.randrange(1, 64))
        if d and self.rng.random() < 0.5:
            tail = bytes(d[-self.rng.randrange(1, len(d) + 1) :]) * self.rng.randrange(1, 4)
        return d + tail

    def _delete(self, d: bytearray) -> bytearray:
        at = self._pos(d)
        del d[at : at + self.rng.randrange(1, 16)]
        return d

    def _insert(self, d: bytearray) -> bytearray:
        at = self._pos(d)
        d[at:at] = self.rng.randbytes(self.rng.randrange(1, 8))
        return d

    def _dup(self, d: bytearray) -> bytearray:
        if not d:
            return d
        a = self.rng.randrange(len(d))
        chunk = d[a : a + self.rng.randrange(1, 32)]
        at = self._pos(d)
        d[at:at] = chunk
        return d

    def _splice(self, d: bytearray) -> bytearray:
        other = self.rng.choice(self.seeds)
        return d[: self._pos(d)] + other[self.rng.randrange(len(other) + 1) :]

    # text: numbers, separators and whole lines are where parsers of text break
    def _number(self, d: bytearray) -> bytearray:
        spans = [i for i in range(len(d)) if 0x30 <= d[i] <= 0x39]
        if not spans:
            return d
        start = end = self.rng.choice(spans)
        while end < len(d) and 0x30 <= d[end] <= 0x39:
            end += 1
        d[start:end] = self.rng.choice(NUMBERISH).encode()
        return d

    def _token(self, d: bytearray) -> bytearray:
        at = self._pos(d)
        token = self.rng.choice(TEXTISH).encode()
        if self.rng.random() < 0.2:
            token = self.rng.choice((b"\xff\xfe", b"\xc3", "\u2028".encode(), b"\xed\xa0\x80"))
        d[at : at + self.rng.choice((0, 1))] = token
        return d

    def _lines(self, d: bytearray) -> list[bytes]:
        return bytes(d).split(b"\n")

    def _line_dup(self, d: bytearray) -> bytearray:
        lines = self._lines(d)
        i = self.rng.randrange(len(lines))
        lines.insert(self.rng.randrange(len(lines) + 1), lines[i])
        return bytearray(b"\n".join(lines))

    def _line_drop(self, d: bytearray) -> bytearray:
        lines = self._lines(d)
        del lines[self.rng.randrange(len(lines))]
        return bytearray(b"\n".join(lines))


# --- targets: golden seeds, and a feed that calls the parser as its caller does ---------------


@dataclass
class Target:
    seeds: list[bytes]
    feed: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    text: bool = False


def _gs_control() -> Target:
    """Half the inputs are sealed with the session key, so the payload parsers are reached."""
    cipher = ControlCipher(KEY)
    plains = [
        struct.pack("<H", MsgType.RFI) + struct.pack("<qq", 10, 12),
        struct.pack("<H", MsgType.IDR_REQUEST),
        struct.pack("<H", MsgType.LOSS_STATS) + struct.pack("<I", 3) + bytes(28),
        struct.pack("<H", MsgType.INPUT) + key_packet(True, 0x41),
        struct.pack("<H", MsgType.PING),
    ]
    sealed = [
        client_seal(KEY, i, int.from_bytes(p[:2], "little"), p[2:]) for i, p in enumerate(plains)
    ]

    def feed(data: bytes) -> None:
        if data[:1] == b"S":  # 'S' + type + payload: seal it (a paired client's own bytes)
            kind = int.from_bytes(data[1:3].ljust(2, b"\0"), "little")
            data = client_seal(KEY, 7, kind, data[3:])
        msg = cipher.open(data)
        if msg.type == MsgType.RFI:
            parse_rfi(msg.payload)
        elif msg.type == MsgType.LOSS_STATS and len(msg.payload) >= 4:
            struct.unpack_from("<I", msg.payload)
        elif msg.type == MsgType.INPUT:
            with contextlib.suppress(InputError):
                parse_input(msg.payload)

    return Target(sealed + [b"S" + p for p in plains], feed, (ControlError,))


def _gs_input() -> Target:
    seeds = [
        key_packet(True, 0x8041, 2),
        key_packet(False, 0x8041),
        mouse_rel_packet(-5, 7),
        mouse_abs_packet(100, 200, 1920, 1080),
        mouse_button_packet(True, 1),
        scroll_packet(120),
        hscroll_packet(-120),
        text_packet("héllo"),
        controller_packet(1, 0x3, 0x1000F, 255, 0, -32768, 32767, 5, -5),
        arrival_packet(0, 2, 0x30, 0xFFFF),
        haptics_packet(True),
        *(input_packet(m, bytes(40)) for m in range(0x55000001, 0x55000008)),
    ]
    return Target(seeds, parse_input, (InputError,))


def _gs_rtsp() -> Target:
    target = "rtsp://192.168.1.50:48010"
    plain = [
        rtsp_request("OPTIONS", target, 1),
        rtsp_request("DESCRIBE", target, 2, {"Accept": "application/sdp"}),
        rtsp_request("SETUP", "streamid=video/0/0", 4, {"Transport": "unicast;X-GS-ClientPort=1"}),
        rtsp_request("ANNOUNCE", "streamid=control/13/0", 6, {"Content-length": "5"}, b"v=0\r\n"),
        rtsp_request("PLAY", "/", 7, {"Session": "DEADBEEFCAFE"}),
    ]
    crypto = RtspClientCrypto(KEY)
    sealed = [crypto.seal(p) for p in plain[:2]]
    cipher = RtspCipher(KEY)

    def feed(data: bytes) -> None:
        if RtspCipher.is_encrypted(data):  # rtsp_server.py's order: frame, decrypt, parse
            need = RtspCipher.message_length(data)
            if need is None or len(data) < need:
                return
            data = cipher.decrypt(data[:need])
        else:
            need = request_length(data)
            if need is None:
                return
            data = data[:need]
        stream_type(parse_request(data).target)

    return Target(plain + sealed, feed, (RtspError,), text=True)


def _gs_announce() -> Target:
    seeds = [
        moonlight_sdp(SdpConfig()),
        moonlight_sdp(SdpConfig(codec=0, channels=6, channel_mask=0x3F, high_quality=True)),
        moonlight_sdp(SdpConfig(width=640, height=360, fps=30, hdr=True, packet_duration=10)),
    ]
    return Target(seeds, lambda d: _announce(d), (RtspError,), text=True)


def _announce(body: bytes) -> None:
    n = parse_announce(body, "192.168.1.50")
    # What the session derives from it must be usable: an audio frame of a positive size.
    assert 48 * n.audio_packet_ms * n.audio_channels * 2 > 0, n


def _gs_nvhttp(tmp: Path) -> Target:
    host = make_host(load_or_create(tmp / "identity"), tmp)
    fp = pair(host)
    queries = [
        "/launch?" + urlencode(launch_params()),
        "/resume?" + urlencode(launch_params(appid="0")),
        "/serverinfo?uniqueid=0123456789ABCDEF&uuid=1",
        "/applist?uniqueid=1",
        "/appasset?appid=1234&AssetType=2&AssetIdx=0",
        "/cancel?uniqueid=1",
        "/pair?uniqueid=c9&devicename=x&updateState=1&phrase=getservercert&salt="
        + "00" * 16
        + "&clientcert="
        + b"-----BEGIN CERTIFICATE-----".hex(),
        "/pair?uniqueid=c9&clientchallenge=" + "11" * 16,
        "/pair?uniqueid=c9&serverchallengeresp=" + "22" * 32,
        "/pair?uniqueid=c9&clientpairingsecret=" + "33" * 272,
        "/pair?uniqueid=c9&phrase=pairchallenge",
        "/unpair?uniqueid=c9",
    ]

    def feed(data: bytes) -> None:
        # httpd.py: the request target as latin-1 text, split and parsed by urllib.
        url = urlsplit(data.decode("latin-1"))
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        https = bool(data) and data[-1] & 1 == 1
        req = HttpRequest(url.path, params, https, fp if https else None, "10.0.0.1", "10.0.0.2")
        response = host.core.handle(req)
        if response.content_type == "image/png":
            assert response.body.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            parse_xml(response.body)

    return Target([q.encode() for q in queries], feed, (), text=True)


_HELLOS = [
    ClientHello(mode=Mode(1920, 1080, 60), name="Deck", max_shard_payload=1408),
    ClientHello(
        mode=Mode(640, 360, 30),
        suites=(MediaSuite.CHACHA20_POLY1305, MediaSuite.AES_128_GCM),
        features=FeatureSet().with_bit(Feature.STREAM_CONFIG),
        resume=bytes(16),
    ),
    ServerHello(session_id=bytes(range(16)), clock_origin_ns=1, suite=MediaSuite.AES_128_GCM),
]


def _native_control() -> Target:
    """A whole control stream (type prologue, then frames) fed in random pieces; a seed led by
    'B' is one frame whose body is mutated and then framed with its true length."""
    frames = [m.encode() for m in _HELLOS] + [bytes.fromhex(w) for _, w in NATIVE_GOLDEN]
    stream = encode_varint(StreamType.CONTROL) + b"".join(frames)
    bodies = []
    for f in frames:
        decoder = FrameDecoder(prologue=False)
        ((kind, body),) = decoder.feed(f)
        bodies.append(b"B" + encode_varint(kind) + body)

    def feed(data: bytes) -> None:
        if data[:1] == b"B":
            got = decode_varint(data, 1)
            if got is None:
                return
            kind, at = got
            decode_message(kind, data[at:])
            return
        decoder = FrameDecoder()
        rng = random.Random(len(data))
        at = 0
        while at < len(data):
            step = rng.randrange(1, 64)
            for kind, body in decoder.feed(data[at : at + step]):
                decode_message(kind, body)
            at += step

    prologue = encode_varint(StreamType.CONTROL)
    return Target([stream, *(prologue + f for f in frames), *bodies], feed, (WireError,))


def _native_dgram() -> Target:
    seeds = [
        Feedback(window=4, loss_ppm=1200, packets_received=1 << 40).encode(),
        Feedback(ask=9, invalidate=(100, 103), keyframe=True).encode(),
        dgram.encode_clock_probe(ClockProbe(5)),
        dgram.encode_clock_echo(ClockEcho(5, 6, 7)),
        dgram.encode_audio(7, 1_000, b"\x01\x02\x03"),
        HostTiming(1_751_500_000_123_456_789, 4_321, (900, 3_100, 2_500)).encode(),
        dgram.encode(DgramKind.INPUT_STATE, InputEvent(InputKind.MOUSE_MOVE, 0, -5, 7, 0).encode()),
        b"\x05" + bytes([0xCA, 1, 0, 2, 0, 3, 0]),
    ]

    def feed(data: bytes) -> None:
        got = dgram.decode(data)
        if isinstance(got, Datagram):  # every payload decoder either end applies
            InputEvent.decode(got.payload)
            HostTiming.decode(got.payload)
            dgram.decode_audio(got.payload)
        FeatureSet.decode(data)

    return Target(seeds, feed, ())


_MEDIA_KEYS = MediaKeys.derive(bytes(32), MediaSuite.AES_128_GCM)


def _media_packets() -> list[bytes]:
    """One frame of two blocks (3+1 and 2+1 shards) as the host sends it, headers in clear."""
    out = []
    for block, (k, m, base) in enumerate(((3, 1, 0), (2, 1, 3))):
        for shard in range(k + m):
            last = V2_LAST_BLOCK if block == 1 else 0
            flags = last | (0x20 if block == 0 and shard == 0 else 0)
            header = MediaHeader(
                MediaStream.VIDEO, 0, 0, flags, 5, 1000, block, base, shard, k, m, 3
            )
            out.append(header.pack() + bytes([shard]) * 100)
    return out


def _native_media() -> Target:
    """Clear header + shard into MediaHeader and a long-lived FrameAssembler (state carries
    over, as on a client); sealed packets into a MediaOpener."""
    assembler = FrameAssembler()
    opener = MediaOpener(_MEDIA_KEYS, Role.CLIENT)
    sealer = MediaSealer(_MEDIA_KEYS, Role.HOST)
    plain = _media_packets()
    sealed = [b"E" + sealer.seal(MediaHeader.unpack(p), p[30:]) for p in plain[:3]]

    def feed(data: bytes) -> None:
        if data[:1] == b"E":
            opener.open(data[1:])
            return
        is_media(data)
        header = MediaHeader.unpack(data)
        if header is not None:
            assembler.add(header, data[30:])

    return Target(plain + sealed, feed, ())


TARGETS: dict[str, Callable[[Path], Target]] = {
    "gs_control": lambda _: _gs_control(),
    "gs_input": lambda _: _gs_input(),
    "gs_rtsp": lambda _: _gs_rtsp(),
    "gs_announce": lambda _: _gs_announce(),
    "gs_nvhttp": _gs_nvhttp,
    "native_control": lambda _: _native_control(),
    "native_dgram": lambda _: _native_dgram(),
    "native_media": lambda _: _native_media(),
}


@pytest.mark.parametrize("name", list(TARGETS))
def test_malformed_input_raises_only_the_parsers_own_error(name: str, tmp_path: Path) -> None:
    target = TARGETS[name](tmp_path)
    rng = random.Random(f"{SEED}:{name}")
    mutate = Mutator(rng, target.seeds, target.text)
    for seed in target.seeds:  # the goldens themselves parse
        target.feed(seed)
    runs = 0
    deadline = time.monotonic() + TOTAL_SECONDS / len(TARGETS)
    while time.monotonic() < deadline:
        for _ in range(50):
            data = mutate()
            try:
                target.feed(data)
            except target.allowed:
                pass
            except Exception as exc:
                pytest.fail(
                    f"{name} (PF_FUZZ_SEED={SEED}, run {runs}): {exc!r} escaped for input {data!r}"
                )
            runs += 1
    assert runs > 200, runs


# --- regression cases: what this fuzzer found, fixed in the parser ----------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-nv-audio.surround.numChannels", "-1"),  # a negative Opus frame size: a hung thread
        ("x-nv-audio.surround.numChannels", "3"),
        ("x-nv-aqos.packetDuration", "0"),  # a zero-byte frame never fills
        ("x-nv-aqos.packetDuration", "7"),  # not an Opus frame duration
    ],
)
def test_announce_refuses_audio_it_cannot_frame(name: str, value: str) -> None:
    attrs = parse_announce(moonlight_sdp(SdpConfig())).extra
    sdp = "".join(f"a={k}:{value if k == name else v} \r\n" for k, v in attrs.items())
    with pytest.raises(RtspError) as err:
        parse_announce(sdp.encode())
    assert err.value.status == 400


def test_nvhttp_reply_stays_xml_when_the_request_carries_control_characters(
    tmp_path: Path,
) -> None:
    host = make_host(load_or_create(tmp_path / "identity"), tmp_path)
    # The 404 reason echoes the path: a raw \x12 in it made the reply unparseable XML.
    reply = parse_xml(host.core.handle(HttpRequest("/a\x12b\x00", {}, False, None, "h")).body)
    assert reply.status_code == 404 and "\ufffd" in reply.status_message


def test_reassembly_drops_a_shard_of_another_length_in_a_block() -> None:
    """Unequal shards reached FEC recovery, whose ValueError escaped the client's receiver."""
    assembler = FrameAssembler()
    packets = [MediaHeader.unpack(p) for p in _media_packets()]
    assert all(h is not None for h in packets)
    # Block 0 (3 data + 1 parity): shard 0, a shorter shard 2, then the parity shard.
    assert assembler.add(packets[0], bytes(100)) == ([], None)
    assert assembler.add(packets[2], bytes(60)) == ([], None)
    assert assembler.add(packets[3], bytes(100)) == ([], None)
    assert assembler.stats.malformed == 1
