"""GF(2^16) Leopard-RS arithmetic as the `reed-solomon-simd` crate (v3) computes it, in numpy.

The field is GF(2)[x] / 0x1002D with elements written in the Cantor basis below, so that the
additive FFT over the subspace spanned by the first j basis vectors is a plain butterfly network
(Lin, Chung and Han, "Novel polynomial basis"). Multiplication goes through log/exp tables;
`skew` holds the log of each butterfly's twiddle factor and `log_walsh` the Walsh transform of
the log table that the erasure-locator evaluation uses. Every table is built exactly as the
crate's `engine/tables.rs` builds it, so parity agrees byte for byte.

Work arrays are (rows, symbols) uint16: one row per shard, one column per 16-bit symbol. Each
symbol position is an independent codeword, so column order is free; `to_symbols` and
`from_symbols` map a shard's bytes to its symbols the crate's way (per 64-byte chunk: 32 low
bytes then 32 high bytes; a shorter tail: its first half low bytes, its second half high bytes).
"""

from __future__ import annotations

import logging
from functools import cache

import numpy as np

_log = logging.getLogger(__name__)

BITS = 16
ORDER = 1 << BITS
MODULUS = ORDER - 1
POLYNOMIAL = 0x1002D
CANTOR_BASIS = (
    0x0001, 0xACCA, 0x3C0E, 0x163E, 0xC582, 0xED2E, 0x914C, 0x4012,
    0x6C98, 0x10D8, 0x6A72, 0xB900, 0xFDB8, 0xFB34, 0xFF38, 0x991E,
)  # fmt: skip

# log of 0 and the "multiply by zero" twiddle map past every real sum into a zero-filled tail
# of the exp table, so one gather multiplies without a branch.
_ZERO_LOG = 2 * MODULUS


class Tables:
    """The crate's exp/log, skew and log-Walsh tables (plus the branch-free product tables)."""

    def __init__(self) -> None:
        exp = np.zeros(ORDER, np.int64)
        state = 1
        for i in range(MODULUS):  # exp[] is first the LFSR's log table, as in tables.rs
            exp[state] = i
            state <<= 1
            if state >= ORDER:
                state ^= POLYNOMIAL
        exp[0] = MODULUS
        log = np.zeros(ORDER, np.int64)
        for i, basis in enumerate(CANTOR_BASIS):  # Cantor-basis element -> polynomial element
            width = 1 << i
            log[width : 2 * width] = log[:width] ^ basis
        log = exp[log]
        exp = np.zeros(ORDER, np.int64)
        exp[log] = np.arange(ORDER)
        exp[MODULUS] = exp[0]
        self.exp, self.log = exp, log
        self.skew = self._skew()
        walsh = log.copy()
        walsh[0] = 0
        self.log_walsh = fwht(walsh)
        self.log32 = log.astype(np.int32)
        self.log32[0] = _ZERO_LOG
        self.exp_ext = np.zeros(4 * MODULUS + 2, np.uint16)
        self.exp_ext[: 2 * MODULUS] = np.tile(exp[:MODULUS], 2)

    def mul(self, x: int, log_m: int) -> int:
        """One product x * exp(log_m), as tables.rs `mul`."""
        return 0 if x == 0 else int(self.exp[(int(self.log[x]) + log_m) % MODULUS])

    def _skew(self) -> np.ndarray:
        skew = np.zeros(MODULUS, np.int64)
        temp = [1 << i for i in range(1, BITS)]
        for m in range(BITS - 1):
            step = 1 << (m + 1)
            skew[(1 << m) - 1] = 0
            for i in range(m, BITS - 1):
                s = 1 << (i + 1)
                start = (1 << m) - 1
                skew[start + s : 2 * s : step] = skew[start:s:step] ^ temp[i]
            temp[m] = MODULUS - int(self.log[self.mul(temp[m], int(self.log[temp[m] ^ 1]))])
            for i in range(m + 1, BITS - 1):
                total = (int(self.log[temp[i] ^ 1]) + temp[m]) % MODULUS
                temp[i] = self.mul(temp[i], total)
        return self.log[skew]


@cache
def tables() -> Tables:
    """Built on first use (about a tenth of a second), then shared."""
    return Tables()


def fwht(values: np.ndarray) -> np.ndarray:
    """Walsh-Hadamard transform mod 2^16 - 1 of a length-65536 int64 vector (a new array)."""
    data = values % MODULUS
    dist = 1
    while dist < ORDER:
        view = data.reshape(-1, 2, dist)
        a, b = view[:, 0, :].copy(), view[:, 1, :]
        view[:, 0, :] = (a + b) % MODULUS
        view[:, 1, :] = (a - b) % MODULUS
        dist *= 2
    return data


def mul_rows(t: Tables, rows: np.ndarray, log_m: np.ndarray) -> np.ndarray:
    """rows[j] * exp(log_m[j]) for a (blocks, ..., symbols) array; log_m is per block."""
    shape = (-1,) + (1,) * (rows.ndim - 1)
    return t.exp_ext[t.log32[rows] + log_m.reshape(shape)]


def _twiddles(t: Tables, blocks: int, dist: int, skew_delta: int) -> np.ndarray:
    idx = np.arange(blocks) * 2 * dist + (dist + skew_delta - 1)
    log_m = t.skew[idx].astype(np.int32)
    log_m[log_m == MODULUS] = _ZERO_LOG  # a zero twiddle: the product must vanish
    return log_m


def fft(work: np.ndarray, pos: int, size: int, truncated: int, skew_delta: int) -> None:
    """numpy: in-place additive FFT of work[pos:pos+size], outputs needed only below `truncated`."""
    t = tables()
    dist = size // 2
    while dist > 0:
        blocks = -(-truncated // (2 * dist))
        view = work[pos : pos + blocks * 2 * dist].reshape(blocks, 2, dist, -1)
        a, b = view[:, 0], view[:, 1]
        a ^= mul_rows(t, b, _twiddles(t, blocks, dist, skew_delta))
        b ^= a
        dist //= 2


def ifft(work: np.ndarray, pos: int, size: int, truncated: int, skew_delta: int) -> None:
    """numpy: in-place inverse of fft(); inputs past `truncated` must be zero."""
    t = tables()
    dist = 1
    while dist < size:
        blocks = -(-truncated // (2 * dist))
        view = work[pos : pos + blocks * 2 * dist].reshape(blocks, 2, dist, -1)
        a, b = view[:, 0], view[:, 1]
        b ^= a
        a ^= mul_rows(t, b, _twiddles(t, blocks, dist, skew_delta))
        dist *= 2


def formal_derivative(work: np.ndarray) -> None:
    """The novel-basis formal derivative, in place (utils.rs `formal_derivative`)."""
    for i in range(1, work.shape[0]):
        width = i & -i
        work[i - width : i] ^= work[i : i + width]


def to_symbols(shards: np.ndarray) -> np.ndarray:
    """(n, L) shard bytes -> (n, L/2) uint16 symbols in the crate's chunk layout."""
    n, length = shards.shape
    whole = length // 64 * 64
    body = shards[:, :whole].reshape(n, -1, 2, 32)
    half = (length - whole) // 2
    lo = np.concatenate([body[:, :, 0, :].reshape(n, -1), shards[:, whole : whole + half]], 1)
    hi = np.concatenate([body[:, :, 1, :].reshape(n, -1), shards[:, whole + half :]], 1)
    return lo.astype(np.uint16) | (hi.astype(np.uint16) << 8)


def from_symbols(symbols: np.ndarray) -> np.ndarray:
    """Inverse of to_symbols: (n, S) uint16 -> (n, 2S) bytes."""
    n, count = symbols.shape
    whole = count // 32 * 32
    lo = (symbols & 0xFF).astype(np.uint8)
    hi = (symbols >> 8).astype(np.uint8)
    out = np.empty((n, 2 * count), np.uint8)
    body = out[:, : 2 * whole].reshape(n, -1, 2, 32)
    body[:, :, 0, :] = lo[:, :whole].reshape(n, -1, 32)
    body[:, :, 1, :] = hi[:, :whole].reshape(n, -1, 32)
    tail = count - whole
    out[:, 2 * whole : 2 * whole + tail] = lo[:, whole:]
    out[:, 2 * whole + tail :] = hi[:, whole:]
    return out


class Kernel:
    """The transforms a codec runs: numpy here, the C module in NativeKernel."""

    name = "numpy"

    def fft(self, work: np.ndarray, pos: int, size: int, truncated: int, skew: int) -> None:
        fft(work, pos, size, truncated, skew)

    def ifft(self, work: np.ndarray, pos: int, size: int, truncated: int, skew: int) -> None:
        ifft(work, pos, size, truncated, skew)

    def formal_derivative(self, work: np.ndarray) -> None:
        formal_derivative(work)

    def erasure_logs(self, erased: np.ndarray, truncated: int = ORDER) -> np.ndarray:
        """log of the erasure locator's derivative at every point (utils.rs `eval_poly`).

        `truncated`: the flags are zero from there on (lets the native kernel skip work)."""
        spectrum = fwht(erased.astype(np.int64))
        return fwht(spectrum * tables().log_walsh % MODULUS)

    def scale(self, work: np.ndarray, rows: np.ndarray, logs: np.ndarray) -> None:
        """work[rows[j]] *= exp(logs[j]), logs in [0, MODULUS]."""
        work[rows] = mul_rows(tables(), work[rows], (logs % MODULUS).astype(np.int32))


class NativeKernel(Kernel):
    """punktfunk.fec._gf16 (built by setup.py); ImportError when it was not built.

    `isa` pins 'scalar' or 'avx2' (tests); None uses the CPU's best."""

    def __init__(self, isa: str | None = None) -> None:
        from punktfunk.fec import _gf16  # ImportError here means the extension is not built

        if isa is not None and isa not in _gf16.ISAS:
            raise ValueError(f"isa {isa!r} not available on this CPU; have {_gf16.ISAS}")
        self.isa: str = isa or _gf16.ISA
        self.name = "native" if isa is None else f"native-{isa}"

        t = tables()
        _gf16.init(t.log32, t.exp_ext, t.skew.astype(np.int32), t.log_walsh.astype(np.int64))
        self._c = _gf16

    def fft(self, work: np.ndarray, pos: int, size: int, truncated: int, skew: int) -> None:
        self._c.fft(work, work.shape[1], pos, size, truncated, skew, self.isa)

    def ifft(self, work: np.ndarray, pos: int, size: int, truncated: int, skew: int) -> None:
        self._c.ifft(work, work.shape[1], pos, size, truncated, skew, self.isa)

    def formal_derivative(self, work: np.ndarray) -> None:
        self._c.formal_derivative(work, work.shape[1])

    def erasure_logs(self, erased: np.ndarray, truncated: int = ORDER) -> np.ndarray:
        logs = np.array(erased, np.int64)
        self._c.erasure_logs(logs, truncated)
        return logs

    def scale(self, work: np.ndarray, rows: np.ndarray, logs: np.ndarray) -> None:
        self._c.scale(work, work.shape[1], rows.astype(np.int64), logs.astype(np.int64), self.isa)


_kernels: dict[str, Kernel] = {}


def native_isas() -> tuple[str, ...]:
    """The kernel's instruction sets on this CPU ('scalar', maybe 'avx2'); () if not built."""
    try:
        from punktfunk.fec import _gf16
    except ImportError:
        return ()
    return tuple(_gf16.ISAS)


def kernel(name: str | None) -> Kernel:
    """'native', 'native-<isa>', 'numpy', or None: native when built, else numpy (logged once)."""
    key = name or "default"
    found = _kernels.get(key)
    if found is not None:
        return found
    if name == "numpy":
        found = Kernel()
    elif name == "native":
        found = NativeKernel()
    elif name is not None and name.startswith("native-"):
        found = NativeKernel(name.removeprefix("native-"))
    elif name is None:
        try:
            found = NativeKernel()
        except ImportError as exc:
            found = Kernel()
            _log.warning(
                "fec_gf16_backend name=numpy reason=%r (native kernel not built)", str(exc)
            )
        else:
            _log.info("fec_gf16_backend name=native isa=%s", found.isa)
    else:
        raise ValueError(f"unknown GF(2^16) backend {name!r}; choose 'native' or 'numpy'")
    _kernels[key] = found
    return found
