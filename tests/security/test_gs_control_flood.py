"""Hostile datagrams to every GameStream UDP port leave a live Moonlight session untouched.

Issue #11 finding 1: one datagram longer than 4096 bytes to the ENet control port made
`host.service()` raise, which ended the control thread for good: the live session died 10 s
later and every later launch failed. Here a real Moonlight client streams while oversized,
random, truncated-header datagrams and an ENet connect flood hit the video, control and audio
ports; it must keep decoding, and a new launch after the flood must stream.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from pathlib import Path

import enet

from gs_host import UDP_PORTS, Host, drive, finish_drive, start_drive

FLOOD_SECONDS = 12.0
CONTROL_PORT = UDP_PORTS[1]
# ENet's own headers, cut short: a peer id/flags word, then a command header stub.
TRUNCATED_ENET = (b"", b"\x00", b"\xff\xff", b"\x00\x00\x00", b"\x80\x00\x12\x34\x82")


def _datagrams(rng: random.Random) -> list[bytes]:
    """The hostile mix, made once: generating it per send would load the CPU the session needs."""
    mix = [bytes(4097), rng.randbytes(65_000), *TRUNCATED_ENET]
    mix += [rng.randbytes(rng.randrange(4097, 9000)) for _ in range(8)]
    mix += [rng.randbytes(rng.randrange(1, 1500)) for _ in range(32)]
    return mix


def _connect_flood() -> None:
    """ENet clients that complete ENet's handshake with connect data no session expects."""
    addr = enet.Address(b"127.0.0.1", CONTROL_PORT)
    hosts = [enet.Host(None, 4, 1, 0, 0) for _ in range(4)]
    for client in hosts:
        for _ in range(4):
            client.connect(addr, 1, random.getrandbits(32))
    for _ in range(20):
        for client in hosts:
            with contextlib.suppress(OSError):
                client.service(0)
        time.sleep(0.01)


def _flood(seconds: float) -> int:
    rng = random.Random(11)
    mix = _datagrams(rng)
    sent = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for port in UDP_PORTS:
                for data in rng.sample(mix, 5):
                    try:
                        sock.sendto(data, ("127.0.0.1", port))
                        sent += 1
                    except BlockingIOError:
                        pass
            if rng.random() < 0.05:
                _connect_flood()
            time.sleep(0.01)
    finally:
        sock.close()
    return sent


def test_hostile_datagrams_to_every_udp_port_leave_a_live_session_decoding(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        client = start_drive(
            tmp_path, "--seconds", str(FLOOD_SECONDS + 14), "--mode", "1280x720x60"
        )
        deadline = time.monotonic() + 60
        while not host.status()["sessions"]:
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.2)
        time.sleep(1.0)
        sent = _flood(FLOOD_SECONDS)
        assert sent > 1000, sent

        result = finish_drive(client)
        assert host.proc.poll() is None, "the host died under the flood"
        assert result["terminated"] is False, result
        assert result["decoded_fraction"] >= 0.98, result
        status = host.status()
        control = status["gamestream_net"]["control"]
        assert control["oversize_dropped"] > 100, control
        assert status["health"]["thread_crashes"] == 0, status["health"]
        assert host.wait_no_sessions() == []

        # The control thread still serves: a new launch streams.
        again = drive(tmp_path, "--seconds", "3", "--mode", "1280x720x60")
        assert again["terminated"] is False and again["decoded"] > 30, again
        text = host.log.read_text()
        assert "Traceback" not in text
        assert "control.bad_datagram" in text
    finally:
        host.kill()


def test_a_burst_of_bare_enet_connects_does_not_lock_out_a_launch(tmp_path: Path) -> None:
    """64 CONNECTs that never finish ENet's handshake used to hold every control slot for
    ~30 s, so a launch in that time failed at stage 8; now one address gets a few slots."""
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    attackers = []
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        addr = enet.Address(b"127.0.0.1", CONTROL_PORT)
        for _ in range(16):
            attacker = enet.Host(enet.Address(b"127.0.0.2", 0), 4, 1, 0, 0)
            for _ in range(4):
                attacker.connect(addr, 1, 7)
            attacker.service(0)  # the CONNECTs leave; their VERIFY_CONNECTs are never acked
            attackers.append(attacker)
        time.sleep(0.5)

        result = drive(tmp_path, "--seconds", "2", "--mode", "1280x720x60")
        assert result["terminated"] is False and result["decoded"] > 20, result
        assert host.status()["gamestream_net"]["control"]["connects_refused"] > 0
    finally:
        attackers.clear()
        host.kill()
