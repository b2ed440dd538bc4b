"""Video FEC scheme 1: GF(2^16) Leopard-RS, byte for byte what a Rust punktfunk host sends.

The Rust host's `fec/gf16.rs` encodes with the `reed-solomon-simd` crate (v3), so this is
that crate's code: k data + m recovery shards of one even length, any k of them rebuild the
block, up to 65535 shards in all. The crate picks one of two layouts (`rate_default.rs`):

- high rate (m's power of two <= k's, the video case): with C = m rounded up to a power of
  two, data shard i sits at field point C + i and recovery shard j at point j; recovery =
  sum over C-wide data chunks of FFT_0(IFFT_{chunk end}(chunk)).
- low rate (otherwise): with C = k rounded up to a power of two, data shard i sits at point i
  and recovery shard j at C + j; recovery = FFT_{chunk end}(IFFT_0(data)) per C-wide chunk.

Decoding is the crate's erasure decoder (locator via Walsh transforms, IFFT, formal derivative,
FFT). Both run on (shards, symbols) uint16 arrays in numpy; see _leopard for the field and
layout. The transforms run in the C kernel (_gf16.c) when it is built, else in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from punktfunk.fec import _leopard
from punktfunk.fec._backend import BytesLike, as_uint8_arrays
from punktfunk.fec._leopard import Kernel
from punktfunk.fec.errors import UnrecoverableBlock

MAX_SHARDS_16 = _leopard.MODULUS  # data + recovery shards of one block


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def high_rate(data_count: int, parity_count: int) -> bool:
    """The crate's choice of layout for a block shape (`rate_default.rs` use_high_rate)."""
    check_shape(data_count, parity_count)
    k2, m2 = _pow2(data_count), _pow2(parity_count)
    if k2 != m2:
        return k2 > m2
    return data_count <= parity_count  # equal powers: the crate takes the "wrong" rate


def check_shape(data_count: int, parity_count: int) -> None:
    """ValueError unless the crate can code k data + m recovery shards."""
    if data_count < 1 or parity_count < 1:
        raise ValueError(f"GF(2^16) needs k >= 1 and m >= 1, got k={data_count} m={parity_count}")
    smaller = min(_pow2(data_count), _pow2(parity_count))
    if smaller + max(data_count, parity_count) > _leopard.ORDER:
        raise ValueError(f"GF(2^16) cannot code k={data_count} m={parity_count}")


def _stack(shards: Sequence[BytesLike]) -> np.ndarray:
    arrays = as_uint8_arrays(shards)
    if arrays[0].size % 2:
        raise ValueError(f"GF(2^16) shards must have an even length, got {arrays[0].size}")
    return np.stack(arrays)


def gf16_parity(
    data: Sequence[BytesLike],
    parity_count: int,
    backend: str | None = None,
    layout: str | None = None,
) -> list[bytes]:
    """The `parity_count` recovery shards for equal-length (even) data shards.

    `backend` is 'native', 'numpy' or None (native when built). `layout` forces 'high' or
    'low' (the crate's own test vectors pin both); None is the crate's choice, what hosts send.
    """
    if not data:
        raise ValueError("no data shards")
    k, m = len(data), parity_count
    check_shape(k, m)
    symbols = _leopard.to_symbols(_stack(data))
    kern = _leopard.kernel(backend)
    if layout not in (None, "high", "low"):
        raise ValueError(f"layout must be 'high', 'low' or None, not {layout!r}")
    high = high_rate(k, m) if layout is None else layout == "high"
    encode = _encode_high if high else _encode_low
    recovery = encode(kern, symbols, m)
    return [row.tobytes() for row in _leopard.from_symbols(recovery)]


def _encode_high(kern: Kernel, symbols: np.ndarray, m: int) -> np.ndarray:
    k, width = symbols.shape
    chunk = _pow2(m)
    rows = -(-k // chunk) * chunk
    work = np.zeros((rows, width), np.uint16)
    work[:k] = symbols
    kern.ifft(work, 0, chunk, min(k, chunk), chunk)
    for start in range(chunk, rows, chunk):
        kern.ifft(work, start, chunk, min(k - start, chunk), start + chunk)
        work[:chunk] ^= work[start : start + chunk]
    kern.fft(work, 0, chunk, m, 0)
    return work[:m]


def _encode_low(kern: Kernel, symbols: np.ndarray, m: int) -> np.ndarray:
    k, width = symbols.shape
    chunk = _pow2(k)
    rows = -(-m // chunk) * chunk
    work = np.zeros((max(rows, chunk), width), np.uint16)
    work[:k] = symbols
    kern.ifft(work, 0, chunk, k, 0)
    for start in range(chunk, rows, chunk):
        work[start : start + chunk] = work[:chunk]
    for start in range(0, rows, chunk):
        kern.fft(work, start, chunk, min(m - start, chunk), start + chunk)
    return work[:m]


def gf16_recover(
    shards: Sequence[BytesLike | None], data_count: int, backend: str | None = None
) -> list[bytes]:
    """The `data_count` data shards of a block from any k of its k + m shards (None = lost).

    `shards` is the whole block in order, data then recovery, so m = len(shards) - k.
    Raises UnrecoverableBlock when fewer than k arrived, ValueError for a malformed block.
    """
    k = data_count
    m = len(shards) - k
    check_shape(k, max(m, 1))
    present = [i for i, s in enumerate(shards) if s is not None]
    if len({memoryview(shards[i]).nbytes for i in present}) > 1:  # type: ignore[arg-type]
        raise ValueError("all shards of a block must have the same length")
    if len(present) < k:
        raise UnrecoverableBlock(len(present), k, len(shards))
    if all(shards[i] is not None for i in range(k)):
        return [bytes(s) for s in shards[:k]]  # type: ignore[arg-type]
    stacked = _leopard.to_symbols(_stack([shards[i] for i in present]))  # type: ignore[misc]
    got = dict(zip(present, stacked, strict=True))
    high = high_rate(k, m)
    # Field point of data shard i and recovery shard j in this layout.
    if high:
        chunk = _pow2(m)
        data_at, rec_at, end = chunk, 0, chunk + k
    else:
        chunk = _pow2(k)
        data_at, rec_at, end = 0, chunk, chunk + m
    rows = _pow2(end)
    erased = np.zeros(_leopard.ORDER, np.int64)
    if high:
        erased[m:chunk] = 1  # recovery points the sender never sends
    else:
        erased[end:] = 1  # the points past the code are erasures of the low-rate layout
    work = np.zeros((rows, stacked.shape[1]), np.uint16)
    for i in range(k + m):
        point = data_at + i if i < k else rec_at + i - k
        if i in got:
            work[point] = got[i]
        else:
            erased[point] = 1
    kern = _leopard.kernel(backend)
    logs = kern.erasure_logs(erased, end if high else _leopard.ORDER)
    points = np.flatnonzero(erased[:end] == 0)
    kern.scale(work, points, logs[points])
    kern.ifft(work, 0, rows, end, 0)
    kern.formal_derivative(work)
    kern.fft(work, 0, rows, end, 0)
    missing = np.array([data_at + i for i in range(k) if i not in got])
    kern.scale(work, missing, _leopard.MODULUS - logs[missing])
    out = _leopard.from_symbols(work[missing])
    rebuilt = dict(zip((p - data_at for p in missing), out, strict=True))
    return [bytes(shards[i]) if i in got else rebuilt[i].tobytes() for i in range(k)]  # type: ignore[arg-type]
