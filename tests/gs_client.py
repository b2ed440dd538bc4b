"""An independent client side of the GameStream wire protocol, for the gs tests.

Written from the public protocol record (moonlight-common-c / Sunshine behaviour), not from
punktfunk's host code: pairing as Moonlight runs it, XML reply parsing, RTSP requests and the
`rtspenc` framing, the ANNOUNCE SDP as SdpGenerator.c builds it, the video receive path
(RtpVideoQueue + depacketizer essentials), audio/control/input packet layouts. Only the
Reed-Solomon arithmetic is borrowed (`punktfunk.fec`, itself pinned to nanors by golden tests),
because that is what the client links too.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from punktfunk.fec import video_recover

# --------------------------------------------------------------------------------------------
# DER: the X.509 signatureValue, extracted by hand (what X509_get0_signature hands Moonlight)
# --------------------------------------------------------------------------------------------


def _der_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content offset, content length) of the TLV at `offset`."""
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, first
    count = first & 0x7F
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    return tag, offset + 2 + count, length


def der_signature_value(der: bytes) -> bytes:
    """The raw signature bytes of a DER certificate: the BIT STRING contents after the
    unused-bits octet, third element of the outer SEQUENCE."""
    tag, pos, _ = _der_tlv(der, 0)
    assert tag == 0x30
    for _ in range(2):  # tbsCertificate, signatureAlgorithm
        _, start, length = _der_tlv(der, pos)
        pos = start + length
    tag, start, length = _der_tlv(der, pos)
    assert tag == 0x03 and der[start] == 0, "signatureValue must be a BIT STRING, 0 unused bits"
    return der[start + 1 : start + length]


def pem_signature_value(pem: bytes) -> bytes:
    cert = x509.load_pem_x509_certificate(pem)
    return der_signature_value(cert.public_bytes(serialization.Encoding.DER))


# --------------------------------------------------------------------------------------------
# Client identity and pairing (nvpairingmanager.cpp order)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientIdentity:
    key: rsa.RSAPrivateKey
    cert_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def make_client_identity(common_name: str = "NVIDIA GameStream Client") -> ClientIdentity:
    """RSA-2048, self-signed, SHA-256, 20 years: Moonlight's client certificate shape."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365 * 20))
        .sign(key, hashes.SHA256())
    )
    return ClientIdentity(key, cert.public_bytes(serialization.Encoding.PEM))


@functools.cache
def shared_client_identity(index: int = 0) -> ClientIdentity:
    """Key generation is slow; tests share a few client identities."""
    return make_client_identity(f"NVIDIA GameStream Client {index}")


def aes_ecb(key: bytes, data: bytes, encrypt: bool) -> bytes:
    assert len(data) % 16 == 0
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


class PairingClient:
    """One Moonlight pairing run; each `phaseN_params` is the query of request N, each
    `on_phaseN` consumes the reply fields (a dict of element name -> text)."""

    def __init__(
        self,
        identity: ClientIdentity,
        pin: str,
        unique_id: str = "0123456789abcdef",
        device_name: str = "roth",
    ) -> None:
        self.identity = identity
        self.pin = pin
        self.unique_id = unique_id
        self.device_name = device_name
        self.salt = os.urandom(16)
        self.key = hashlib.sha256(self.salt + pin.encode("ascii")).digest()[:16]
        self.random_challenge = os.urandom(16)
        self.client_secret = os.urandom(16)
        self.server_cert_pem = b""
        self.server_response = b""
        self.server_challenge = b""
        self.server_secret = b""

    def _base(self) -> dict[str, str]:
        return {
            "uniqueid": self.unique_id,
            "uuid": os.urandom(16).hex(),
            "devicename": self.device_name,
            "updateState": "1",
        }

    def phase1_params(self) -> dict[str, str]:
        return {
            **self._base(),
            "phrase": "getservercert",
            "salt": self.salt.hex(),
            "clientcert": self.identity.cert_pem.hex(),
        }

    def on_phase1(self, reply: Mapping[str, str]) -> None:
        assert reply.get("paired") == "1", reply
        self.server_cert_pem = bytes.fromhex(reply["plaincert"])
        x509.load_pem_x509_certificate(self.server_cert_pem)  # must parse (client pins it)

    def phase2_params(self) -> dict[str, str]:
        return {
            **self._base(),
            "clientchallenge": aes_ecb(self.key, self.random_challenge, True).hex(),
        }

    def on_phase2(self, reply: Mapping[str, str]) -> None:
        assert reply.get("paired") == "1", reply
        data = aes_ecb(self.key, bytes.fromhex(reply["challengeresponse"]), False)
        assert len(data) >= 48
        self.server_response, self.server_challenge = data[:32], data[32:48]

    def phase3_params(self) -> dict[str, str]:
        blob = (
            self.server_challenge + pem_signature_value(self.identity.cert_pem) + self.client_secret
        )
        hashed = hashlib.sha256(blob).digest()
        return {**self._base(), "serverchallengeresp": aes_ecb(self.key, hashed, True).hex()}

    def on_phase3(self, reply: Mapping[str, str]) -> tuple[bool, bool]:
        """(host signature verifies with plaincert's key, challenge hash proves the PIN)."""
        assert reply.get("paired") == "1", reply
        secret = bytes.fromhex(reply["pairingsecret"])
        assert len(secret) > 16
        self.server_secret, signature = secret[:16], secret[16:]
        server_key = x509.load_pem_x509_certificate(self.server_cert_pem).public_key()
        assert isinstance(server_key, rsa.RSAPublicKey)
        try:
            server_key.verify(signature, self.server_secret, padding.PKCS1v15(), hashes.SHA256())
            signature_ok = True
        except Exception:
            signature_ok = False
        expected = hashlib.sha256(
            self.random_challenge + pem_signature_value(self.server_cert_pem) + self.server_secret
        ).digest()
        return signature_ok, expected == self.server_response

    def phase4_params(self) -> dict[str, str]:
        signature = self.identity.key.sign(self.client_secret, padding.PKCS1v15(), hashes.SHA256())
        return {**self._base(), "clientpairingsecret": (self.client_secret + signature).hex()}

    def phase5_params(self) -> dict[str, str]:
        return {**self._base(), "phrase": "pairchallenge"}


# --------------------------------------------------------------------------------------------
# nvhttp XML
# --------------------------------------------------------------------------------------------


@dataclass
class XmlReply:
    status_code: int
    status_message: str
    fields: dict[str, str]
    root: ET.Element


def parse_xml(body: bytes) -> XmlReply:
    """Parse a reply the way Moonlight does: root@status_code (unsigned, then int), and the
    text of each child element by name."""
    root = ET.fromstring(body)
    assert root.tag == "root", root.tag
    code = int(root.attrib["status_code"]) & 0xFFFFFFFF
    if code >= 0x80000000:
        code -= 1 << 32
    fields = {child.tag: (child.text or "") for child in root}
    return XmlReply(code, root.attrib.get("status_message", ""), fields, root)


# --------------------------------------------------------------------------------------------
# RTSP
# --------------------------------------------------------------------------------------------


def rtsp_request(
    method: str,
    target: str,
    cseq: int,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """RtspParser.c serialisation: request line, options, blank line, payload."""
    lines = [f"{method} {target} RTSP/1.0", f"CSeq: {cseq}", "X-GS-ClientVersion: 14"]
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_rtsp_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    version, code, _reason = lines[0].split(" ", 2)
    assert version == "RTSP/1.0"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(code), headers, body


class RtspClientCrypto:
    """The client half of `rtspenc`: seal requests ('C','R'), open replies ('H','R')."""

    def __init__(self, key: bytes) -> None:
        self.aead = AESGCM(key)
        self.seq = 0

    @staticmethod
    def iv(seq: int, direction: bytes) -> bytes:
        return struct.pack("<I", seq) + bytes(6) + direction + b"R"

    def seal(self, plaintext: bytes) -> bytes:
        self.seq += 1  # pre-incremented: the first request has seq 1
        sealed = self.aead.encrypt(self.iv(self.seq, b"C"), plaintext, None)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        return struct.pack(">II", 0x80000000 | len(ciphertext), self.seq) + tag + ciphertext

    def open(self, message: bytes) -> tuple[int, bytes]:
        """(sequence number, plaintext) of a host reply; asserts the framing."""
        word, seq = struct.unpack_from(">II", message)
        assert word & 0x80000000, "reply lacks the encrypted bit"
        assert len(message) == 24 + (word & 0x7FFFFFFF), "truncated or excess reply data"
        tag, ciphertext = message[8:24], message[24:]
        return seq, self.aead.decrypt(self.iv(seq, b"H"), ciphertext + tag, None)


@dataclass
class SdpConfig:
    width: int = 1920
    height: int = 1080
    fps: int = 60
    packet_size: int = 1392
    bitrate_kbps: int = 20000
    codec: int = 1  # bitStreamFormat
    hdr: bool = False
    channels: int = 2
    channel_mask: int = 0x3
    high_quality: bool = False
    packet_duration: int = 5
    encryption_enabled: int = 1  # x-ss-general.encryptionEnabled
    nv_feature_flags: int = 0x07 | 0x80
    csc: int = (1 << 1) | 0
    remote: bool = False


def moonlight_sdp(cfg: SdpConfig) -> bytes:
    """The ANNOUNCE payload as SdpGenerator.c emits it for a Sunshine-class host (7.1.431.-1):
    header, `a=name:value \\r\\n` attributes (note the trailing space), tail."""
    attrs: list[tuple[str, str]] = [
        ("x-ml-general.featureFlags", "3"),
        ("x-ss-general.encryptionEnabled", str(cfg.encryption_enabled)),
        ("x-ss-video[0].chromaSamplingType", "0"),
        ("x-nv-video[0].clientViewportWd", str(cfg.width)),
        ("x-nv-video[0].clientViewportHt", str(cfg.height)),
        ("x-nv-video[0].maxFPS", str(cfg.fps)),
        ("x-nv-video[0].packetSize", str(cfg.packet_size)),
        ("x-nv-video[0].rateControlMode", "4"),
        ("x-nv-video[0].timeoutLengthMs", "7000"),
        ("x-nv-video[0].framesWithInvalidRefThreshold", "0"),
    ]
    adjusted = min(int(cfg.bitrate_kbps * 0.80), 100000)
    attrs += [
        ("x-nv-video[0].initialBitrateKbps", str(adjusted)),
        ("x-nv-video[0].initialPeakBitrateKbps", str(adjusted)),
        ("x-nv-vqos[0].bw.minimumBitrateKbps", str(adjusted)),
        ("x-nv-vqos[0].bw.maximumBitrateKbps", str(adjusted)),
        ("x-ml-video.configuredBitrateKbps", str(cfg.bitrate_kbps)),
        ("x-nv-vqos[0].fec.enable", "1"),
        ("x-nv-vqos[0].videoQualityScoreUpdateTime", "5000"),
        ("x-nv-vqos[0].qosTrafficType", "0" if cfg.remote else "5"),
        ("x-nv-aqos.qosTrafficType", "0" if cfg.remote else "4"),
        ("x-nv-general.featureFlags", str(cfg.nv_feature_flags)),
        ("x-nv-general.useReliableUdp", "13"),
        ("x-nv-vqos[0].fec.minRequiredFecPackets", "2"),
        ("x-nv-vqos[0].bllFec.enable", "0"),
        ("x-nv-vqos[0].drc.enable", "0"),
        ("x-nv-general.enableRecoveryMode", "0"),
        ("x-nv-video[0].videoEncoderSlicesPerFrame", "1"),
    ]
    if cfg.codec == 2:
        attrs.append(("x-nv-vqos[0].bitStreamFormat", "2"))
    else:
        attrs.append(("x-nv-clientSupportHevc", "1" if cfg.codec == 1 else "0"))
        attrs.append(("x-nv-vqos[0].bitStreamFormat", str(cfg.codec)))
    attrs += [
        ("x-nv-video[0].dynamicRangeMode", "1" if cfg.hdr else "0"),
        ("x-nv-video[0].maxNumReferenceFrames", "0"),
        ("x-nv-video[0].clientRefreshRateX100", str(cfg.fps * 100)),
        ("x-nv-audio.surround.numChannels", str(cfg.channels)),
        ("x-nv-audio.surround.channelMask", str(cfg.channel_mask)),
        ("x-nv-audio.surround.enable", "1" if cfg.channels > 2 else "0"),
        ("x-nv-audio.surround.AudioQuality", "1" if cfg.high_quality else "0"),
        ("x-nv-aqos.packetDuration", str(cfg.packet_duration)),
        ("x-nv-video[0].encoderCscMode", str(cfg.csc)),
    ]
    head = "v=0\r\no=android 0 14 IN IPv4 192.168.1.50\r\ns=NVIDIA Streaming Client\r\n"
    body = "".join(f"a={name}:{value} \r\n" for name, value in attrs)
    tail = "t=0 0\r\nm=video 47998  \r\n"
    return (head + body + tail).encode()


def surround_configs(describe: bytes, channels: int) -> tuple[list[int], list[int] | None]:
    """parseOpusConfigurations: (normal-quality mapping after the client's 5.1/7.1 rotation,
    high-quality mapping or None). Each is [streams, coupled, *mapping]."""
    text = describe.decode()
    prefix = f"a=fmtp:97 surround-params={channels}"

    def parse(at: int) -> list[int]:
        digits = text[at : at + 2 + channels]
        assert len(digits) == 2 + channels and digits.isdigit(), digits
        return [int(c) for c in digits]

    first = text.find(prefix)
    assert first >= 0, f"no surround-params for {channels} channels"
    normal = parse(first + len(prefix))
    if channels in (6, 8):
        mapping = normal[2:]
        rotated = [*mapping[:3], mapping[channels - 1], *mapping[3 : channels - 1]]
        normal = normal[:2] + rotated
    second = text.find(prefix, first + len(prefix))
    high = parse(second + len(prefix)) if second >= 0 else None
    return normal, high


# --------------------------------------------------------------------------------------------
# Video: RtpVideoQueue + depacketizer essentials
# --------------------------------------------------------------------------------------------

FLAG_PIC = 0x1
FLAG_EOF = 0x2
FLAG_SOF = 0x4


@dataclass
class VideoPacket:
    raw: bytes  # plaintext datagram as received (may be shorter than packetSize + 16)
    header: int
    seq: int
    timestamp: int
    ssrc: int
    offset: int  # where NV_VIDEO_PACKET starts
    spi: int  # streamPacketIndex >> 8 (24 bits)
    frame_index: int
    flags: int
    extra_flags: int
    multi_fec_flags: int
    block: int
    last_block: int
    fec_index: int
    data_shards: int
    fec_percentage: int


def parse_video_packet(raw: bytes) -> VideoPacket:
    header, _pt, seq, ts, ssrc = struct.unpack_from(">BBHII", raw)
    offset = 12 + (4 if header & 0x10 else 0)
    spi, frame, flags, extra, mff, mfb, fec = struct.unpack_from("<IIBBBBI", raw, offset)
    return VideoPacket(
        raw=raw,
        header=header,
        seq=seq,
        timestamp=ts,
        ssrc=ssrc,
        offset=offset,
        spi=(spi >> 8) & 0xFFFFFF,
        frame_index=frame,
        flags=flags,
        extra_flags=extra,
        multi_fec_flags=mff,
        block=(mfb >> 4) & 0x3,
        last_block=(mfb >> 6) & 0x3,
        fec_index=(fec & 0x3FF000) >> 12,
        data_shards=(fec & 0xFFC00000) >> 22,
        fec_percentage=(fec & 0xFF0) >> 4,
    )


def is_before16(x: int, y: int) -> bool:
    return ((x - y) & 0xFFFF) > 0x7FFF


def is_before24(x: int, y: int) -> bool:
    return ((x - y) & 0xFFFFFF) > 0x7FFFFF


@dataclass
class ReceivedFrame:
    frame_index: int
    frame_type: int
    latency_01ms: int
    last_payload_len: int
    payload: bytes  # as handed to an H.264/HEVC decoder (trailing padding kept)
    exact: bytes  # truncated by lastPayloadLen (the AV1 path)
    timestamp: int
    recovered_shards: int


@dataclass
class _Block:
    frame_index: int
    block: int
    last_block: int
    lowest: int
    data: int
    percentage: int
    parity: int
    packets: dict[int, VideoPacket] = field(default_factory=dict)  # shard index -> packet
    order: list[int] = field(default_factory=list)  # arrival order of shard indices
    done: bool = False


class VideoReceiver:
    """Feed datagrams in arrival order (losses simply not fed); collects complete frames.

    Mirrors moonlight-common-c: the block's shape comes from the first packet seen, parity count
    P = (D * pct + 99) // 100, RS recovery over whole packets zero-padded to packetSize + 16,
    recovered headers re-stamped, the sanity checks on recovered flags, then the depacketizer's
    first/last-packet rules, streamPacketIndex continuity and the frame header.
    """

    def __init__(self, packet_size: int, key: bytes | None = None) -> None:
        self.packet_size = packet_size
        self.receive_size = packet_size + 16  # MAX_RTP_HEADER_SIZE
        self.aead = AESGCM(key) if key is not None else None
        self.current_frame = 1
        self.current_block = 0
        self.next_contiguous: int | None = None
        self.block: _Block | None = None
        self.completed: list[VideoPacket] = []
        self.frames: list[ReceivedFrame] = []
        self.lost_frames: list[int] = []
        self.rejected = 0
        self.recovery_failures = 0
        self.recovered = 0
        self.corrupt_frames: list[int] = []
        # depacketizer state
        self.next_frame_number = 1
        self.last_spi: int | None = None
        self.decoding = False
        self._parts: list[bytes] = []
        self._frame_header = b""
        self._frame_recovered = 0

    # --- decryption (VideoStream.c) ---------------------------------------------------------

    def decrypt(self, datagram: bytes) -> bytes:
        assert self.aead is not None
        iv, _frame, tag = datagram[:12], datagram[12:16], datagram[16:32]
        return self.aead.decrypt(iv, datagram[32:] + tag, None)

    # --- RtpvAddPacket ----------------------------------------------------------------------

    def feed(self, datagram: bytes) -> None:
        raw = self.decrypt(datagram) if self.aead is not None else datagram
        assert len(raw) <= self.receive_size
        pkt = parse_video_packet(raw)
        assert pkt.header & 0x10, "FLAG_EXTENSION is required"
        if self.next_contiguous is not None and is_before16(pkt.seq, self.next_contiguous):
            self.rejected += 1
            return
        if pkt.frame_index < self.current_frame:
            self.rejected += 1
            return
        if pkt.frame_index == self.current_frame and pkt.block < self.current_block:
            self.rejected += 1
            return
        blk = self.block
        if blk is None or blk.done or blk.frame_index != pkt.frame_index or blk.block != pkt.block:
            if blk is not None and not blk.done:
                self._lose(blk.frame_index)
            expected = self.current_block if self.current_frame == pkt.frame_index else 0
            if pkt.block != expected:
                self._lose(pkt.frame_index)
                self.current_frame = pkt.frame_index + 1
                self.current_block = 0
                self.block = None
                return
            if self.current_frame != pkt.frame_index:
                self.completed = []
            self.current_frame = pkt.frame_index
            lowest = (pkt.seq - pkt.fec_index) & 0xFFFF
            data, pct = pkt.data_shards, pkt.fec_percentage
            blk = self.block = _Block(
                pkt.frame_index,
                pkt.block,
                pkt.last_block,
                lowest,
                data,
                pct,
                (data * pct + 99) // 100,
            )
            self.next_contiguous = lowest
        index = (pkt.seq - blk.lowest) & 0xFFFF
        if index >= blk.data + blk.parity:
            self.rejected += 1  # extra parity: dropped like the client does
            return
        assert pkt.data_shards == blk.data and pkt.fec_percentage == blk.percentage
        assert pkt.last_block == blk.last_block
        assert pkt.fec_index == index, "fecInfo shard index must match seq - block base"
        assert (pkt.flags & FLAG_EOF) or len(raw) - pkt.offset == self.packet_size
        if index in blk.packets:
            return
        blk.packets[index] = pkt
        blk.order.append(index)
        self._try_complete(blk)

    def _lose(self, frame_index: int) -> None:
        if frame_index not in self.lost_frames:
            self.lost_frames.append(frame_index)
        self.completed = []

    def _try_complete(self, blk: _Block) -> None:
        if len(blk.packets) < blk.data:
            return
        data_packets: list[VideoPacket] = []
        missing = [i for i in range(blk.data) if i not in blk.packets]
        if missing:
            shards: list[bytes | None] = [None] * (blk.data + blk.parity)
            for i, pkt in blk.packets.items():
                shards[i] = pkt.raw.ljust(self.receive_size, b"\0")
            rebuilt = video_recover(shards, blk.data)
            head = blk.packets[blk.order[0]]
            for i in range(blk.data):
                if i in blk.packets:
                    data_packets.append(blk.packets[i])
                    continue
                rec = self._restamp(bytearray(rebuilt[i]), blk, i, head)
                if rec is None:
                    self.recovery_failures += 1
                    return  # the frame cannot complete (client: PACKET_RECOVERY_FAILURE)
                data_packets.append(rec)
                self.recovered += 1
                self._frame_recovered += 1
        else:
            data_packets = [blk.packets[i] for i in range(blk.data)]
        blk.done = True
        self.next_contiguous = (blk.lowest + blk.data + blk.parity) & 0xFFFF
        self.completed.extend(data_packets)
        if blk.block == blk.last_block:
            packets, self.completed = self.completed, []
            self.current_frame = blk.frame_index + 1
            self.current_block = 0
            for pkt in packets:
                self._depacketize(pkt)
            self._frame_recovered = 0
        else:
            self.current_block = blk.block + 1

    def _restamp(
        self, buf: bytearray, blk: _Block, index: int, head: VideoPacket
    ) -> VideoPacket | None:
        """reconstructFrame's header patching and sanity checks for one recovered shard."""
        struct.pack_into(">H", buf, 2, (blk.lowest + index) & 0xFFFF)
        buf[0] = head.header
        buf[4:12] = head.raw[4:12]  # timestamp and ssrc, copied raw
        offset = 12 + (4 if buf[0] & 0x10 else 0)
        struct.pack_into("<I", buf, offset + 4, self.current_frame)
        buf[offset + 11] = ((blk.last_block << 2) | blk.block) << 4
        flags = buf[offset + 8]
        if index == 0 and not flags & FLAG_SOF:
            return None
        if index == blk.data - 1 and not flags & FLAG_EOF:
            return None
        if 0 < index < blk.data - 1 and not flags & FLAG_PIC:
            return None
        if flags & ~(FLAG_SOF | FLAG_EOF | FLAG_PIC):
            return None
        return parse_video_packet(bytes(buf))

    # --- VideoDepacketizer processRtpPayload ------------------------------------------------

    def _depacketize(self, pkt: VideoPacket) -> None:
        body = pkt.raw[pkt.offset + 16 :]
        first = bool(pkt.flags & FLAG_SOF) and pkt.block == 0
        last = bool(pkt.flags & FLAG_EOF) and pkt.block == pkt.last_block
        assert pkt.flags & ~(FLAG_SOF | FLAG_EOF | FLAG_PIC) == 0
        if pkt.frame_index < self.next_frame_number:
            return
        if self.last_spi is not None and (
            is_before24(pkt.spi, (self.last_spi + 1) & 0xFFFFFF)
            or (not pkt.flags & FLAG_SOF and pkt.spi != (self.last_spi + 1) & 0xFFFFFF)
        ):
            self.corrupt_frames.append(pkt.frame_index)
            self.decoding = False
            self.next_frame_number = pkt.frame_index + 1
            self._parts = []
            return
        assert first != self.decoding, "incomplete frame reached the depacketizer"
        if first:
            self.decoding = True
            self._parts = []
            assert len(body) >= 8
            self._frame_header = body[:8]
            assert body[0] == 0x01, "short (8-byte) frame header expected"
            assert body[3] in (1, 2, 4, 5), f"frame type {body[3]}"
            body = body[8:]
        self.last_spi = pkt.spi
        self._parts.append(body)
        if last:
            header = self._frame_header
            latency, ftype, last_len = struct.unpack_from("<HBH", header, 1)
            header_size = 8 if first else 0
            assert last_len > header_size, "lastPayloadLen must exceed the frame header"
            assert last_len - header_size <= len(self._parts[-1])
            exact = b"".join(self._parts[:-1]) + self._parts[-1][: last_len - header_size]
            self.frames.append(
                ReceivedFrame(
                    frame_index=pkt.frame_index,
                    frame_type=ftype,
                    latency_01ms=latency,
                    last_payload_len=last_len,
                    payload=b"".join(self._parts),
                    exact=exact,
                    timestamp=pkt.timestamp,
                    recovered_shards=self._frame_recovered,
                )
            )
            self.decoding = False
            self.next_frame_number = pkt.frame_index + 1


# --------------------------------------------------------------------------------------------
# Control and input
# --------------------------------------------------------------------------------------------


def control_iv(seq: int, direction: bytes) -> bytes:
    return struct.pack("<I", seq) + bytes(6) + direction + b"C"


def client_seal(key: bytes, seq: int, msg_type: int, payload: bytes) -> bytes:
    """NVCTL_ENCRYPTED_PACKET_HEADER as the client builds it (ControlStream.c)."""
    plain = struct.pack("<HH", msg_type, len(payload)) + payload
    sealed = AESGCM(key).encrypt(control_iv(seq, b"C"), plain, None)
    return struct.pack("<HHI", 0x0001, 4 + 16 + len(plain), seq) + sealed[-16:] + sealed[:-16]


def client_open(key: bytes, packet: bytes) -> tuple[int, int, bytes]:
    """(seq, type, payload) of a host-sealed control message, checking the envelope."""
    kind, length, seq = struct.unpack_from("<HHI", packet)
    assert kind == 0x0001
    assert length == len(packet) - 4 and length >= 4 + 16 + 4
    tag, ciphertext = packet[8:24], packet[24:]
    plain = AESGCM(key).decrypt(control_iv(seq, b"H"), ciphertext + tag, None)
    msg_type, payload_len = struct.unpack_from("<HH", plain)
    assert payload_len == len(plain) - 4
    return seq, msg_type, plain[4:]


def input_packet(magic: int, body: bytes) -> bytes:
    """NV_INPUT_HEADER: BE32 size (magic + body), LE32 magic."""
    return struct.pack(">I", 4 + len(body)) + struct.pack("<I", magic) + body


def key_packet(down: bool, key_code: int, modifiers: int = 0, flags: int = 0) -> bytes:
    """LiSendKeyboardEvent2: keyCode as the app passes it (0x8000 | VK), LE16."""
    body = struct.pack("<BHBH", flags, key_code & 0xFFFF, modifiers, 0)
    return input_packet(0x03 if down else 0x04, body)


def mouse_rel_packet(dx: int, dy: int) -> bytes:
    return input_packet(0x07, struct.pack(">hh", dx, dy))


def mouse_abs_packet(x: int, y: int, ref_w: int, ref_h: int) -> bytes:
    return input_packet(0x05, struct.pack(">hhhhh", x, y, 0, ref_w - 1, ref_h - 1))


def mouse_button_packet(down: bool, button: int) -> bytes:
    # LiSendMouseButtonEvent: action 0x07 press / 0x08 release, +1 on gen 5+
    return input_packet((0x07 if down else 0x08) + 1, bytes([button]))


def scroll_packet(amount: int) -> bytes:
    return input_packet(0x0A, struct.pack(">hhh", amount, amount, 0))


def hscroll_packet(amount: int) -> bytes:
    return input_packet(0x55000001, struct.pack(">h", amount))


def text_packet(text: str) -> bytes:
    return input_packet(0x17, text.encode("utf-8"))


def controller_packet(
    number: int,
    active_mask: int,
    buttons: int,
    lt: int = 0,
    rt: int = 0,
    lx: int = 0,
    ly: int = 0,
    rx: int = 0,
    ry: int = 0,
) -> bytes:
    """NV_MULTI_CONTROLLER_PACKET (gen 5 magic 0x0C), all fields LE16 as the client writes them
    (shorts: the mask and low buttons are cast to short, buttonFlags2 = buttons >> 16)."""

    def s16(v: int) -> int:
        v &= 0xFFFF
        return v - 0x10000 if v & 0x8000 else v

    body = struct.pack(
        "<hhhhhBBhhhhhhh",
        0x001A,
        number,
        s16(active_mask),
        0x0014,
        s16(buttons),
        lt,
        rt,
        lx,
        ly,
        rx,
        ry,
        0x009C,
        s16(buttons >> 16),
        0x0055,
    )
    return input_packet(0x0C, body)


def arrival_packet(number: int, kind: int, capabilities: int, supported: int) -> bytes:
    return input_packet(0x55000004, struct.pack("<BBHI", number, kind, capabilities, supported))


def haptics_packet(enable: bool) -> bytes:
    return input_packet(0x0D, struct.pack("<H", 1 if enable else 0))
