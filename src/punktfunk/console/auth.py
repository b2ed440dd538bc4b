"""Who may use the console: an admin password (argon2id), browser sessions with a CSRF token,
and bearer tokens for scripts (scope `read` or `admin`).

Everything lives in `<state_dir>/console/`, a 0700 directory: `admin.hash` (the argon2id hash,
0600) and `tokens.json` (SHA-256 of each token with its scope, 0600). A token is 256 random
bits, so a plain SHA-256 is enough to make a stolen file useless; the password is what a person
chose or was given, so it gets the slow hash. Browser sessions live in memory only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..log import event
from ..ownfiles import private_dir, replace_file

_log = logging.getLogger("punktfunk.console.auth")

SCOPES = ("read", "admin")
SESSION_TTL_S = 12 * 3600
TOKEN_PREFIX = "pft_"
LOGIN_FAILS_ALLOWED = 5  # per minute, then logins wait
_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters


def console_dir(state_dir: Path) -> Path:
    return private_dir(state_dir / "console")


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, 0600."""
    replace_file(path, data, 0o600)


def new_password() -> str:
    return secrets.token_urlsafe(12)


def set_password(state_dir: Path, password: str) -> None:
    write_private(console_dir(state_dir) / "admin.hash", _HASHER.hash(password).encode())


def ensure_password(state_dir: Path) -> str | None:
    """Create the admin password on first start; returns it (to show once) or None if set."""
    if (console_dir(state_dir) / "admin.hash").exists():
        return None
    password = new_password()
    set_password(state_dir, password)
    return password


def create_token(state_dir: Path, scope: str, name: str = "") -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope is one of {'|'.join(SCOPES)}")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    path = console_dir(state_dir) / "tokens.json"
    tokens = _read_tokens(path)
    tokens[hashlib.sha256(raw.encode()).hexdigest()] = {
        "scope": scope,
        "name": name,
        "created": round(time.time()),
    }
    write_private(path, json.dumps(tokens, indent=1).encode())
    return raw


def _read_tokens(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        event(_log, "console.tokens_unreadable", logging.ERROR, file=path, reason=exc)
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Principal:
    scope: str
    via: str  # "session" or "token"
    csrf: str = ""  # the session's CSRF token; empty for bearer tokens


class Auth:
    """Checks passwords, tokens and sessions for the running console (thread-safe)."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = console_dir(state_dir)
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, float]] = {}  # session id -> (csrf, expiry)
        self._fails: list[float] = []
        self._tokens_mtime = -1.0
        self._tokens: dict[str, dict[str, object]] = {}

    def login(self, password: str) -> tuple[str, str] | None:
        """(session id, csrf token) for the right password, else None. Wrong guesses beyond
        LOGIN_FAILS_ALLOWED a minute are refused without checking (RuntimeError)."""
        now = time.monotonic()
        with self._lock:
            self._fails = [t for t in self._fails if now - t < 60]
            if len(self._fails) >= LOGIN_FAILS_ALLOWED:
                raise RuntimeError("too many failed logins; wait a minute")
        try:
            stored = (self._dir / "admin.hash").read_text().strip()
            _HASHER.verify(stored, password)
        except (OSError, VerificationError, InvalidHashError):
            with self._lock:
                self._fails.append(now)
            event(_log, "console.login_failed", logging.WARNING)
            return None
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
            self._sessions[sid] = (csrf, now + SESSION_TTL_S)
        event(_log, "console.login")
        return sid, csrf

    def logout(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def session(self, sid: str) -> Principal | None:
        with self._lock:
            found = self._sessions.get(sid)
        if found is None or found[1] < time.monotonic():
            return None
        return Principal("admin", "session", found[0])

    def bearer(self, raw: str) -> Principal | None:
        digest = hashlib.sha256(raw.encode()).hexdigest()
        path = self._dir / "tokens.json"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return None
        with self._lock:
            if mtime != self._tokens_mtime:  # `punktfunk token create` wrote a new one
                self._tokens, self._tokens_mtime = _read_tokens(path), mtime
            tokens = self._tokens
        for known, meta in tokens.items():
            if hmac.compare_digest(known, digest) and meta.get("scope") in SCOPES:
                return Principal(str(meta["scope"]), "token")
        return None
