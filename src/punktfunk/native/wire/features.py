"""The hello feature bitset (`quic/v2/features.rs`).

Bit `n` is bit `n % 8` of byte `n / 8`, trailing zero bytes dropped. Bits 0-31 are the four
punktfunk/1 capability bytes in place (video, client, host, host2); bits from 32 up are
features only this wire can state. A reader keeps the first 128 bits and ignores the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Feature

_MASK = (1 << 128) - 1
_V1 = (1 << 32) - 1


@dataclass(frozen=True)
class FeatureSet:
    bits: int = 0

    def has(self, bit: int) -> bool:
        return 0 <= bit < 128 and (self.bits >> bit) & 1 == 1

    def with_bit(self, bit: int) -> FeatureSet:
        return FeatureSet(self.bits | (1 << bit)) if 0 <= bit < 128 else self

    def intersect(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(self.bits & other.bits)

    def union(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet(self.bits | other.bits)

    def native(self) -> FeatureSet:
        """Bits from 32 up: what only punktfunk/2 can say."""
        return FeatureSet(self.bits & ~_V1 & _MASK)

    def encode(self) -> bytes:
        raw = self.bits.to_bytes(16, "little")
        return raw.rstrip(b"\x00")

    @classmethod
    def decode(cls, data: bytes) -> FeatureSet:
        """Never fails: a short value is a peer with fewer features, a long one a newer peer."""
        return cls(int.from_bytes(data[:16], "little"))

    @classmethod
    def client(cls, video_caps: int, client_caps: int) -> FeatureSet:
        return cls(
            (video_caps & 0xFF) << Feature.V1_VIDEO_CAPS
            | (client_caps & 0xFF) << Feature.V1_CLIENT_CAPS
        )

    @classmethod
    def host(cls, host_caps: int, host_caps2: int) -> FeatureSet:
        return cls(
            (host_caps & 0xFF) << Feature.V1_HOST_CAPS
            | (host_caps2 & 0xFF) << Feature.V1_HOST_CAPS2
        )

    def _byte(self, first_bit: int) -> int:
        return (self.bits >> first_bit) & 0xFF

    @property
    def video_caps(self) -> int:
        return self._byte(Feature.V1_VIDEO_CAPS)

    @property
    def client_caps(self) -> int:
        return self._byte(Feature.V1_CLIENT_CAPS)

    @property
    def host_caps(self) -> int:
        return self._byte(Feature.V1_HOST_CAPS)

    @property
    def host_caps2(self) -> int:
        return self._byte(Feature.V1_HOST_CAPS2)


# The native features this host implements, echoed where the client sets them too
# (handshake.rs echoes STREAM_CONFIG, PAD_WRITES and PROFILES). STREAM_CONFIG: a StreamConfig
# for every epoch, epoch 0 right after the ServerHello. No PadFeature writes, no profiles.
HOST_FEATURES = FeatureSet().with_bit(Feature.STREAM_CONFIG)
