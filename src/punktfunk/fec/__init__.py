"""Forward error correction for both wire protocols: Reed-Solomon over GF(2^8), polynomial 0x11D,
and for punktfunk/2 video from a Rust host also GF(2^16) Leopard-RS (gf16: FEC scheme 1).

- Video: systematic RS with the Cauchy parity matrix Moonlight clients decode with (nanors):
  parity row j, column i = 1 / ((P + i) XOR j), any D data + P parity with D + P <= 255.
- Audio: GameStream's RS(4,2) with the fixed rows {77 40 38 0e} and {c7 a7 0d 6c}.

Encoders and decoders take equal-length shards through the buffer protocol (bytes, bytearray,
memoryview, numpy) without copying them. The bulk multiply-accumulate runs in the native kernel
(punktfunk.fec._gf8, built by setup.py) when it is importable, else in a vectorised numpy
fallback; the choice is logged once, and every function takes `backend=` ("native", "numpy",
"native-<isa>" or a Backend) so tests and benchmarks can pick one.
"""

from punktfunk.fec._backend import (
    Backend,
    BytesLike,
    available_backends,
    default_backend,
    get_backend,
)
from punktfunk.fec._codec import MAX_SHARDS
from punktfunk.fec.audio import (
    AUDIO_DATA_SHARDS,
    AUDIO_MATRIX,
    AUDIO_PARITY_SHARDS,
    audio_parity,
    audio_recover,
)
from punktfunk.fec.errors import FecError, UnrecoverableBlock
from punktfunk.fec.gf16 import MAX_SHARDS_16, gf16_parity, gf16_recover
from punktfunk.fec.video import (
    video_matrix,
    video_parity,
    video_parity_count,
    video_parity_into,
    video_recover,
)

__all__ = [
    "AUDIO_DATA_SHARDS",
    "AUDIO_MATRIX",
    "AUDIO_PARITY_SHARDS",
    "MAX_SHARDS",
    "MAX_SHARDS_16",
    "Backend",
    "BytesLike",
    "FecError",
    "UnrecoverableBlock",
    "audio_parity",
    "audio_recover",
    "available_backends",
    "default_backend",
    "get_backend",
    "gf16_parity",
    "gf16_recover",
    "video_matrix",
    "video_parity",
    "video_parity_count",
    "video_parity_into",
    "video_recover",
]
