"""Systematic Reed-Solomon over GF(2^8) for any parity matrix: block shapes and erasure recovery.

A block is D data shards followed by P parity shards, parity[j] = XOR_i M[j][i] * data[i] for a
P x D matrix M (nanors' layout: the identity on top of M is the generator). The video and audio
codes differ only in M; encoding is one kernel pass with M. Recovery solves for the lost data
shards from any D received shards: the small matrix algebra is numpy, every byte of shard data
goes through the backend's kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from punktfunk.fec import _gf
from punktfunk.fec._backend import Backend, BytesLike
from punktfunk.fec.errors import UnrecoverableBlock

# nanors (and so every Moonlight client) caps a block at DATA_SHARDS_MAX = 255 shards.
MAX_SHARDS = 255


def check_shape(data_count: int, parity_count: int) -> None:
    """Reject block shapes no client can decode (nanors' reed_solomon_new rejects them too)."""
    if data_count < 1:
        raise ValueError(f"a FEC block needs at least 1 data shard, got {data_count}")
    if parity_count < 1:
        raise ValueError(f"a FEC block needs at least 1 parity shard, got {parity_count}")
    if data_count + parity_count > MAX_SHARDS:
        raise ValueError(
            f"{data_count} data + {parity_count} parity shards exceed the GF(2^8) limit of "
            f"{MAX_SHARDS} shards per block"
        )


def recover(
    backend: Backend,
    matrix: np.ndarray,
    shards: Sequence[BytesLike | None],
    data_count: int,
) -> list[bytes]:
    """Rebuild the data shards of a block from whichever D of its D+P shards arrived.

    `shards` lists the whole block in order (data then parity), None where a shard is missing.
    With lost data shards E and the first |E| received parity rows J, the lost data solves
    M[J,E] d_E = p_J ^ M[J,K] d_K (K: received data), so d_E = A^-1 p_J ^ (A^-1 M[J,K]) d_K
    with A = M[J,E]: one |E| x D kernel pass. Any choice of J works because both codes are MDS
    (every square submatrix of M is invertible).
    """
    parity_count = matrix.shape[0]
    total = data_count + parity_count
    if len(shards) != total:
        raise ValueError(
            f"expected {total} shard slots ({data_count} data + {parity_count} parity, None for "
            f"missing), got {len(shards)}"
        )
    present = [index for index, shard in enumerate(shards) if shard is not None]
    if len(present) < data_count:
        raise UnrecoverableBlock(len(present), data_count, total)
    _check_lengths(shards, present)

    lost = [index for index in range(data_count) if shards[index] is None]
    if not lost:
        return [_as_bytes(shard) for shard in shards[:data_count]]
    known = [index for index in range(data_count) if shards[index] is not None]
    parity_rows = [index - data_count for index in present if index >= data_count][: len(lost)]

    inverse = _gf.invert(matrix[np.ix_(parity_rows, lost)])
    coefficients = np.empty((len(lost), len(lost) + len(known)), dtype=np.uint8)
    coefficients[:, : len(lost)] = inverse
    if known:
        # A^-1 @ M[J,K] over GF(2^8): the rows of M[J,K] are tiny "shards" for the same kernel.
        mixed = backend.gemm(
            backend.prepare(inverse), list(np.ascontiguousarray(matrix[np.ix_(parity_rows, known)]))
        )
        coefficients[:, len(lost) :] = np.frombuffer(b"".join(mixed), np.uint8).reshape(
            len(lost), len(known)
        )

    inputs = [shards[data_count + row] for row in parity_rows] + [shards[i] for i in known]
    rebuilt = iter(backend.gemm(backend.prepare(coefficients), inputs))
    return [next(rebuilt) if shard is None else _as_bytes(shard) for shard in shards[:data_count]]


def _check_lengths(shards: Sequence[BytesLike | None], present: list[int]) -> None:
    """Received shards must be equal-length contiguous buffers (a ValueError, not bad output)."""
    length = -1
    for index in present:
        view = memoryview(shards[index])  # type: ignore[arg-type]  # None filtered by `present`
        if not view.contiguous:
            raise ValueError(f"shard {index} is not a contiguous buffer")
        if length < 0:
            length, first = view.nbytes, index
        elif view.nbytes != length:
            raise ValueError(
                f"shard {index} is {view.nbytes} bytes but shard {first} is {length}; "
                "all shards of a block must have the same length"
            )
    if length == 0:
        raise ValueError("shards must not be empty")


def _as_bytes(shard: BytesLike) -> bytes:
    """Return received data as bytes, copying only when it is not bytes already."""
    return shard if type(shard) is bytes else memoryview(shard).tobytes()
