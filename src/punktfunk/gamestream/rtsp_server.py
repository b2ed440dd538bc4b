"""RTSP socket shell: one TCP connection per request, answered and closed (as Moonlight expects).

Requests are handed to a handler together with the client's address; plain and `rtspenc`
encrypted requests are told apart by the first byte. A malformed request gets an RTSP error
(or, if it cannot even be framed, the connection is closed) and a log line; the listener keeps
serving everyone else.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from ..log import event
from .rtsp import RtspCipher, RtspError, build_response, parse_request, request_length

_log = logging.getLogger("punktfunk.gamestream.rtsp")

# handler(client_ip, request bytes (decrypted), encrypted?) -> response bytes (plaintext)
Handler = Callable[[str, bytes, bool], bytes]
# cipher_for(client_ip) -> the session's RTSP cipher, or None if no encrypted launch is pending
CipherLookup = Callable[[str], RtspCipher | None]

READ_TIMEOUT_S = 10


class RtspServer:
    def __init__(self, bind: str, port: int, handler: Handler, cipher_for: CipherLookup) -> None:
        self._handler = handler
        self._cipher_for = cipher_for
        self._sock = socket.create_server((bind, port), reuse_port=False, backlog=32)
        self._sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="rtsp", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> None:
        self._thread.start()
        event(_log, "rtsp.listening", port=self.port)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            threading.Thread(
                target=self._serve, args=(conn, addr[0]), name="rtsp-conn", daemon=True
            ).start()

    def _read(self, conn: socket.socket) -> tuple[bytes, bool]:
        data = b""
        while True:
            chunk = conn.recv(8192)
            if not chunk:
                raise RtspError(400, "connection closed mid-request")
            data += chunk
            encrypted = RtspCipher.is_encrypted(data)
            need = RtspCipher.message_length(data) if encrypted else request_length(data)
            if need is not None and len(data) >= need:
                return data[:need], encrypted

    def _serve(self, conn: socket.socket, client_ip: str) -> None:
        cipher: RtspCipher | None = None
        raw = b""
        with conn:
            conn.settimeout(READ_TIMEOUT_S)
            try:
                raw, encrypted = self._read(conn)
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
