"""Socket shell for nvhttp: a plain HTTP and an HTTPS listener, served by bounded worker pools.

HTTPS presents the host certificate (the one clients pinned at pairing) and asks for a client
certificate; only certificates in the trust store verify, so an unpaired client's TLS handshake
fails and it falls back to plain HTTP as Moonlight clients do. The TLS context is rebuilt when
the trust store changes, so a client paired a moment ago is trusted on its next connection.

Connections pass a `ConnectionGate` (per-address cap, bounded workers and backlog, a deadline
for the TLS handshake and the request): idle or slow connections are closed by the host, and a
flood from one address leaves everyone else served.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509

from ..log import event
from ..supervise import supervised_thread
from .nvhttp import HttpRequest, NvHttpCore
from .tcpguard import ConnectionGate
from .trust import TrustStore, fingerprint

_log = logging.getLogger("punktfunk.gamestream.httpd")


# Per read or write; above the gate's request deadline, which is what ends an idle request.
IO_TIMEOUT_S = 30.0


class _Handler(BaseHTTPRequestHandler):
    server: _NvServer
    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT_S  # per read/write; the gate's deadline bounds the request as a whole

    def handle(self) -> None:
        # One request per connection (every reply says Connection: close): a kept-alive
        # connection would be a second, deadline-free request.
        self.handle_one_request()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        # The request line and headers are in (GET has no body): the client-controlled part
        # is over, and a pairing request may now wait for its PIN as long as pairing allows.
        self.server.gate.request_read(self.connection)
        return ok

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        client_fp = None
        if self.server.tls is not None:
            der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
            if der:
                fp = fingerprint(x509.load_der_x509_certificate(der))
                client_fp = fp if self.server.trust.get(fp) else None
        request = HttpRequest(
            path=url.path,
            params=params,
            https=self.server.tls is not None,
            client_fp=client_fp,
            local_ip=self.connection.getsockname()[0],
            client_ip=self.client_address[0],
        )
        try:
            response = self.server.core.handle(request)
        except Exception as exc:  # one bad request must not take the listener down
            event(_log, "nvhttp.error", logging.ERROR, path=url.path, reason=repr(exc))
            self.send_error(500)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        _log.debug("%s " + format, self.client_address[0], *args)


class _NvServer(HTTPServer):
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        core: NvHttpCore,
        trust: TrustStore,
        tls: tuple[Path, Path] | None,
    ) -> None:
        self.core = core
        self.trust = trust
        self.tls = tls
        self._ctx: ssl.SSLContext | None = None
        self._ctx_bundle: bytes | None = None
        self._ctx_lock = threading.Lock()
        self.gate = ConnectionGate(
            "https" if tls else "http", lambda sock, addr: self._serve_one(sock, addr)
        )
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.gate.submit(request, client_address)  # type: ignore[arg-type]

    def _serve_one(self, request: socket.socket, client_address: tuple[str, int]) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def _context(self) -> ssl.SSLContext:
        assert self.tls is not None
        bundle = self.trust.pem_bundle()
        with self._ctx_lock:
            if self._ctx is None or bundle != self._ctx_bundle:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
                ctx.verify_mode = ssl.CERT_OPTIONAL
                # Trust is the exact certificate, not a chain: every Moonlight client's
                # self-signed cert has the same name, and without this OpenSSL picks *an*
                # anchor by name and refuses every other client as a "self-signed mimic".
                ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                if bundle:
                    ctx.load_verify_locations(cadata=bundle.decode())
                self._ctx, self._ctx_bundle = ctx, bundle
            return self._ctx

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        sock.settimeout(IO_TIMEOUT_S)
        if self.tls is None:
            return sock, addr
        # The handshake runs on a worker (finish_request) under the gate's deadline.
        return self._context().wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def handle_error(self, request: object, client_address: object) -> None:
        """One line instead of socketserver's traceback on stderr: a client that hangs up
        before its reply is read is routine; anything else is worth a warning."""
        exc = sys.exc_info()[1]
        level = (
            logging.DEBUG if isinstance(exc, ConnectionError | TimeoutError) else logging.WARNING
        )
        event(_log, "http.connection_error", level, client=client_address[0], reason=repr(exc))  # type: ignore[index]

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                # An unpaired or unknown client: refused here, it retries over plain HTTP.
                event(_log, "https.refused", client=client_address[0], reason=exc)  # type: ignore[index]
                return
        super().finish_request(request, client_address)


class NvHttpServers:
    """The HTTP and HTTPS listeners, each served by its own thread."""

    def __init__(
        self,
        core: NvHttpCore,
        trust: TrustStore,
        cert_and_key: tuple[Path, Path],
        bind: str,
        http_port: int,
        https_port: int,
    ) -> None:
        self.http = _NvServer((bind, http_port), core, trust, None)
        self.https = _NvServer((bind, https_port), core, trust, cert_and_key)
        self._stop = threading.Event()
        self._threads = [
            supervised_thread(f"nvhttp-{n}", s.serve_forever, self._stop)
            for n, s in (("http", self.http), ("https", self.https))
        ]

    def start(self) -> None:
        for server in (self.http, self.https):
            server.gate.start()
        for thread in self._threads:
            thread.start()
        event(
            _log,
            "nvhttp.listening",
            http=self.http.server_address[1],
            https=self.https.server_address[1],
        )

    def close(self) -> None:
        self._stop.set()
        for server in (self.http, self.https):
            server.shutdown()
            server.server_close()
            server.gate.close()
