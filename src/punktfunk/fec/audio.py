"""Audio FEC: GameStream's RS(4,2) over each run of 4 audio packets.

GameStream audio protects every 4 consecutive (encrypted) payloads with 2 parity shards from a
fixed matrix that is not nanors' Cauchy matrix: both Sunshine and moonlight-common-c
(RtpAudioQueue.c) overwrite nanors' parity rows with the bytes NVIDIA's OpenFEC-based encoder
used, {77 40 38 0e} and {c7 a7 0d 6c}, in the same GF(2^8)/0x11D. Every 2x2 minor of that
matrix is nonzero, so any 4 of the 6 shards rebuild the data.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from punktfunk.fec import _codec
from punktfunk.fec._backend import Backend, BytesLike, Prepared, resolve

AUDIO_DATA_SHARDS = 4
AUDIO_PARITY_SHARDS = 2
AUDIO_MATRIX: tuple[tuple[int, ...], ...] = (
    (0x77, 0x40, 0x38, 0x0E),
    (0xC7, 0xA7, 0x0D, 0x6C),
)

_MATRIX = np.array(AUDIO_MATRIX, dtype=np.uint8)
_MATRIX.flags.writeable = False


@functools.lru_cache(maxsize=8)
def _prepared(backend: Backend) -> Prepared:
    return backend.prepare(_MATRIX)


def audio_parity(
    shards: Sequence[BytesLike], *, backend: Backend | str | None = None
) -> list[bytes]:
    """[p0, p1] for exactly 4 equal-length payloads; ValueError for any other count or lengths."""
    if len(shards) != AUDIO_DATA_SHARDS:
        raise ValueError(
            f"audio FEC covers exactly {AUDIO_DATA_SHARDS} payloads, got {len(shards)}"
        )
    kernel = resolve(backend)
    return kernel.gemm(_prepared(kernel), shards)


def audio_recover(
    shards: Sequence[BytesLike | None], *, backend: Backend | str | None = None
) -> list[bytes]:
    """The 4 payloads of a block from its 6 slots (4 data, 2 parity; None where missing).

    Raises UnrecoverableBlock when fewer than 4 of the 6 arrived.
    """
    if len(shards) != AUDIO_DATA_SHARDS + AUDIO_PARITY_SHARDS:
        raise ValueError(
            f"an audio FEC block has {AUDIO_DATA_SHARDS + AUDIO_PARITY_SHARDS} shard slots "
            f"(None for missing), got {len(shards)}"
        )
    return _codec.recover(resolve(backend), _MATRIX, shards, AUDIO_DATA_SHARDS)
