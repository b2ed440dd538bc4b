"""Layout pinning for the ABI structs: size and every field offset are asserted at import.

A drift raises ImportError at `import punktfunk.proto`, the Python analogue of the original
crate's compile-time `size_of`/`offset_of!` asserts.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping


class AbiDriftError(ImportError):
    """A struct no longer matches its pinned wire layout."""


class LE(ctypes.LittleEndianStructure):
    """Base for every ABI struct: little-endian, packed by explicit padding fields only."""

    _pack_ = 1


def pin(struct: type[ctypes.Structure], size: int, offsets: Mapping[str, int]) -> None:
    """Assert `struct` is `size` bytes and every named field sits at its pinned offset.

    Every declared field must be pinned (padding fields start with '_'), so adding a field
    without pinning it is a drift too.
    """
    actual = ctypes.sizeof(struct)
    if actual != size:
        raise AbiDriftError(f"{struct.__name__}: size {actual} != pinned {size}")
    declared = [name for name, *_ in struct._fields_ if not name.startswith("_")]
    unpinned = [name for name in declared if name not in offsets]
    if unpinned:
        raise AbiDriftError(f"{struct.__name__}: fields without a pinned offset: {unpinned}")
    for name, offset in offsets.items():
        got = getattr(struct, name).offset
        if got != offset:
            raise AbiDriftError(f"{struct.__name__}.{name}: offset {got} != pinned {offset}")


def layout(struct: type[ctypes.Structure]) -> dict[str, int]:
    """Offsets of the public fields, for self-checks and docs."""
    return {name: getattr(struct, name).offset for name, *_ in struct._fields_ if name[0] != "_"}
