"""Sliding-window anti-replay over the authenticated packet number (`session/replay.rs`).

A bitmap of REPLAY_WINDOW sequences indexed `seq % WINDOW` (16 KiB). The protocol never
re-sends a packet number (FEC recovery shards get fresh ones), so a duplicate or anything
older than the window is dropped; in-window reorder is accepted once.
"""

from __future__ import annotations

from .registry import MEDIA_KEY_PACKETS, REPLAY_WINDOW

_BYTES = REPLAY_WINDOW // 8


class ReplayWindow:
    def __init__(self) -> None:
        self._bits = bytearray(_BYTES)
        self._highest = 0
        self._seen = False

    def reference(self) -> int:
        """The packet number a 32-bit one expands around: the highest accepted, 0 before any."""
        return self._highest if self._seen else 0

    def plausible(self, seq: int) -> bool:
        """Worth an AEAD open: inside the window and at most one media key past the newest.

        An unauthenticated number further ahead would only make the receiver derive keys.
        """
        ref = self.reference()
        return (
            seq // MEDIA_KEY_PACKETS <= ref // MEDIA_KEY_PACKETS + 1 and ref - seq < REPLAY_WINDOW
        )

    def _test_and_set(self, seq: int) -> bool:
        idx = seq % REPLAY_WINDOW
        byte, bit = idx >> 3, 1 << (idx & 7)
        was = self._bits[byte] & bit
        self._bits[byte] |= bit
        return bool(was)

    def _clear(self, start: int, stop: int) -> None:
        """Clear sequences [start, stop); the caller keeps the span under one window."""
        for seq in range(start, min(stop, (start + 7) & ~7)):
            self._clear_one(seq)
        first = (start + 7) & ~7
        last = stop & ~7
        if first < last:
            lo, hi = (first % REPLAY_WINDOW) >> 3, (last % REPLAY_WINDOW) >> 3
            if lo < hi:
                self._bits[lo:hi] = bytes(hi - lo)
            else:  # the span wraps around the ring
                self._bits[lo:] = bytes(_BYTES - lo)
                self._bits[:hi] = bytes(hi)
        for seq in range(max(last, first), stop):
            self._clear_one(seq)

    def _clear_one(self, seq: int) -> None:
        idx = seq % REPLAY_WINDOW
        self._bits[idx >> 3] &= ~(1 << (idx & 7)) & 0xFF

    def accept(self, seq: int) -> bool:
        """Record `seq`; False for a replay or a number older than the window."""
        if not self._seen:
            self._seen, self._highest = True, seq
            self._test_and_set(seq)
            return True
        if seq > self._highest:
            # Slid-in slots may still hold bits from a full window ago.
            if seq - self._highest >= REPLAY_WINDOW:
                self._bits[:] = bytes(_BYTES)
            else:
                self._clear(self._highest + 1, seq)
            self._highest = seq
            self._test_and_set(seq)
            return True
        if self._highest - seq >= REPLAY_WINDOW:
            return False
        return not self._test_and_set(seq)
