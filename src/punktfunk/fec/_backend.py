"""The two implementations of the bulk multiply-accumulate, and the choice between them.

`native` is the C kernel (punktfunk.fec._gf8, split-nibble tables, SSSE3/AVX2 picked at run time);
`numpy` is the vectorised fallback used when the extension was not built. Both compute
out[r] = XOR_c m[r][c] * in[c] over GF(2^8) and are tested byte for byte against each other.
The default is chosen once, on first use, and logged; callers (tests, bench) can name either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, cast

import numpy as np

from punktfunk.fec import _gf

_log = logging.getLogger(__name__)

# Anything exposing a contiguous buffer: bytes, bytearray, memoryview, numpy arrays, mmap...
# (collections.abc.Buffer only exists from Python 3.12.)
BytesLike: TypeAlias = bytes | bytearray | memoryview | np.ndarray


@dataclass(frozen=True, slots=True)
class Prepared:
    """A coefficient matrix in the form one backend multiplies with; build once, reuse."""

    rows: int
    cols: int
    payload: object


class Backend(Protocol):
    """What the codecs need from a multiply-accumulate implementation."""

    name: str

    def prepare(self, matrix: np.ndarray) -> Prepared:
        """Precompute per-matrix tables for a rows x cols uint8 coefficient matrix."""
        ...

    def gemm(self, prepared: Prepared, inputs: Sequence[BytesLike]) -> list[bytes]:
        """Return the `rows` output shards for `cols` equal-length input shards."""
        ...

    def gemm_into(
        self, prepared: Prepared, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]
    ) -> None:
        """Write the output shards into caller-provided writable buffers."""
        ...


class NativeBackend:
    """The C kernel. `isa` pins 'scalar', 'ssse3' or 'avx2' (tests); None uses the CPU's best."""

    def __init__(self, isa: str | None = None) -> None:
        from punktfunk.fec import _gf8  # ImportError here means the extension is not built

        if isa is not None and isa not in _gf8.ISAS:
            raise ValueError(f"isa {isa!r} not available on this CPU; have {_gf8.ISAS}")
        self._gf8 = _gf8
        self.isa: str = isa or _gf8.ISA
        self.name = "native" if isa is None else f"native-{isa}"

    def prepare(self, matrix: np.ndarray) -> Prepared:
        """Expand every coefficient into its 32 bytes of nibble tables (done in C)."""
        rows, cols = matrix.shape
        return Prepared(rows, cols, self._gf8.expand(np.ascontiguousarray(matrix, np.uint8)))

    def gemm(self, prepared: Prepared, inputs: Sequence[BytesLike]) -> list[bytes]:
        """Outputs are new bytes objects the kernel fills in place; shapes are checked in C."""
        return self._gf8.gemm(prepared.payload, inputs, prepared.rows, self.isa)

    def gemm_into(
        self, prepared: Prepared, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]
    ) -> None:
        """Zero-copy both ways: the kernel reads and writes the callers' buffers directly."""
        if len(outputs) != prepared.rows:
            raise ValueError(f"expected {prepared.rows} output buffers, got {len(outputs)}")
        self._gf8.gemm_into(prepared.payload, inputs, outputs, self.isa)


class NumpyBackend:
    """Pure numpy: one table gather per input shard (see _gf.gemm)."""

    name = "numpy"

    def prepare(self, matrix: np.ndarray) -> Prepared:
        """Keep the matrix as offsets into the flattened product table."""
        rows, cols = matrix.shape
        return Prepared(rows, cols, _gf.mul_offsets(matrix))

    def gemm(self, prepared: Prepared, inputs: Sequence[BytesLike]) -> list[bytes]:
        """Compute into one array, then hand out each row as bytes."""
        return [row.tobytes() for row in self._product(prepared, inputs)]

    def gemm_into(
        self, prepared: Prepared, inputs: Sequence[BytesLike], outputs: Sequence[BytesLike]
    ) -> None:
        """Compute, then copy each row into its output buffer (after checking them all)."""
        if len(outputs) != prepared.rows:
            raise ValueError(f"expected {prepared.rows} output buffers, got {len(outputs)}")
        result = self._product(prepared, inputs)
        targets = [np.frombuffer(buf, dtype=np.uint8) for buf in outputs]
        for index, target in enumerate(targets):
            if not target.flags.writeable:
                raise BufferError(f"output {index} is not writable")
            if target.size != result.shape[1]:
                raise ValueError(
                    f"output {index} is {target.size} bytes but the shards are {result.shape[1]}"
                )
        for target, row in zip(targets, result, strict=True):
            target[...] = row

    @staticmethod
    def _product(prepared: Prepared, inputs: Sequence[BytesLike]) -> np.ndarray:
        if len(inputs) != prepared.cols:
            raise ValueError(
                f"a {prepared.rows} x {prepared.cols} matrix needs {prepared.cols} input shards, "
                f"got {len(inputs)}"
            )
        arrays = as_uint8_arrays(inputs)
        return _gf.gemm(cast(np.ndarray, prepared.payload), arrays, arrays[0].size)


def as_uint8_arrays(shards: Sequence[BytesLike]) -> list[np.ndarray]:
    """Zero-copy uint8 views of the shards, checking they all have the first one's length."""
    arrays = [np.frombuffer(shard, dtype=np.uint8) for shard in shards]
    length = arrays[0].size
    if length == 0:
        raise ValueError("shards must not be empty")
    for index, array in enumerate(arrays):
        if array.size != length:
            raise ValueError(
                f"shard {index} is {array.size} bytes but shard 0 is {length}; "
                "all shards of a block must have the same length"
            )
    return arrays


_backends: dict[str, Backend] = {}
_default: Backend | None = None


def available_backends() -> list[str]:
    """Names accepted by get_backend() on this machine: native ISAs first, then numpy."""
    try:
        from punktfunk.fec import _gf8
    except ImportError:
        return ["numpy"]
    return ["native", *(f"native-{isa}" for isa in reversed(_gf8.ISAS)), "numpy"]


def get_backend(name: str) -> Backend:
    """A backend by name ('native', 'native-<isa>', 'numpy'); ImportError if not built."""
    backend = _backends.get(name)
    if backend is None:
        if name == "numpy":
            backend = NumpyBackend()
        elif name == "native":
            backend = NativeBackend()
        elif name.startswith("native-"):
            backend = NativeBackend(name.removeprefix("native-"))
        else:
            raise ValueError(f"unknown FEC backend {name!r}; choose from {available_backends()}")
        _backends[name] = backend
    return backend


def default_backend() -> Backend:
    """The native kernel when it was built, else numpy; chosen once and logged."""
    global _default
    if _default is None:
        try:
            native = NativeBackend()
        except ImportError as exc:
            _default = get_backend("numpy")
            _log.warning("fec_backend name=numpy reason=%r (native kernel not built)", str(exc))
        else:
            _default = _backends.setdefault("native", native)
            _log.info("fec_backend name=native isa=%s", native.isa)
    return _default


def resolve(backend: Backend | str | None) -> Backend:
    """Turn the `backend=` argument of the public functions into a Backend."""
    if backend is None:
        return _default if _default is not None else default_backend()
    if isinstance(backend, str):
        return get_backend(backend)
    return backend
