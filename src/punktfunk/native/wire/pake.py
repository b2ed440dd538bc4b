"""PIN pairing: SPAKE2 over Ed25519 bound to both certificate fingerprints (`quic/pake.rs`).

The identities are the client's and the host's SHA-256 certificate fingerprints (client is
SPAKE2 side A, host side B), so the keys agree only when both ends share the PIN *and* saw the
same two certificates. A wrong PIN does not fail SPAKE2: it yields another key, and the
confirmation MACs `HMAC-SHA256(key, label ‖ client_fp ‖ host_fp)` disagree. PyPI `spake2`
(pure Python) uses the same group, M/N points, password hashing and transcript as the Rust
`spake2` crate punktfunk uses; tests/test_native_pake.py pins the crate's own test vector.

Sans-I/O: `ClientPairing` and `HostPairing` turn messages into messages; the host's
`PairingGate` (one per host) holds the armed PIN and the lockout after repeated wrong PINs.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import Enum

from spake2 import SPAKE2_A, SPAKE2_B, SPAKEError

from ...pinlock import HOST, PinLock
from .messages import PairChallenge, PairProof, PairRequest, PairResult, Refused
from .registry import (
    FINGERPRINT_LEN,
    PAIR_CONFIRM_CLIENT,
    PAIR_CONFIRM_HOST,
    CloseCode,
)


class PairingError(Exception):
    """The ceremony failed: a malformed peer message, or confirmations that disagree."""


@dataclass(frozen=True)
class Confirmations:
    host: bytes  # the MAC the host sends in PairChallenge, the client checks
    client: bytes  # the MAC the client sends in PairProof, the host checks


def _confirm(key: bytes, label: bytes, transcript: bytes) -> bytes:
    return hmac.digest(key, label + transcript, "sha256")


class Pake:
    """One side of the SPAKE2 exchange plus the fingerprint transcript."""

    def __init__(self, is_client: bool, pin: str, client_fp: bytes, host_fp: bytes) -> None:
        if len(client_fp) != FINGERPRINT_LEN or len(host_fp) != FINGERPRINT_LEN:
            raise ValueError("fingerprints are 32-byte SHA-256 digests")
        side = SPAKE2_A if is_client else SPAKE2_B
        self._spake = side(pin.encode(), idA=client_fp, idB=host_fp)
        self.message = self._spake.start()
        self._transcript = client_fp + host_fp

    def finish(self, peer_message: bytes) -> Confirmations:
        """Both MACs; raises PairingError only on a malformed peer message."""
        try:
            key = self._spake.finish(peer_message)
        except (SPAKEError, ValueError, AssertionError, IndexError) as exc:
            raise PairingError(f"malformed SPAKE2 message: {exc}") from exc
        return Confirmations(
            _confirm(key, PAIR_CONFIRM_HOST, self._transcript),
            _confirm(key, PAIR_CONFIRM_CLIENT, self._transcript),
        )


class ClientPairing:
    """Client side: PairRequest -> (PairChallenge) -> PairProof -> (PairResult)."""

    def __init__(self, pin: str, name: str, client_fp: bytes) -> None:
        self._pin, self._name, self._client_fp = pin, name, client_fp
        self._pake: Pake | None = None
        self.host_fp: bytes | None = None

    def request(self, host_fp: bytes) -> PairRequest:
        """Start against the host certificate this connection observed (trust on first use)."""
        self.host_fp = host_fp
        self._pake = Pake(True, self._pin, self._client_fp, host_fp)
        # No device key: this client's identity is its certificate, re-proved by TLS.
        return PairRequest(name=self._name, spake_a=self._pake.message)

    def on_challenge(self, challenge: PairChallenge) -> PairProof:
        """The proof to send, or PairingError: wrong PIN, or someone in the middle."""
        if self._pake is None:
            raise PairingError("PairChallenge before PairRequest")
        confirms = self._pake.finish(challenge.spake_b)
        if not hmac.compare_digest(confirms.host, challenge.confirm):
            raise PairingError("the host's confirmation does not match: wrong PIN or a MITM")
        return PairProof(confirm=confirms.client)


class Lockout(Enum):
    OPEN = "open"
    NOT_ARMED = "not-armed"
    BUSY = "busy"
    LOCKED = "locked"


@dataclass
class PairingGate:
    """The host's pairing window: the armed PIN, one ceremony at a time, and the lockout.

    Every ceremony that got a challenge counts: a client learns whether its guess was right
    from the challenge alone, so one that never sends a proof is a wrong guess too.
    `max_failures` such guesses in a row lock pairing for `cooldown_s`, doubling with each
    lockout in a row (`punktfunk.pinlock`, the rule GameStream pairing follows too).
    """

    pin: str | None = None
    max_failures: int = 3
    cooldown_s: float = 60.0
    single_use: bool = True  # disarm after a success (punktfunk consumes its window too)
    busy: bool = field(default=False, init=False)
    lock: PinLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = PinLock(self.max_failures, self.cooldown_s)

    @property
    def failures(self) -> int:
        return self.lock.strikes(HOST).failures

    @property
    def locked_until(self) -> float:
        return self.lock.strikes(HOST).locked_until

    def state(self, now: float) -> Lockout:
        if self.lock.remaining((HOST,), now) > 0:
            return Lockout.LOCKED
        if self.pin is None:
            return Lockout.NOT_ARMED
        return Lockout.BUSY if self.busy else Lockout.OPEN

    def begin(self) -> None:
        self.busy = True

    def succeed(self) -> None:
        self.busy = False
        self.lock.succeed((HOST,))
        if self.single_use:
            self.pin = None

    def fail(self, now: float) -> None:
        self.busy = False
        self.lock.fail((HOST,), now)


_REFUSALS = {
    Lockout.NOT_ARMED: (CloseCode.PAIR_NOT_ARMED, "pairing is not armed on the host"),
    Lockout.BUSY: (CloseCode.PAIR_RATE_LIMITED, "another pairing is in progress; retry shortly"),
    Lockout.LOCKED: (
        CloseCode.PAIR_RATE_LIMITED,
        "pairing is locked after repeated wrong PINs; retry after the cool-down",
    ),
}


@dataclass(frozen=True)
class Paired:
    """A completed ceremony: the host should store this client's fingerprint."""

    name: str
    fingerprint: bytes


class HostPairing:
    """Host side of one connection's ceremony (SPAKE2 side B), gated by a `PairingGate`."""

    def __init__(self, gate: PairingGate, host_fp: bytes) -> None:
        self._gate, self._host_fp = gate, host_fp
        self._confirms: Confirmations | None = None
        self._request: PairRequest | None = None
        self._client_fp = b""

    def on_request(
        self, request: PairRequest, client_fp: bytes | None, now: float
    ) -> PairChallenge | Refused:
        if client_fp is None:
            return Refused(CloseCode.PAIR_NO_IDENTITY, "pairing needs a client certificate")
        state = self._gate.state(now)
        if state is not Lockout.OPEN:
            code, reason = _REFUSALS[state]
            return Refused(code, reason)
        assert self._gate.pin is not None
        pake = Pake(False, self._gate.pin, client_fp, self._host_fp)
        try:
            confirms = pake.finish(request.spake_a)
        except PairingError as exc:
            # Garbage never reached a challenge, so it does not cost the window a guess.
            return Refused(CloseCode.PAIR_DENIED, str(exc))
        self._gate.begin()
        self._confirms, self._request, self._client_fp = confirms, request, client_fp
        return PairChallenge(spake_b=pake.message, confirm=confirms.host)

    @property
    def in_flight(self) -> bool:
        return self._confirms is not None

    def on_proof(self, proof: PairProof, now: float) -> tuple[PairResult, Paired | None]:
        if self._confirms is None or self._request is None:
            raise PairingError("PairProof before PairChallenge")
        ok = hmac.compare_digest(self._confirms.client, proof.confirm)
        self._confirms = None
        if not ok:
            self._gate.fail(now)
            return PairResult(ok=False), None
        self._gate.succeed()
        return PairResult(ok=True), Paired(self._request.name, self._client_fp)

    def abandon(self, now: float) -> None:
        """The connection ended after a challenge and before a proof: a wrong guess."""
        if self._confirms is not None:
            self._confirms = None
            self._gate.fail(now)
