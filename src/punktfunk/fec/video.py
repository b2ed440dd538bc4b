"""Video FEC: the Reed-Solomon code Moonlight clients decode, byte for byte.

Moonlight (moonlight-common-c) decodes video FEC with nanors, whose reed_solomon_new(D, P) sets
parity row j, column i to 1 / ((P + i) XOR j) over GF(2^8)/0x11D: a Cauchy matrix with
x_i = P + i and y_j = j, used as-is (no normalisation), under an identity for the data shards.
A host must produce exactly these parity bytes or clients "recover" garbage; the golden-vector
tests pin them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from punktfunk.fec import _codec
from punktfunk.fec._backend import Backend, BytesLike, Prepared, resolve
from punktfunk.fec._gf import INV


def video_parity_count(data_count: int, fec_percentage: int, min_parity: int = 0) -> int:
    """Parity shards for a block: ceil(D * pct / 100), raised to `min_parity` when FEC is on.

    This is the GameStream host rule (Sunshine: parity = (D * pct + 99) / 100, and at least the
    client's minRequiredFecPackets unless the percentage is 0); whether D + P fits in one block
    (<= 255) is the caller's business, video_parity() rejects blocks that do not.
    """
    if data_count < 1 or fec_percentage < 0 or min_parity < 0:
        raise ValueError(
            f"invalid FEC parameters: data_count={data_count}, "
            f"fec_percentage={fec_percentage}, min_parity={min_parity}"
        )
    parity = (data_count * fec_percentage + 99) // 100
    return max(parity, min_parity) if fec_percentage else parity


@functools.lru_cache(maxsize=512)
def video_matrix(data_count: int, parity_count: int) -> np.ndarray:
    """The P x D parity matrix nanors builds: M[j][i] = 1 / ((P + i) XOR j). Read-only."""
    _codec.check_shape(data_count, parity_count)
    columns = parity_count + np.arange(data_count)
    matrix = INV[columns[None, :] ^ np.arange(parity_count)[:, None]]
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=256)
def _prepared(backend: Backend, data_count: int, parity_count: int) -> Prepared:
    """Kernel tables per block shape: frames reuse a few shapes, so this is built rarely."""
    return backend.prepare(video_matrix(data_count, parity_count))


def video_parity(
    shards: Sequence[BytesLike],
    parity_count: int,
    *,
    backend: Backend | str | None = None,
) -> list[bytes]:
    """The `parity_count` parity shards for equal-length data shards, as Moonlight expects them.

    Shards are read in place through the buffer protocol (bytes, bytearray, memoryview, numpy);
    ValueError for an invalid block shape or unequal lengths.
    """
    kernel = resolve(backend)
    return kernel.gemm(_prepared(kernel, len(shards), parity_count), shards)


def video_parity_into(
    shards: Sequence[BytesLike],
    out: Sequence[BytesLike],
    *,
    backend: Backend | str | None = None,
) -> None:
    """Like video_parity() with P = len(out), writing into caller buffers (e.g. packet payloads).

    Lets a packetiser compute parity straight into its send buffers with no copy.
    """
    kernel = resolve(backend)
    prepared = _prepared(kernel, len(shards), len(out))
    kernel.gemm_into(prepared, shards, out)


def video_recover(
    shards: Sequence[BytesLike | None],
    data_count: int,
    *,
    backend: Backend | str | None = None,
) -> list[bytes]:
    """The `data_count` data shards of a block, rebuilt from any D of its D + P shards.

    `shards` is the whole block in order (data then parity) with None for every missing shard;
    P = len(shards) - data_count. Raises UnrecoverableBlock when fewer than D shards are present.
    """
    if len(shards) <= data_count:
        raise ValueError(
            f"{len(shards)} shard slots for {data_count} data shards: pass the whole block "
            "(data then parity, None where missing)"
        )
    matrix = video_matrix(data_count, len(shards) - data_count)
    return _codec.recover(resolve(backend), matrix, shards, data_count)
