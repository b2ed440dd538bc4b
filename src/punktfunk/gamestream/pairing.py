"""GameStream PIN pairing, sans-I/O: request parameters in, reply fields out.

Phases 1-4 arrive over HTTP, the last over HTTPS (handled by nvhttp, which checks the cert is
now trusted). Key = SHA-256(salt || PIN)[:16], AES-128-ECB without padding; SHA-256 hashes;
RSA PKCS#1 v1.5 SHA-256 signatures. Any failure - wrong PIN, a replayed or out-of-order phase,
malformed hex - answers paired=0 and discards the attempt; nothing is trusted until phase 4
verifies both the client's hash and its signature.

Wrong guesses are limited by `punktfunk.pinlock`, per host and per client address, as native
pairing is. A guess counts once the host has answered phase 2: from phase 3's reply a client
can tell whether its PIN was right (Moonlight then gives up with /unpair and never sends phase
4), so an attempt that got that far and does not end paired - wrong hash at phase 4, cancelled,
replaced, timed out - is a wrong guess. A locked host refuses phase 1 before asking for a PIN.

Such a failed attempt also holds everything needed to test every PIN offline (phase 3 sends
the host's secret in the clear, and the phase-2 reply hashes it under the PIN's key), so the
lockout only limits guessing online. A preset PIN is therefore disarmed by the first counted
failure (`PinBox.disarm`), and the attempts in flight with it are dropped with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..identity import HostIdentity
from ..log import event
from ..pinlock import HOST, PinLock
from .pins import PinBox
from .trust import TrustStore

_log = logging.getLogger("punktfunk.gamestream.pairing")

ATTEMPT_TIMEOUT_S = 120.0
MAX_ATTEMPTS = 4  # attempts in flight at once (each has its PIN already; real ones take < 1 s)


class PairingFailed(Exception):
    """One pairing attempt failed; the reason is logged, the client only sees paired=0."""


class Phase(IntEnum):
    GOT_CERT = 1
    CHALLENGED = 2
    RESPONDED = 3


def _ecb(key: bytes, data: bytes, encrypt: bool) -> bytes:
    if len(data) % 16:
        raise PairingFailed(f"cipher text of {len(data)} bytes is not whole AES blocks")
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def _hex(params: Mapping[str, str], name: str, size: int | None = None) -> bytes:
    try:
        value = bytes.fromhex(params[name])
    except KeyError:
        raise PairingFailed(f"missing {name}") from None
    except ValueError:
        raise PairingFailed(f"{name} is not hex") from None
    if size is not None and len(value) != size:
        raise PairingFailed(f"{name} is {len(value)} bytes, expected {size}")
    return value


@dataclass
class _Attempt:
    device_name: str
    client_cert: x509.Certificate
    key: bytes
    started: float
    client_ip: str = ""
    phase: Phase = Phase.GOT_CERT
    server_secret: bytes = b""
    server_challenge: bytes = b""
    client_hash: bytes = b""


def _keys(client_ip: str) -> tuple[str, str]:
    return HOST, f"ip:{client_ip}"


class PairingCore:
    """All in-progress pairing attempts, keyed by the client's uniqueid, and the lockout."""

    def __init__(
        self,
        identity: HostIdentity,
        trust: TrustStore,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[int], bytes] = os.urandom,
        lock: PinLock | None = None,
        pins: PinBox | None = None,
    ) -> None:
        self._identity = identity
        self._trust = trust
        self._clock = clock
        self._rand = rand
        self.lock = lock or PinLock()
        self._pins = pins  # its preset PIN is disarmed by a counted failure
        self._attempts: dict[str, _Attempt] = {}
        self._mutex = threading.RLock()  # requests arrive on the HTTP server's threads

    def pending(self, unique_id: str) -> bool:
        return unique_id in self._attempts

    def refusal(self, unique_id: str, client_ip: str = "", device: str = "") -> str | None:
        """Why a new attempt from `client_ip` is refused now (logged), or None: checked
        before the host asks anyone for a PIN, and again at phase 1."""
        with self._mutex:
            self._sweep()
            remaining = self.lock.remaining(_keys(client_ip), self._clock())
            disarmed = self._pins.refusal() if self._pins is not None else None
            if disarmed is not None:
                reason = disarmed
            elif remaining > 0:
                reason = f"locked after repeated wrong PINs; retry in {remaining:.0f} s"
            elif len(self._attempts) >= MAX_ATTEMPTS and unique_id not in self._attempts:
                reason = "too many pairing attempts in flight"
            else:
                return None
        event(
            _log,
            "pairing.failed",
            logging.WARNING,
            client=device or unique_id,
            address=client_ip,
            reason=reason,
        )
        return reason

    def get_server_cert(
        self, unique_id: str, params: Mapping[str, str], pin: str, client_ip: str = ""
    ) -> dict:
        """Phase 1 (phrase=getservercert): the caller already obtained the host-side PIN."""
        try:
            salt = _hex(params, "salt", 16)
            try:
                cert = x509.load_pem_x509_certificate(_hex(params, "clientcert"))
            except ValueError:
                raise PairingFailed("clientcert is not a PEM certificate") from None
            if not isinstance(cert.public_key(), rsa.RSAPublicKey):
                raise PairingFailed("client certificate key is not RSA")
        except PairingFailed as exc:
            return self._fail(unique_id, exc, client_ip)
        key = hashlib.sha256(salt + pin.encode("utf-8")).digest()[:16]
        with self._mutex:
            if unique_id in self._attempts:
                self._fail(unique_id, PairingFailed("replaced by a new attempt"), client_ip)
            # Checked under the mutex, after a replaced attempt may have disarmed the preset
            # PIN: a PIN disarmed since the caller fetched it is never used.
            if self.refusal(unique_id, client_ip, params.get("devicename", "")) is not None:
                return {"paired": "0"}
            self._attempts[unique_id] = _Attempt(
                params.get("devicename", "unknown"), cert, key, self._clock(), client_ip
            )
        event(
            _log, "pairing.started", client=params.get("devicename", "unknown"), address=client_ip
        )
        return {"paired": "1", "plaincert": self._identity.cert_pem.hex()}

    def handle(self, unique_id: str, params: Mapping[str, str], client_ip: str = "") -> dict:
        """Phases 2-4, chosen by which parameter the request carries."""
        with self._mutex:
            return self._handle(unique_id, params, client_ip)

    def _handle(self, unique_id: str, params: Mapping[str, str], client_ip: str) -> dict:
        try:
            attempt = self._attempts.get(unique_id)
            if attempt is None:
                raise PairingFailed("no pairing attempt in progress (phase out of order)")
            if self._clock() - attempt.started > ATTEMPT_TIMEOUT_S:
                raise PairingFailed("pairing attempt timed out")
            if self.lock.remaining(_keys(attempt.client_ip), self._clock()) > 0:
                raise PairingFailed("pairing locked while the attempt was under way")
            if "clientchallenge" in params:
                return self._client_challenge(attempt, params)
            if "serverchallengeresp" in params:
                return self._server_challenge_resp(attempt, params)
            if "clientpairingsecret" in params:
                return self._client_pairing_secret(unique_id, attempt, params)
            raise PairingFailed("unknown pairing phase")
        except PairingFailed as exc:
            return self._fail(unique_id, exc, client_ip)

    def cancel(self, unique_id: str, client_ip: str = "") -> None:
        """The client gave up (Moonlight does so on a wrong PIN, after phase 3)."""
        with self._mutex:
            attempt = self._attempts.get(unique_id)
            if attempt is not None:
                told = attempt.phase is Phase.RESPONDED  # it saw phase 3: a wrong PIN
                reason = "client gave up after phase 3: wrong PIN" if told else "client gave up"
                self._fail(unique_id, PairingFailed(reason), client_ip)

    def _drop_all(self, reason: str) -> None:
        """End every attempt in flight without counting it: an attacker must not finish one
        it opened with the PIN it has just recovered offline."""
        with self._mutex:
            dropped, self._attempts = self._attempts, {}
        for attempt in dropped.values():
            event(
                _log,
                "pairing.failed",
                logging.WARNING,
                client=attempt.device_name,
                address=attempt.client_ip,
                reason=reason,
                counted=False,
            )

    def _sweep(self) -> None:
        """Attempts left hanging count as what they are: a guess the client could check."""
        now = self._clock()
        for unique_id, attempt in list(self._attempts.items()):
            if now - attempt.started > ATTEMPT_TIMEOUT_S:
                self._fail(unique_id, PairingFailed("pairing attempt timed out"), "")

    def unpair(self, client_fp: str) -> bool:
        """Forget a paired client (its next HTTPS request is refused)."""
        return self._trust.remove(client_fp)

    def _expect(self, attempt: _Attempt, phase: Phase) -> None:
        if attempt.phase is not phase:
            raise PairingFailed(f"phase out of order (attempt is at {attempt.phase.name})")

    def _client_challenge(self, attempt: _Attempt, params: Mapping[str, str]) -> dict:
        self._expect(attempt, Phase.GOT_CERT)
        challenge = _ecb(attempt.key, _hex(params, "clientchallenge", 16), encrypt=False)
        attempt.server_secret = self._rand(16)
        attempt.server_challenge = self._rand(16)
        digest = hashlib.sha256(
            challenge + self._identity.cert.signature + attempt.server_secret
        ).digest()
        attempt.phase = Phase.CHALLENGED
        reply = _ecb(attempt.key, digest + attempt.server_challenge, encrypt=True)
        return {"paired": "1", "challengeresponse": reply.hex()}

    def _server_challenge_resp(self, attempt: _Attempt, params: Mapping[str, str]) -> dict:
        self._expect(attempt, Phase.CHALLENGED)
        attempt.client_hash = _ecb(
            attempt.key, _hex(params, "serverchallengeresp", 32), encrypt=False
        )
        attempt.phase = Phase.RESPONDED
        secret = attempt.server_secret + self._identity.sign(attempt.server_secret)
        return {"paired": "1", "pairingsecret": secret.hex()}

    def _client_pairing_secret(
        self, unique_id: str, attempt: _Attempt, params: Mapping[str, str]
    ) -> dict:
        self._expect(attempt, Phase.RESPONDED)
        blob = _hex(params, "clientpairingsecret")
        if len(blob) <= 16:
            raise PairingFailed("clientpairingsecret too short")
        client_secret, signature = blob[:16], blob[16:]
        expected = hashlib.sha256(
            attempt.server_challenge + attempt.client_cert.signature + client_secret
        ).digest()
        if not hmac.compare_digest(expected, attempt.client_hash):
            raise PairingFailed("wrong PIN (challenge hash mismatch)")
        public_key = attempt.client_cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        try:
            public_key.verify(signature, client_secret, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise PairingFailed("client secret signature does not match its certificate") from None
        del self._attempts[unique_id]
        self.lock.succeed(_keys(attempt.client_ip))
        self._trust.add(attempt.client_cert, attempt.device_name)
        return {"paired": "1"}

    def _fail(self, unique_id: str, exc: PairingFailed, client_ip: str) -> dict:
        with self._mutex:
            attempt = self._attempts.pop(unique_id, None)
        address = attempt.client_ip if attempt else client_ip
        counted = attempt is not None and attempt.phase >= Phase.CHALLENGED
        event(
            _log,
            "pairing.failed",
            logging.WARNING,
            client=attempt.device_name if attempt else unique_id,
            address=address,
            reason=exc,
            counted=counted,
        )
        if counted and self._pins is not None and self._pins.disarm(address):
            self._drop_all("the preset PIN was disarmed while the attempt was under way")
        if counted:
            cooldown = self.lock.fail(_keys(address), self._clock())
            if cooldown:
                event(
                    _log,
                    "pairing.locked",
                    logging.WARNING,
                    address=address,
                    cooldown_s=round(cooldown),
                    reason="repeated wrong PINs",
                )
        return {"paired": "0"}
