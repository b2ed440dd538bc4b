"""A live Moonlight session and a live native session on one host, under fire from the LAN.

While both stream, an attacker who never authenticated sends, from another loopback address:
a QUIC Initial of an unsupported version every 4 s (once this froze all native sending),
oversized datagrams (4097+ bytes once killed the ENet control thread) and garbage to every UDP
port the host listens on. Neither client may notice: both decode >= 98% of the frames sent,
and a new client can still start a session after the attack.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from gs_host import PUNKTFUNK, UDP_PORTS, Host, drive, finish_drive, start_drive

PIN = "4321"
STREAM_S = 24.0
ATTACKER = "127.0.0.2"  # the whole 127/8 is loopback: a second LAN address for free


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bad_version_initial(rng: random.Random) -> bytes:
    """A full-size QUIC long-header Initial of a version nobody speaks (RFC 9000 §17.2)."""
    dcid, scid = rng.randbytes(8), rng.randbytes(8)
    head = bytes([0xC0]) + struct.pack("!I", 0x0A1A2A3A) + bytes([8]) + dcid + bytes([8]) + scid
    return head + rng.randbytes(1252 - len(head))


def attack(ports: list[int], native_port: int, stop: threading.Event) -> dict[str, int]:
    rng = random.Random(7)
    counts = {"initials": 0, "oversized": 0, "garbage": 0}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sock.bind((ATTACKER, 0))
    next_initial = 0.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_initial:
                sock.sendto(bad_version_initial(rng), ("127.0.0.1", native_port))
                counts["initials"] += 1
                next_initial = now + 4.0
            for port in [*ports, native_port]:
                sock.sendto(rng.randbytes(rng.randrange(4097, 9000)), ("127.0.0.1", port))
                sock.sendto(rng.randbytes(rng.randrange(1, 1500)), ("127.0.0.1", port))
                counts["oversized"] += 1
                counts["garbage"] += 1
            stop.wait(0.25)
    finally:
        sock.close()
    return counts


def test_junk_from_the_lan_disturbs_neither_a_moonlight_nor_a_native_session(
    tmp_path: Path,
) -> None:
    native_port = free_udp_port()
    host = Host(tmp_path, "--pin", PIN, "--display", "pattern", "--native-port", str(native_port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    env.update(PUNKTFUNK_CONFIG=str(tmp_path / "none.env"))

    def probe(seconds: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(native_port),
                "--client-dir", str(tmp_path / "native-client"), "--pin", PIN,
                "--mode", "1280x720@60", "--seconds", str(seconds), "--json",
            ],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def probe_result(proc: subprocess.Popen[str]) -> dict:
        out, err = proc.communicate(timeout=STREAM_S + 90)
        lines = out.strip().splitlines()
        assert proc.returncode == 0 and lines, err[-3000:]
        return json.loads(lines[-1])

    stop = threading.Event()
    counts: dict[str, int] = {}
    attacker = threading.Thread(
        target=lambda: counts.update(attack(list(UDP_PORTS), native_port, stop)), daemon=True
    )
    try:
        drive(tmp_path, "--pin", PIN, "--pair-only")
        moonlight = start_drive(tmp_path, "--seconds", str(STREAM_S), "--mode", "1280x720x60")
        native = probe(STREAM_S)
        deadline = time.monotonic() + 60
        while len(host.status()["sessions"]) < 1:
            assert time.monotonic() < deadline and moonlight.poll() is None
            time.sleep(0.2)
        attacker.start()

        gs = finish_drive(moonlight, timeout=STREAM_S + 90)
        nat = probe_result(native)
        stop.set()
        attacker.join(timeout=5)

        assert counts["initials"] >= 4, counts
        assert gs["terminated"] is False, gs
        assert gs["decoded_fraction"] >= 0.98, gs
        assert nat["decoded_fraction"] >= 0.98, nat
        assert host.proc.poll() is None, "the host died under the attack"

        # After the attack both protocols still start new sessions.
        after = drive(tmp_path, "--seconds", "3", "--mode", "1280x720x60")
        assert after["decoded_fraction"] >= 0.9, after
        assert probe_result(probe(3))["frames_decoded"] > 0
        assert "Traceback" not in host.log.read_text()
    finally:
        stop.set()
        host.kill()
