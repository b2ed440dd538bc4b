"""GameStream audio packetizer, sans-I/O: Opus packets in, RTP datagrams out.

Data packet: RTP (0x80, PT 97, BE16 seq, BE32 timestamp in ms, SSRC 0) + Opus payload, which is
AES-128-CBC/PKCS#7 encrypted when negotiated (IV = BE32(rikeyid + seq), 12 zero bytes). Every
4 data packets (blocks start at seq % 4 == 0) are followed by two RS(4,2) parity packets (PT 127)
with a 12-byte FEC header {index, 97, BE16 base seq, BE32 base timestamp, BE32 0}; parity is
over the payloads as sent (ciphertext when encrypted).
"""

from __future__ import annotations

import logging
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..fec import AUDIO_DATA_SHARDS, audio_parity
from ..log import event

_log = logging.getLogger("punktfunk.gamestream.audio")

PT_AUDIO = 97
PT_FEC = 127


class AudioPacketizer:
    def __init__(self, key: bytes | None, ri_key_id: int, packet_ms: int = 5) -> None:
        self._key = key
        self._key_id = ri_key_id & 0xFFFFFFFF
        self.packet_ms = packet_ms
        self.seq = 0
        self.timestamp = 0
        self._block: list[bytes] = []
        self._block_ts = 0
        self._warned_sizes = False

    def _encrypt(self, payload: bytes) -> bytes:
        assert self._key is not None
        iv = struct.pack(">I", (self._key_id + self.seq) & 0xFFFFFFFF) + bytes(12)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(payload) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    def packetize(self, opus: bytes) -> list[bytes]:
        """The data datagram for this Opus packet, plus two parity datagrams after every 4th."""
        payload = self._encrypt(opus) if self._key is not None else opus
        seq, ts = self.seq, self.timestamp
        if seq % AUDIO_DATA_SHARDS == 0:
            self._block, self._block_ts = [], ts
        self._block.append(payload)
        out = [struct.pack(">BBHII", 0x80, PT_AUDIO, seq, ts, 0) + payload]
        if len(self._block) == AUDIO_DATA_SHARDS:
            out.extend(self._parity(seq))
        self.seq = (seq + 1) & 0xFFFF
        self.timestamp = (ts + self.packet_ms) & 0xFFFFFFFF
        return out

    def _parity(self, last_seq: int) -> list[bytes]:
        if len({len(p) for p in self._block}) != 1:
            # Clients reject FEC over unequal shards; CBR Opus keeps sizes equal, so this
            # only happens if the encoder misbehaves - skip this block's parity.
            if not self._warned_sizes:
                event(_log, "audio.fec_skipped", logging.WARNING, reason="unequal packet sizes")
                self._warned_sizes = True
            return []
        base_seq = (last_seq - AUDIO_DATA_SHARDS + 1) & 0xFFFF
        parity = audio_parity(self._block)
        return [
            struct.pack(">BBHII", 0x80, PT_FEC, (last_seq + i + 1) & 0xFFFF, 0, 0)
            + struct.pack(">BBHII", i, PT_AUDIO, base_seq, self._block_ts, 0)
            + shard
            for i, shard in enumerate(parity)
        ]
