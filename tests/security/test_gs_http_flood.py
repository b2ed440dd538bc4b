"""An idle-connection flood against nvhttp and RTSP neither grows the host nor locks clients out.

Issue #11 finding 10: 150 idle plain-HTTP connections were each held forever on a thread of
their own. Now every TCP listener (HTTP, HTTPS, RTSP) caps connections per address, serves from
a bounded pool and closes a connection whose request (or TLS handshake) is not in by its
deadline. The attacker here connects from 127.0.0.2; a paired client on 127.0.0.1 must keep
getting answers and must be able to launch a stream during the flood.
"""

from __future__ import annotations

import selectors
import socket
import time
import urllib.request
from pathlib import Path

from gs_host import BASE_PORT, TCP_PORTS, Host, drive

HTTP, HTTPS, RTSP = TCP_PORTS
IDLE_CONNECTIONS = 150
DEADLINE_S = 10.0  # the host's request deadline (tcpguard.DEADLINE_S)
SLACK_S = 10.0
THREAD_GROWTH_LIMIT = 60  # three bounded pools' worth of workers at most, never one per connection
# What an attacker leaves half-sent: nothing, a request line without its end, a TLS record
# header without its ClientHello.
STUBS = {
    HTTP: (b"", b"GET /serverinfo HTTP/1.1\r\nHost: x\r\n"),
    HTTPS: (b"", b"\x16\x03\x01\x02\x00"),
    RTSP: (b"", b"OPTIONS rtsp://127.0.0.1 RTSP/1.0\r\nCSeq: 1\r\n"),
}


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _idle(port: int, stub: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(30)  # generous: a loaded CI machine may be slow to accept
    sock.connect(("127.0.0.1", port))
    if stub:
        sock.sendall(stub)
    sock.setblocking(False)
    return sock


def _serverinfo() -> bytes:
    url = f"http://127.0.0.1:{BASE_PORT}/serverinfo?uniqueid=0123456789ABCDEF"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read()


def _closed_by_host(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset: closed as well
        return True


def test_idle_connection_flood_is_bounded_and_closed_while_clients_are_served(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    sockets: list[tuple[socket.socket, float]] = []
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        baseline = _threads(host.proc.pid)
        ports = (HTTP, HTTPS, RTSP)
        for i in range(IDLE_CONNECTIONS):
            port = ports[i % 3]
            sockets.append((_idle(port, STUBS[port][i // 3 % 2]), time.monotonic()))
        time.sleep(1.0)

        # Answered while the flood's connections are still held (they last DEADLINE_S), not
        # only once they are reaped: workers busy with the attacker must not stall others.
        asked = time.monotonic()
        assert b'status_code="200"' in _serverinfo()
        assert time.monotonic() - asked < DEADLINE_S / 2
        grown = _threads(host.proc.pid) - baseline
        assert grown < THREAD_GROWTH_LIMIT, f"{grown} threads more under the flood"

        # The paired client launches and streams (HTTPS, RTSP, ENet) while the flood holds.
        result = drive(tmp_path, "--seconds", "2", "--mode", "1280x720x60")
        assert result["terminated"] is False and result["decoded"] > 20, result

        selector = selectors.DefaultSelector()
        for sock, opened in sockets:
            selector.register(sock, selectors.EVENT_READ, opened)
        late: list[float] = []
        deadline = time.monotonic() + DEADLINE_S + SLACK_S
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if _closed_by_host(sock):
                    age = time.monotonic() - key.data
                    if age > DEADLINE_S + SLACK_S:
                        late.append(age)
                    selector.unregister(sock)
        left = len(selector.get_map())
        assert left == 0, f"{left} idle connections still open after {DEADLINE_S + SLACK_S} s"
        assert not late, late
        assert b'status_code="200"' in _serverinfo()
        status = host.status()
        net = status["gamestream_net"]
        assert net["http"]["refused"] + net["http"]["timed_out"] > 0, net
        assert net["https"]["timed_out"] > 0 and net["rtsp"]["timed_out"] > 0, net
        assert "Traceback" not in host.log.read_text()
    finally:
        for sock, _ in sockets:
            sock.close()
        host.kill()
