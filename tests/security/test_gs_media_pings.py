"""A media ping only starts a stream toward the address that launched the session.

The ping payload is the session's secret, but it crosses the LAN in the clear with every ping:
someone who sniffs it must not be able to turn the video (or audio) to another machine. The
client here is a real paired identity speaking nvhttp and RTSP by hand against a real host.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from test_gs_setup_deadlines import PIN, RTSP_PORT, HandClient, _wait_log

from gs_client import SdpConfig, moonlight_sdp, shared_client_identity
from gs_host import BASE_PORT, Host

VIDEO_PORT = BASE_PORT + 9
AUDIO_PORT = BASE_PORT + 11


def _received(sock: socket.socket, payload: bytes, port: int, seconds: float) -> int:
    """Ping `port` from `sock` every 100 ms for `seconds`; count the datagrams that come back."""
    got = 0
    sock.settimeout(0.05)
    deadline = time.monotonic() + seconds
    counter = 0
    while time.monotonic() < deadline:
        counter += 1
        sock.sendto(payload + struct.pack(">I", counter), ("127.0.0.1", port))
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            try:
                sock.recv(2048)
                got += 1
            except TimeoutError:
                pass
    return got


def test_a_sniffed_ping_payload_from_another_address_starts_no_media(tmp_path: Path) -> None:
    host = Host(tmp_path, "--pin", PIN, "--display", "pattern")
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.2", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    try:
        hand = HandClient(shared_client_identity(0), tmp_path)
        hand.pair()
        hand.launch()
        target = f"rtsp://127.0.0.1:{RTSP_PORT}"
        hand.rtsp("OPTIONS", target)
        hand.rtsp("DESCRIBE", target)
        hand.rtsp("SETUP", "streamid=audio/0/0")
        payload = hand.rtsp("SETUP", "streamid=video/0/0")["x-ss-ping-payload"].encode()
        hand.rtsp("SETUP", "streamid=control/13/0")
        sdp = moonlight_sdp(SdpConfig(width=1280, height=720, fps=30, codec=0))
        hand.rtsp("ANNOUNCE", "streamid=control/13/0", sdp)
        hand.rtsp("PLAY", "/")

        assert _received(attacker, payload, VIDEO_PORT, 2.0) == 0
        assert _received(attacker, payload, AUDIO_PORT, 1.0) == 0
        assert _wait_log(host, "media.foreign_ping", 5), host.log.read_text()[-3000:]
        # The launching address pings with the same payload and the video flows to it.
        assert _received(client, payload, VIDEO_PORT, 3.0) > 0
        assert _received(attacker, payload, VIDEO_PORT, 1.0) == 0
    finally:
        attacker.close()
        client.close()
        host.kill()
