"""The multiply-accumulate kernels: native (every ISA this CPU has) == numpy == a reference.

The reference multiplies with the 64 KiB product table one shard at a time, the simplest correct
form; the numpy backend and every native ISA path must equal it byte for byte, including
lengths that leave ragged SIMD tails and matrices with zero and one coefficients.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punktfunk.fec import available_backends, get_backend
from punktfunk.fec._gf import INV, MUL, SingularMatrixError, invert

BACKENDS = available_backends()
NATIVE = [name for name in BACKENDS if name.startswith("native")]


def reference(matrix: np.ndarray, shards: list[np.ndarray]) -> list[bytes]:
    out = []
    for row in matrix:
        acc = np.zeros(shards[0].size, dtype=np.uint8)
        for coefficient, shard in zip(row, shards, strict=True):
            acc ^= MUL[coefficient][shard]
        out.append(acc.tobytes())
    return out


def test_native_kernel_is_built() -> None:
    """CI must build the extension (setup.py); only an explicit opt-out accepts numpy alone."""
    if os.environ.get("PUNKTFUNK_FEC_ALLOW_NUMPY_ONLY") == "1":
        pytest.skip("numpy-only run requested")
    assert "native" in BACKENDS, "punktfunk.fec._gf8 not built: run setup.py build_ext"


def test_field_tables() -> None:
    assert MUL[2, 0x80] == 0x1D  # x * x^7 = x^8 = x^4 + x^3 + x^2 + 1
    assert all(MUL[a, INV[a]] == 1 for a in range(1, 256))
    assert (MUL == MUL.T).all()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_invert_roundtrip(size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while True:
        matrix = rng.integers(0, 256, (size, size), dtype=np.uint8)
        try:
            inverse = invert(matrix)
        except SingularMatrixError:
            continue
        break
    product = np.frombuffer(b"".join(reference(matrix, list(inverse))), np.uint8)
    assert (product.reshape(size, size) == np.eye(size, dtype=np.uint8)).all()


def test_invert_pivots_and_rejects_singular() -> None:
    swap = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    assert (invert(swap) == swap).all()
    with pytest.raises(SingularMatrixError):
        invert(np.array([[1, 2], [2, 4]], dtype=np.uint8))  # row 2 = 2 * row 1


lengths = st.one_of(
    st.integers(1, 300),
    st.sampled_from([15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 96, 97, 1392]),
)


@settings(max_examples=250, deadline=None)
@given(
    rows=st.integers(1, 11),
    cols=st.integers(1, 20),
    length=lengths,
    seed=st.integers(0, 2**32 - 1),
)
def test_backends_equal_reference(rows: int, cols: int, length: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    matrix[rng.random((rows, cols)) < 0.15] = 0
    matrix[rng.random((rows, cols)) < 0.15] = 1
    shards = [rng.integers(0, 256, length, dtype=np.uint8) for _ in range(cols)]
    expected = reference(matrix, shards)
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.gemm(backend.prepare(matrix), shards) == expected, name


@pytest.mark.parametrize("name", BACKENDS)
def test_accepts_every_buffer_type(name: str) -> None:
    backend = get_backend(name)
    rng = np.random.default_rng(7)
    matrix = rng.integers(1, 256, (3, 5), dtype=np.uint8)
    raw = [rng.integers(0, 256, 40, dtype=np.uint8).tobytes() for _ in range(5)]
    expected = backend.gemm(backend.prepare(matrix), raw)
    big = bytearray(b"".join(raw))
    mixed = [
        raw[0],
        bytearray(raw[1]),
        memoryview(big)[80:120],  # a slice of a larger buffer, read in place
        np.frombuffer(raw[3], dtype=np.uint8),
        np.frombuffer(raw[4], dtype=np.uint32),  # any contiguous buffer counts by bytes
    ]
    assert backend.gemm(backend.prepare(matrix), mixed) == expected


@pytest.mark.parametrize("name", BACKENDS)
def test_gemm_into_writes_caller_buffers(name: str) -> None:
    backend = get_backend(name)
    rng = np.random.default_rng(8)
    matrix = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    shards = [rng.integers(0, 256, 77, dtype=np.uint8) for _ in range(4)]
    packet = bytearray(3 * 100)  # e.g. parity written behind per-packet headers
    targets = [memoryview(packet)[i * 100 + 23 : (i + 1) * 100] for i in range(3)]
    backend.gemm_into(backend.prepare(matrix), shards, targets)
    assert [t.tobytes() for t in targets] == reference(matrix, shards)
    assert all(packet[i * 100 : i * 100 + 23] == bytes(23) for i in range(3))


@pytest.mark.parametrize("name", BACKENDS)
def test_rejects_bad_shapes(name: str) -> None:
    backend = get_backend(name)
    prepared = backend.prepare(np.ones((2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="same length"):
        backend.gemm(prepared, [b"abc", b"abc", b"ab"])
    with pytest.raises(ValueError):
        backend.gemm(prepared, [b"abc", b"abc"])
    with pytest.raises(ValueError, match="empty"):
        backend.gemm(prepared, [b"", b"", b""])
    with pytest.raises(ValueError):
        backend.gemm_into(prepared, [b"abc"] * 3, [bytearray(3)])
    with pytest.raises(ValueError):
        backend.gemm_into(prepared, [b"abc"] * 3, [bytearray(3), bytearray(4)])
    with pytest.raises((BufferError, TypeError, ValueError)):
        backend.gemm_into(prepared, [b"abc"] * 3, [bytearray(3), b"xyz"])
    strided = memoryview(bytearray(6))[::2]
    with pytest.raises((BufferError, ValueError)):
        backend.gemm(prepared, [b"abc", b"abc", strided])


@pytest.mark.skipif(not NATIVE, reason="native kernel not built")
def test_native_releases_gil_and_is_thread_safe() -> None:
    """Several threads encoding at once (GIL released in C) must each get the right bytes."""
    backend = get_backend("native")
    rng = np.random.default_rng(9)
    matrix = rng.integers(0, 256, (8, 40), dtype=np.uint8)
    shards = [rng.integers(0, 256, 1392, dtype=np.uint8).tobytes() for _ in range(40)]
    prepared = backend.prepare(matrix)
    expected = reference(matrix, [np.frombuffer(s, np.uint8) for s in shards])
    failures: list[int] = []

    def work(index: int) -> None:
        for _ in range(30):
            if backend.gemm(prepared, shards) != expected:
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


@pytest.mark.skipif(not NATIVE, reason="native kernel not built")
def test_native_expand_tables() -> None:
    from punktfunk.fec import _gf8

    tables = _gf8.expand(bytes(range(256)))
    for m in range(256):
        entry = tables[m * 32 : (m + 1) * 32]
        assert list(entry[:16]) == [MUL[m, x] for x in range(16)]
        assert list(entry[16:]) == [MUL[m, x << 4] for x in range(16)]
    with pytest.raises(ValueError, match="not available"):
        _gf8.gemm(tables[:32], [b"a"], 1, "no-such-isa")
