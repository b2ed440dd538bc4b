"""punktfunk/2 media keys and sealing (`crypto.rs`, `session/seal.rs`, `quic/endpoint.rs`).

No key crosses the wire. Both ends take 32 bytes from the connection's TLS exporter (label
`EXPORTER-punktfunk/2 media`, context = the 16-byte session id), expand one secret per
direction from it, and packet `n` seals under key index `n / 2^23` with nonce
`iv(index) XOR (0^32 ‖ n)` as QUIC builds its nonces. Each direction's packet numbers only
grow, so a (key, nonce) pair never repeats. The packet's 5-byte clear prefix is the AAD.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .packet import MediaHeader, expand_seq, pack_header_into
from .registry import (
    AEAD_TAG_LEN,
    IV_INFO,
    KEY_INFO,
    MEDIA_EXPORTER_LABEL,
    MEDIA_EXPORTER_LEN,
    MEDIA_KEY_PACKETS,
    SECRET_INFO_C2H,
    SECRET_INFO_H2C,
    V2_CLEAR_LEN,
    V2_HEADER_LEN,
    MediaSuite,
)
from .replay import ReplayWindow


class Role(Enum):
    HOST = "host"
    CLIENT = "client"


def hkdf_expand_label(
    secret: bytes, label: bytes, context: bytes, length: int, hash_name: str
) -> bytes:
    """RFC 8446 §7.1 HKDF-Expand-Label over HMAC-`hash_name`."""
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + bytes((len(context),))
    info += context
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


def tls_exporter(
    exporter_master_secret: bytes, hash_name: str, label: bytes, context: bytes, length: int
) -> bytes:
    """RFC 8446 §7.5 TLS-Exporter from the connection's exporter master secret."""
    empty = hashlib.new(hash_name).digest()
    derived = hkdf_expand_label(exporter_master_secret, label, empty, len(empty), hash_name)
    ctx_hash = hashlib.new(hash_name, context).digest()
    return hkdf_expand_label(derived, b"exporter", ctx_hash, length, hash_name)


def media_exporter(exporter_master_secret: bytes, hash_name: str, session_id: bytes) -> bytes:
    """The 32 exporter bytes `quic/endpoint.rs` `media_keys` asks for."""
    return tls_exporter(
        exporter_master_secret, hash_name, MEDIA_EXPORTER_LABEL, session_id, MEDIA_EXPORTER_LEN
    )


def expand(prk: bytes, info: bytes, length: int) -> bytes:
    """One-block HKDF-Expand over HMAC-SHA256 (crypto.rs `expand`): no extract step."""
    return hmac.digest(prk, info + b"\x01", "sha256")[:length]


@dataclass(frozen=True)
class MediaKeys:
    suite: MediaSuite
    host_to_client: bytes
    client_to_host: bytes

    @classmethod
    def derive(cls, exporter: bytes, suite: MediaSuite) -> MediaKeys:
        return cls(
            suite, expand(exporter, SECRET_INFO_H2C, 32), expand(exporter, SECRET_INFO_C2H, 32)
        )

    def __repr__(self) -> str:  # keys stay out of logs
        return f"MediaKeys({self.suite.name}, <redacted>)"


def key_len(suite: MediaSuite) -> int:
    return 16 if suite is MediaSuite.AES_128_GCM else 32


def packet_key(secret: bytes, suite: MediaSuite, index: int) -> tuple[bytes, bytes]:
    """`(key, iv)` for key index `index` of one direction (crypto.rs `MediaDir::key`)."""
    n = index.to_bytes(8, "big")
    return expand(secret, KEY_INFO + n, key_len(suite)), expand(secret, IV_INFO + n, 12)


def media_nonce(iv: bytes, seq: int) -> bytes:
    """`iv XOR (0u32 ‖ seq BE)`; seq fills the low 8 bytes of the 12-byte big-endian IV."""
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")


class _Direction:
    """One direction's secret and the AEADs derived from it so far (at most three indices)."""

    def __init__(self, suite: MediaSuite, secret: bytes) -> None:
        self._suite, self._secret = suite, secret
        self._keys: dict[int, tuple[AESGCM | ChaCha20Poly1305, int]] = {}
        self._lock = threading.Lock()

    def key(self, seq: int) -> tuple[AESGCM | ChaCha20Poly1305, int]:
        index = seq // MEDIA_KEY_PACKETS
        hit = self._keys.get(index)
        if hit is None:
            with self._lock:  # two sealing threads may cross a key index together
                hit = self._keys.get(index)
                if hit is None:
                    key, iv = packet_key(self._secret, self._suite, index)
                    cls = AESGCM if self._suite is MediaSuite.AES_128_GCM else ChaCha20Poly1305
                    hit = (cls(key), int.from_bytes(iv, "big"))
                    if len(self._keys) == 3:  # keep the index in use and its neighbours
                        del self._keys[min(self._keys)]
                    self._keys[index] = hit
        return hit


def _secrets(keys: MediaKeys, role: Role, sending: bool) -> bytes:
    host_sends = (role is Role.HOST) == sending
    return keys.host_to_client if host_sends else keys.client_to_host


class MediaSealer:
    """Seals this role's outgoing media; numbers packets 0, 1, 2... and never reuses one.

    `seal` returns a new packet; `seal_into` writes one in place into a caller's buffer (the
    hot path: header packed straight into the packet, AEAD in place, no intermediate copies).
    """

    def __init__(self, keys: MediaKeys, role: Role, first_seq: int = 0) -> None:
        self._dir = _Direction(keys.suite, _secrets(keys, role, sending=True))
        self.next_seq = first_seq
        # Video and a speed-test burst seal from two threads: a number is taken under the lock,
        # so no (key, nonce) pair is ever used twice.
        self._lock = threading.Lock()

    def _take(self, count: int = 1) -> int:
        with self._lock:
            seq = self.next_seq
            self.next_seq = seq + count
            return seq

    def seal(self, header: MediaHeader, shard: bytes) -> bytes:
        """`clear prefix ‖ sealed(header rest ‖ shard) ‖ tag`, numbered with the next seq."""
        seq = self._take()
        head = header.pack(seq)
        aead, iv = self._dir.key(seq)
        nonce = (iv ^ seq).to_bytes(12, "big")
        return head[:V2_CLEAR_LEN] + aead.encrypt(
            nonce, head[V2_CLEAR_LEN:] + shard, head[:V2_CLEAR_LEN]
        )

    def reserve(self, count: int) -> tuple[int, AESGCM | ChaCha20Poly1305, int] | None:
        """Take `count` consecutive packet numbers for a caller that seals them itself:
        `(first seq, aead, iv as int)`, or None when the run would cross a key index (then
        seal packet by packet). The nonce of packet `seq` is `(iv ^ seq)` as 12 BE bytes."""
        with self._lock:
            first = self.next_seq
            if first // MEDIA_KEY_PACKETS != (first + count - 1) // MEDIA_KEY_PACKETS:
                return None
            self.next_seq = first + count
        aead, iv = self._dir.key(first)
        return first, aead, iv

    def seal_into(self, packet: memoryview, fields: tuple[int, ...], shard_len: int) -> None:
        """Seal one packet in place. `packet` is exactly `30 + shard_len + 16` bytes with the
        shard already at offset 30; `fields` are MediaHeader's fields after `seq` (stream
        first). Same bytes as `seal(MediaHeader(...), shard)`."""
        seq = self._take()
        pack_header_into(packet, fields[0], seq, *fields[1:])
        aead, iv = self._dir.key(seq)
        end = V2_HEADER_LEN + shard_len
        aead.encrypt_into(
            (iv ^ seq).to_bytes(12, "big"),
            packet[V2_CLEAR_LEN:end],
            packet[:V2_CLEAR_LEN],
            packet[V2_CLEAR_LEN:],
        )


@dataclass
class OpenStats:
    opened: int = 0
    malformed: int = 0
    stale: int = 0  # older than the replay window, or implausibly far ahead
    forged: int = 0  # failed the AEAD tag
    replayed: int = 0


class MediaOpener:
    """Opens the peer's media: expand the packet number, authenticate, then check replay."""

    def __init__(self, keys: MediaKeys, role: Role) -> None:
        self._dir = _Direction(keys.suite, _secrets(keys, role, sending=False))
        self._window = ReplayWindow()
        self.stats = OpenStats()

    def open(self, packet: bytes) -> tuple[MediaHeader, int, bytes] | None:
        """`(header, full seq, shard)`, or None for a packet dropped (and counted)."""
        if len(packet) < V2_HEADER_LEN + AEAD_TAG_LEN or packet[0] & 0xC0:
            self.stats.malformed += 1
            return None
        low = int.from_bytes(packet[1:V2_CLEAR_LEN], "little")
        seq = expand_seq(self._window.reference(), low)
        if not self._window.plausible(seq):
            self.stats.stale += 1
            return None
        aead, iv = self._dir.key(seq)
        aad = packet[:V2_CLEAR_LEN]
        try:
            plain = aead.decrypt((iv ^ seq).to_bytes(12, "big"), packet[V2_CLEAR_LEN:], aad)
        except InvalidTag:
            self.stats.forged += 1
            return None
        # Only an authenticated number may move the window.
        if not self._window.accept(seq):
            self.stats.replayed += 1
            return None
        header = MediaHeader.unpack(aad + plain[: V2_HEADER_LEN - V2_CLEAR_LEN])
        if header is None:
            self.stats.malformed += 1
            return None
        self.stats.opened += 1
        return header, seq, plain[V2_HEADER_LEN - V2_CLEAR_LEN :]
