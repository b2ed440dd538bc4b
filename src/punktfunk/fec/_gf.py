"""GF(2^8) arithmetic for the Reed-Solomon codes, in numpy.

The field is the one nanors (the Reed-Solomon library inside Moonlight clients) uses: polynomial
x^8 + x^4 + x^3 + x^2 + 1 (0x11D) with generator 2. Everything here works on whole arrays: the
small matrix algebra of recovery (inversion of an erasure submatrix) and the numpy fallback of
the bulk multiply-accumulate, which the native kernel replaces when it is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POLY = 0x11D


def _exp_log_tables() -> tuple[np.ndarray, np.ndarray]:
    """Powers of the generator 2 (doubled in length so log sums need no modulo) and their logs."""
    exp = np.zeros(510, dtype=np.uint8)
    log = np.zeros(256, dtype=np.intp)
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= POLY
    exp[255:] = exp[:255]
    return exp, log


EXP, LOG = _exp_log_tables()

# MUL[a, b] = a * b. 64 KiB; indexing it with whole shards is the numpy multiply.
MUL = EXP[LOG[:, None] + LOG[None, :]]
MUL[0, :] = 0
MUL[:, 0] = 0
MUL.flags.writeable = False

# INV[a] = 1 / a, with INV[0] = 0 as in nanors' table (the Cauchy construction never asks for it).
INV = EXP[(255 - LOG) % 255]
INV[0] = 0
INV.flags.writeable = False

_FLAT_MUL = MUL.reshape(-1)

# Columns processed per numpy pass: bounds the temporary index array (8 bytes per product)
# for long shards while keeping each pass large enough to amortise numpy's call overhead.
_CHUNK = 16384


class SingularMatrixError(ArithmeticError):
    """The matrix has no inverse over GF(2^8)."""


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a square uint8 matrix over GF(2^8), by Gauss-Jordan elimination.

    Each step is a few whole-matrix numpy operations on the columns not yet reduced, so a 43x43
    erasure submatrix inverts in about half a millisecond.
    """
    size = matrix.shape[0]
    if matrix.shape != (size, size):
        raise ValueError(f"cannot invert a non-square {matrix.shape} matrix")
    work = np.concatenate([matrix.astype(np.uint8), np.eye(size, dtype=np.uint8)], axis=1)
    for col in range(size):
        if work[col, col] == 0:
            below = np.flatnonzero(work[col + 1 :, col])
            if below.size == 0:
                raise SingularMatrixError(f"matrix is singular (no pivot in column {col})")
            pivot = col + 1 + int(below[0])
            work[[col, pivot]] = work[[pivot, col]]
        active = work[:, col:]  # columns left of `col` are already reduced to the identity
        row = active[col]
        row[...] = MUL[INV[row[0]]][row]
        factors = active[:, 0].astype(np.intp) << 8
        factors[col] = 0
        active ^= _FLAT_MUL.take(factors[:, None] + row)
    return work[:, size:]


def mul_offsets(matrix: np.ndarray) -> np.ndarray:
    """Row offsets into the flattened MUL table, i.e. the numpy kernel's prepared matrix."""
    return matrix.astype(np.intp) << 8


def gemm(offsets: np.ndarray, inputs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """out[r] = XOR_c m[r][c] * inputs[c] for uint8 shards of `length` bytes; returns rows x length.

    `offsets` comes from mul_offsets(). For every input shard one gather from the 64 KiB product
    table produces its contribution to all output rows at once, so the Python loop runs once per
    input shard, never per byte.
    """
    rows = offsets.shape[0]
    out = np.empty((rows, length), dtype=np.uint8)
    for start in range(0, length, _CHUNK):
        stop = min(length, start + _CHUNK)
        acc = out[:, start:stop]
        index = np.empty((rows, stop - start), dtype=np.intp)
        product = np.empty((rows, stop - start), dtype=np.uint8)
        for col, shard in enumerate(inputs):
            np.add(offsets[:, col : col + 1], shard[start:stop], out=index)
            _FLAT_MUL.take(index, out=product)
            if col == 0:
                acc[...] = product
            else:
                acc ^= product
    return out
