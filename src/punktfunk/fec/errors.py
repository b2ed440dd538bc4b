"""Exceptions of the FEC package.

Bad arguments (shard counts, unequal lengths, block shapes) raise ValueError; FecError is for
blocks that are well-formed but cannot be decoded, which a receiver handles as packet loss.
"""

from __future__ import annotations


class FecError(Exception):
    """A well-formed FEC block could not be decoded."""


class UnrecoverableBlock(FecError):
    """Fewer shards arrived than the block has data shards, so the data cannot be rebuilt."""

    def __init__(self, present: int, needed: int, total: int) -> None:
        self.present = present
        self.needed = needed
        self.total = total
        super().__init__(
            f"unrecoverable FEC block: {present} of {total} shards present, "
            f"at least {needed} needed"
        )
