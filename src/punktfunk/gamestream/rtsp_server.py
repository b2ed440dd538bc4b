"""RTSP socket shell: one TCP connection per request, answered and closed (as Moonlight expects).

Connections pass a `ConnectionGate` (per-address cap, bounded workers, a deadline for reading
the request), so idle or dribbling connections are closed by the host and cannot pile up.

Requests are handed to a handler together with the client's address; plain and `rtspenc`
encrypted requests are told apart by the first byte. A malformed request gets an RTSP error
(or, if it cannot even be framed, the connection is closed) and a log line; the listener keeps
serving everyone else.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from ..log import event
from ..supervise import supervised_thread
from .rtsp import RtspCipher, RtspError, build_response, parse_request, request_length
from .tcpguard import ConnectionGate

_log = logging.getLogger("punktfunk.gamestream.rtsp")

# handler(client_ip, request bytes (decrypted), encrypted?) -> response bytes (plaintext)
Handler = Callable[[str, bytes, bool], bytes]
# cipher_for(client_ip) -> the session's RTSP cipher, or None if no encrypted launch is pending
CipherLookup = Callable[[str], RtspCipher | None]

REQUEST_DEADLINE_S = 10.0  # from accept until the whole request is in
IO_TIMEOUT_S = 30.0  # per read or write; the deadline is what ends an idle request
ACCEPT_RETRY_S = 0.1


class RtspServer:
    def __init__(self, bind: str, port: int, handler: Handler, cipher_for: CipherLookup) -> None:
        self._handler = handler
        self._cipher_for = cipher_for
        self._sock = socket.create_server((bind, port), reuse_port=False, backlog=64)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self.gate = ConnectionGate("rtsp", self._serve, deadline_s=REQUEST_DEADLINE_S)
        self._thread = supervised_thread("rtsp", self._accept_loop, self._stop)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> None:
        self.gate.start()
        self._thread.start()
        event(_log, "rtsp.listening", port=self.port)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        self.gate.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                # Out of descriptors, say: the listener stays, and tries again shortly.
                event(_log, "rtsp.accept_failed", logging.WARNING, reason=exc)
                time.sleep(ACCEPT_RETRY_S)
                continue
            self.gate.submit(conn, addr)

    def _read(self, conn: socket.socket) -> tuple[bytes, bool]:
        data = b""
        while True:
            chunk = conn.recv(8192)
            if not chunk:
                if not data:
                    raise ConnectionAbortedError("closed before sending a request")
                raise RtspError(400, "connection closed mid-request")
            data += chunk
            encrypted = RtspCipher.is_encrypted(data)
            need = RtspCipher.message_length(data) if encrypted else request_length(data)
            if need is not None and len(data) >= need:
                return data[:need], encrypted

    def _serve(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        client_ip = addr[0]
        cipher: RtspCipher | None = None
        raw = b""
        with conn:
            conn.settimeout(IO_TIMEOUT_S)
            try:
                raw, encrypted = self._read(conn)
                self.gate.request_read(conn)  # handling (a launch) is not the client's time
                if encrypted:
                    cipher = self._cipher_for(client_ip)
                    if cipher is None:
                        raise RtspError(400, "encrypted request without a pending launch")
                    raw = cipher.decrypt(raw)
                reply = self._handler(client_ip, raw, encrypted)
            except RtspError as exc:
                event(
                    _log,
                    "rtsp.rejected",
                    logging.WARNING,
                    client=client_ip,
                    status=exc.status,
                    reason=exc,
                )
                reply = build_response(_cseq_of(raw), exc.status, "Bad Request")
            except OSError as exc:
                event(_log, "rtsp.connection_error", logging.INFO, client=client_ip, reason=exc)
                return
            try:
                conn.sendall(cipher.encrypt(reply) if cipher is not None else reply)
            except OSError as exc:
                event(_log, "rtsp.connection_error", logging.INFO, client=client_ip, reason=exc)


def _cseq_of(raw: bytes) -> str:
    try:
        return parse_request(raw).cseq
    except RtspError:
        return "0"
