"""A small HTTPS client for the console tests: pins the host's own certificate, can connect
from a chosen loopback source address, and keeps a browser-like session cookie."""

from __future__ import annotations

import http.client
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class ConsoleClient:
    port: int
    cert: Path  # the host identity's certificate: the console must present exactly it
    source: str = "127.0.0.1"
    cookie: str = ""
    csrf: str = ""
    token: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = False  # the identity certificate names no host; the key is pinned
        return ctx

    def connection(self, timeout: float = 15) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self._context(),
                                           source_address=(self.source, 0))  # fmt: skip

    def headers(self, method: str, auth: bool = True, csrf: bool = True) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if auth and self.cookie:
            headers["Cookie"] = self.cookie
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        return headers

    def request(self, method: str, path: str, body: object = None, *, auth: bool = True,
                csrf: bool = True) -> Answer:  # fmt: skip
        conn = self.connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=self.headers(method, auth, csrf))
            resp = conn.getresponse()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def login(self, password: str) -> Answer:
        answer = self.request("POST", "/api/login", {"password": password}, auth=False)
        if answer.status == 200:
            cookie = answer.headers["set-cookie"]
            self.cookie = cookie.split(";", 1)[0]
            self.csrf = str(answer.json()["csrf"])  # type: ignore[index]
        return answer


def password_from(log_text: str) -> str:
    m = re.search(r"console admin password \(shown once\): (\S+)", log_text)
    assert m, "the host printed no console password"
    return m.group(1)
