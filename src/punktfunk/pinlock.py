"""The lockout after wrong pairing PINs, one rule for both pairing protocols.

`max_failures` wrong guesses in a row lock the key for a cool-down that doubles with every
lockout in a row (`cooldown_s`, 2x, 4x, ... up to `max_cooldown_s`); a success resets its keys.
Callers count a failure under several keys at once: the host as a whole (so guesses spread over
many addresses still add up) and the client's address (so a success by someone else does not
reset the attacker's own growing cool-down). A key that stayed quiet for `max_cooldown_s` after
its last lock ran out starts afresh.

With the defaults, 10,000 guesses need 3,333 lockouts, nearly all of them at the one-hour cap:
about 139 days (`seconds_for_guesses`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

HOST = "host"  # the key every failure on this host counts under
MAX_KEYS = 4096  # per-address entries kept; the oldest unlocked ones go first


@dataclass
class Strikes:
    failures: int = 0  # wrong guesses since the last lockout or success
    lockouts: int = 0  # lockouts in a row: the next cool-down's exponent
    locked_until: float = 0.0
    last_failure: float = 0.0


class PinLock:
    """Thread-safe: GameStream pairing runs in the HTTP server's request threads."""

    def __init__(
        self,
        max_failures: int = 3,
        cooldown_s: float = 60.0,
        max_cooldown_s: float = 3600.0,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.max_failures = max_failures
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max(max_cooldown_s, cooldown_s)
        self._max_keys = max_keys
        self._strikes: dict[str, Strikes] = {}
        self._lock = threading.Lock()

    def cooldown(self, lockouts: int) -> float:
        """The cool-down of the lockout that follows `lockouts` earlier ones in a row."""
        return min(self.cooldown_s * 2.0 ** min(lockouts, 64), self.max_cooldown_s)

    def remaining(self, keys: Iterable[str], now: float) -> float:
        """Seconds until none of `keys` is locked (0.0: pairing may go ahead)."""
        with self._lock:
            until = [s.locked_until for k in keys if (s := self._strikes.get(k)) is not None]
        return max(0.0, max(until, default=0.0) - now)

    def fail(self, keys: Iterable[str], now: float) -> float:
        """Count one wrong guess; returns the longest cool-down this started (0.0 if none)."""
        started = 0.0
        with self._lock:
            for key in keys:
                strikes = self._get(key, now)
                strikes.failures += 1
                strikes.last_failure = now
                if strikes.failures >= self.max_failures:
                    cooldown = self.cooldown(strikes.lockouts)
                    strikes.failures = 0
                    strikes.lockouts += 1
                    strikes.locked_until = max(strikes.locked_until, now + cooldown)
                    started = max(started, cooldown)
            self._trim()
        return started

    def succeed(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._strikes.pop(key, None)

    def strikes(self, key: str) -> Strikes:
        """A copy of `key`'s record (for status reports and tests)."""
        with self._lock:
            s = self._strikes.get(key) or Strikes()
            return Strikes(s.failures, s.lockouts, s.locked_until, s.last_failure)

    def _get(self, key: str, now: float) -> Strikes:
        strikes = self._strikes.get(key)
        if strikes is None:
            strikes = self._strikes[key] = Strikes()
        elif (
            now >= strikes.locked_until
            and now - max(strikes.last_failure, strikes.locked_until) > self.max_cooldown_s
        ):
            strikes.failures = strikes.lockouts = 0  # long quiet: forgiven
        return strikes

    def _trim(self) -> None:
        """Bound the table against many source addresses: forget the stalest first (an
        address forgotten early still counted under HOST, so nothing escapes the host's lock)."""
        excess = len(self._strikes) - self._max_keys
        if excess <= 0:
            return
        stalest = sorted(
            (k for k in self._strikes if k != HOST),
            key=lambda k: (self._strikes[k].locked_until, self._strikes[k].last_failure),
        )
        for key in stalest[:excess]:
            del self._strikes[key]


def seconds_for_guesses(lock: PinLock, guesses: int) -> float:
    """The least time `guesses` wrong PINs take against one key at the enforced rate (every
    lockout waited out; guessing itself taken as instant)."""
    lockouts = (guesses - 1) // lock.max_failures  # the last batch needs no wait after it
    return sum(lock.cooldown(n) for n in range(lockouts))
