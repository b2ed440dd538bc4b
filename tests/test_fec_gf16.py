"""GF(2^16) Leopard-RS (FEC scheme 1): golden parity, an independent construction, recovery.

The Rust host's `crates/core/punktfunk-core/src/fec/gf16.rs` encodes with the reed-solomon-simd
crate; its own golden vectors (`src/test_util.rs`, SHA-256 of the recovery shards of
ChaCha8-generated data) are copied into tests/data/fec_gf16_golden.json with their source and
commit, together with video-shaped blocks computed by that crate. Every vector must reproduce
on both backends (the C kernel and the numpy fallback).

Independently of the crate's table construction, the test rebuilds the code from its definition:
symbols are field elements written in the Cantor basis over GF(2)[x]/0x1002D, data shard i of a
high-rate block sits at point C + i (C = m rounded up to a power of two) and recovery shard j at
point j; every C-wide data chunk is interpolated by the polynomial of degree < C through its
points, and recovery j is the sum of those polynomials at j. The parity from that slow Lagrange
evaluation must equal gf16_parity's, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from punktfunk.fec import UnrecoverableBlock, gf16_parity, gf16_recover
from punktfunk.fec._leopard import native_isas
from punktfunk.fec.gf16 import high_rate

GOLDEN = json.loads((Path(__file__).parent / "data" / "fec_gf16_golden.json").read_text())
# Every path: the kernel's best ISA, each ISA pinned, and the numpy fallback.
NATIVE = ["native", *(f"native-{isa}" for isa in native_isas())] if native_isas() else []
BACKENDS = [*NATIVE, "numpy"]


def chacha8(seed: int, nbytes: int) -> bytes:
    """rand_chacha's ChaCha8Rng::from_seed([seed; 32]) keystream (64-bit block counter from 0)."""
    blocks = -(-nbytes // 64)
    state = np.zeros((16, blocks), np.uint32)
    state[0:4] = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], np.uint32)[:, None]
    state[4:12] = np.frombuffer(bytes([seed]) * 32, "<u4")[:, None]
    counter = np.arange(blocks, dtype=np.uint64)
    state[12], state[13] = counter & 0xFFFFFFFF, counter >> 32
    x = state.copy()

    def quarter(a: int, b: int, c: int, d: int) -> None:
        for p, q, r, rot in ((a, b, d, 16), (c, d, b, 12), (a, b, d, 8), (c, d, b, 7)):
            x[p] += x[q]
            x[r] ^= x[p]
            x[r] = (x[r] << np.uint32(rot)) | (x[r] >> np.uint32(32 - rot))

    for _ in range(4):  # 8 rounds
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
            quarter(a, b, c, d)
        for a, b, c, d in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            quarter(a, b, c, d)
    return (x + state).T.astype("<u4").tobytes()[:nbytes]


def original(k: int, shard_bytes: int, seed: int) -> list[bytes]:
    """test_util.rs generate_original: one ChaCha8 stream filling each shard in turn."""
    stream = chacha8(seed, k * shard_bytes)
    return [stream[i * shard_bytes : (i + 1) * shard_bytes] for i in range(k)]


def sha(shards: list[bytes]) -> str:
    return hashlib.sha256(b"".join(shards)).hexdigest()


def _small(v: dict) -> bool:
    return v["k"] + v["m"] <= 4096


def test_chacha8_is_rand_chacha():
    # rand_chacha's ChaCha8 with an all-zero seed: the first block (chacha.rs test vectors).
    assert chacha8(0, 16).hex() == "3e00ef2f895f40d67f5bb8e81f09a5a1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_crate_golden_vectors_reproduce(backend: str):
    """Every recovery hash of reed-solomon-simd's test_util.rs, in the layout it pins."""
    checked = 0
    for v in GOLDEN["crate_vectors"]:
        if backend != "native" and not _small(v):
            continue  # the 30000+ shard blocks run once, on the best path (seconds in numpy)
        data = original(v["k"], v["shard_bytes"], v["seed"])
        layouts = {"default": [None], "either": ["high", "low"]}.get(v["rate"], [v["rate"]])
        for layout in layouts:
            got = gf16_parity(data, v["m"], backend=backend, layout=layout)
            assert sha(got) == v["sha256"], (v["name"], layout)
            checked += 1
    assert checked >= (170 if backend == "native" else 150)


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_shaped_vectors_reproduce_and_recover(backend: str):
    """Blocks a 1080p60 host sends (1392-byte shards: a 48-byte tail chunk), from the crate."""
    rng = random.Random(5)
    for v in GOLDEN["video_vectors"]:
        k, m = v["k"], v["m"]
        data = original(k, v["shard_bytes"], v["seed"])
        recovery = gf16_parity(data, m, backend=backend)
        assert sha(recovery) == v["sha256"], v["name"]
        if "recovery_hex" in v:
            assert [r.hex() for r in recovery] == v["recovery_hex"]
        shards: list[bytes | None] = [*data, *recovery]
        for i in rng.sample(range(k + m), m):
            shards[i] = None
        assert gf16_recover(shards, k, backend=backend) == data, v["name"]


class Field:
    """GF(2^16) from scratch: polynomial basis over 0x1002D, elements written in Cantor basis."""

    CANTOR = (0x0001, 0xACCA, 0x3C0E, 0x163E, 0xC582, 0xED2E, 0x914C, 0x4012,
              0x6C98, 0x10D8, 0x6A72, 0xB900, 0xFDB8, 0xFB34, 0xFF38, 0x991E)  # fmt: skip

    def __init__(self) -> None:
        exp = np.zeros(2 * 65535, np.int64)
        v = 1
        for i in range(65535):  # powers of x, reduced by x^16 + x^5 + x^3 + x^2 + 1
            exp[i] = v
            v <<= 1
            if v & 0x10000:
                v ^= 0x1002D
        assert v == 1 and len(set(exp[:65535].tolist())) == 65535  # x generates the group
        exp[65535:] = exp[:65535]
        self.exp = exp
        self.log = np.zeros(65536, np.int64)
        self.log[exp[:65535]] = np.arange(65535)
        # Cantor coordinates -> polynomial element, and back (the change of basis is linear).
        to_poly = np.zeros(65536, np.int64)
        for bit, basis in enumerate(self.CANTOR):
            to_poly[1 << bit : 2 << bit] = to_poly[: 1 << bit] ^ basis
        assert len(set(to_poly.tolist())) == 65536  # the 16 vectors are a basis
        self.to_poly = to_poly
        self.from_poly = np.argsort(to_poly)

    def lagrange(self, points: np.ndarray, at: np.ndarray) -> np.ndarray:
        """log of L_t(x) for each x in `at` (rows) and interpolation point t (columns)."""
        p, x = self.to_poly[points], self.to_poly[at]
        diff = p[:, None] ^ p[None, :]
        np.fill_diagonal(diff, 1)  # log 1 = 0: the product skips s == t
        denominator = self.log[diff].sum(1)  # log of prod over s != t of (p_t - p_s)
        numerator = self.log[x[:, None] ^ p[None, :]]
        return (numerator.sum(1)[:, None] - numerator - denominator[None, :]) % 65535

    def combine(self, logs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """sum over t of exp(logs[j, t]) * symbols[t] (Cantor-coordinate symbols in and out)."""
        poly = self.to_poly[symbols]
        out = np.zeros((logs.shape[0], symbols.shape[1]), np.int64)
        for t in range(symbols.shape[0]):
            nz = poly[t] != 0
            out[:, nz] ^= self.exp[logs[:, t][:, None] + self.log[poly[t][nz]][None, :]]
        return self.from_poly[out]


def symbols_of(shard: bytes) -> np.ndarray:
    """reed-solomon-simd's byte layout: per 64 bytes, 32 low bytes then 32 high bytes."""
    assert len(shard) % 64 == 0
    chunks = np.frombuffer(shard, np.uint8).reshape(-1, 2, 32).astype(np.int64)
    return (chunks[:, 0, :] | chunks[:, 1, :] << 8).reshape(-1)


def bytes_of(symbols: np.ndarray) -> bytes:
    chunks = symbols.reshape(-1, 32)
    return np.stack([chunks & 0xFF, chunks >> 8], 1).astype(np.uint8).tobytes()


def lagrange_parity(field: Field, data: list[bytes], m: int) -> list[bytes]:
    """High-rate recovery shards by plain interpolation (no FFT, no crate tables)."""
    k, chunk = len(data), 1 << (m - 1).bit_length()
    assert high_rate(k, m)
    symbols = np.stack([symbols_of(s) for s in data])
    padded = np.zeros((-(-k // chunk) * chunk, symbols.shape[1]), np.int64)
    padded[:k] = symbols
    total = np.zeros((m, symbols.shape[1]), np.int64)
    for start in range(0, len(padded), chunk):
        points = np.arange(chunk + start, 2 * chunk + start)
        logs = field.lagrange(points, np.arange(m))
        total ^= field.to_poly[field.combine(logs, padded[start : start + chunk])]
    return [bytes_of(row) for row in field.from_poly[total]]


@pytest.fixture(scope="module")
def field() -> Field:
    return Field()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("k", "m"), [(3, 2), (16, 4), (220, 33), (1100, 110)])
def test_parity_equals_independent_lagrange_construction(field: Field, backend: str, k, m):
    rng = random.Random(k)
    data = [rng.randbytes(128) for _ in range(k)]
    assert gf16_parity(data, m, backend=backend) == lagrange_parity(field, data, m)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_any_k_of_a_large_block_and_refuses_fewer(backend: str):
    rng = random.Random(3)
    k, m = 1200, 120
    data = [rng.randbytes(96) for _ in range(k)]  # 96 = one whole chunk and a 32-byte tail
    recovery = gf16_parity(data, m, backend=backend)
    for lost in (rng.sample(range(k), m), rng.sample(range(k + m), m), list(range(m))):
        shards: list[bytes | None] = [*data, *recovery]
        for i in lost:
            shards[i] = None
        assert gf16_recover(shards, k, backend=backend) == data
    shards = [*data, *recovery]
    for i in rng.sample(range(k + m), m + 1):
        shards[i] = None
    with pytest.raises(UnrecoverableBlock):
        gf16_recover(shards, k, backend=backend)


def test_backends_agree_on_low_rate_blocks_and_bad_shapes_raise():
    rng = random.Random(4)
    data = [rng.randbytes(34) for _ in range(5)]
    assert not high_rate(5, 40)
    native, slow = gf16_parity(data, 40, backend="native"), gf16_parity(data, 40, backend="numpy")
    assert native == slow
    shards: list[bytes | None] = [None] * 5 + list(native)
    assert gf16_recover(shards, 5, backend="native") == data
    with pytest.raises(ValueError):
        gf16_parity([b"abc", b"def"], 1)  # odd shard length
    with pytest.raises(ValueError):
        gf16_parity([b"ab", b"abcd"], 1)  # unequal lengths
    with pytest.raises(ValueError):
        gf16_parity([b"ab"] * 65000, 4096)  # past what the field can address


def _rust_pattern(k: int, shard_len: int) -> list[bytes]:
    """fec/mod.rs tests' data: byte b of shard i is (i * 31 + b * 7) as u8."""
    return [bytes((i * 31 + b * 7) & 0xFF for b in range(shard_len)) for i in range(k)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("k", "m", "size", "lose_data", "lose_recovery"),
    [
        (16, 4, 256, [1, 9], [3]),  # gf16_reconstruct_into_fills_only_the_holes
        (4, 2, 16, [0, 3], []),
        (4, 2, 16, [], [0, 1]),
        (16, 4, 256, [1, 9], [1, 2]),  # gf16_recovers_within_budget: lose 1, 9, 17, 18
    ],
)
def test_rust_fec_module_round_trips(backend: str, k, m, size, lose_data, lose_recovery):
    """The GF(2^16) cases of punktfunk-core/src/fec/mod.rs (commit 38d32483a8ce)."""
    data = _rust_pattern(k, size)
    recovery = gf16_parity(data, m, backend=backend)
    shards: list[bytes | None] = [*data, *recovery]
    for i in [*lose_data, *(k + j for j in lose_recovery)]:
        shards[i] = None
    assert gf16_recover(shards, k, backend=backend) == data
    # reconstruct_rejects_*: too few shards, and shards of unequal length.
    with pytest.raises(UnrecoverableBlock):
        gf16_recover([bytes(8), None, None, None], 2, backend=backend)
    with pytest.raises(ValueError):
        gf16_recover([bytes(8), bytes(6), None, None], 2, backend=backend)
