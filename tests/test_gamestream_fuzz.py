"""Fuzz every GameStream port for 30 s while a real Moonlight client streams.

Random and truncated bytes go to HTTP, HTTPS, RTSP (TCP) and to the video, control (ENet) and
audio ports (UDP), on loopback only. The host must keep running, keep answering, and the live
session must not notice: its client still decodes >= 95% of the frames sent.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
import urllib.request
from pathlib import Path

from gs_host import BASE_PORT, TCP_PORTS, UDP_PORTS, Host, drive, finish_drive, start_drive

FUZZ_SECONDS = 20.0
# Valid openings, cut short at a random point: parsers see requests that end mid-token.
OPENINGS = (
    b"GET /serverinfo?uniqueid=0123456789ABCDEF&uuid=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /pair?uniqueid=1&devicename=x&updateState=1&phrase=getservercert&salt=00 HTTP/1.1\r\n",
    b"GET /launch?appid=1&mode=1280x720x60&rikey=00&rikeyid=1 HTTP/1.1\r\n\r\n",
    b"OPTIONS rtsp://127.0.0.1:48010 RTSP/1.0\r\nCSeq: 1\r\n\r\n",
    b"ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 5\r\nContent-length: 900\r\n\r\nv=0\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS ClientHello's start
    b"\x80\x00\x00\x40\x00\x00\x00\x01" + bytes(16),  # an encrypted RTSP frame's header
)


def _tcp(rng: random.Random, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        if rng.random() < 0.5:
            opening = rng.choice(OPENINGS)
            data = opening[: rng.randrange(1, len(opening) + 1)]
        else:
            data = rng.randbytes(rng.randrange(0, 4096))
        sock.sendall(data)
        if rng.random() < 0.5:
            sock.settimeout(0.2)
            with contextlib.suppress(OSError):
                sock.recv(4096)


def _udp(rng: random.Random, sock: socket.socket, port: int) -> None:
    roll = rng.random()
    if roll < 0.3:
        data = rng.randbytes(20)  # ping-sized, matching no session
    elif roll < 0.5:
        data = rng.randbytes(rng.randrange(0, 20))  # truncated
    else:
        data = rng.randbytes(rng.randrange(20, 1500))
    sock.sendto(data, ("127.0.0.1", port))


def _fuzz(seconds: float, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"tcp": 0, "udp": 0, "refused": 0}
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if rng.random() < 0.25:
                try:
                    _tcp(rng, rng.choice(TCP_PORTS))
                    counts["tcp"] += 1
                except OSError:
                    counts["refused"] += 1
            else:
                for _ in range(8):
                    _udp(rng, udp, rng.choice(UDP_PORTS))
                counts["udp"] += 8
            time.sleep(0.002)
    finally:
        udp.close()
    return counts


def test_fuzzing_every_port_disturbs_neither_host_nor_live_session(tmp_path: Path) -> None:
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        client = start_drive(tmp_path, "--seconds", str(FUZZ_SECONDS + 8), "--mode", "1280x720x60")
        deadline = time.monotonic() + 60
        while not host.status()["sessions"]:
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.2)
        counts = _fuzz(FUZZ_SECONDS, seed=1234)
        assert counts["tcp"] > 100 and counts["udp"] > 1000, counts

        result = finish_drive(client)
        assert host.proc.poll() is None, "the host died under fuzzing"
        assert result["terminated"] is False, result
        assert result["decoded_fraction"] >= 0.95, result
        with urllib.request.urlopen(f"http://127.0.0.1:{BASE_PORT}/serverinfo", timeout=5) as r:
            assert b'status_code="200"' in r.read()
        assert "Traceback" not in host.log.read_text()
    finally:
        host.kill()
