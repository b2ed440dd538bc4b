"""Every stage of GameStream session setup has a deadline (issue #11, finding 4).

A client that launches and then goes away - before RTSP, or after the RTSP handshake but before
it opens the ENet control channel - must not hold its launch, session or virtual monitor: the
host ends it within 15 s with a logged reason, and the next Moonlight client streams as usual.
The client here is a real paired identity speaking nvhttp and RTSP by hand against a real host.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization

from gs_client import (
    ClientIdentity,
    PairingClient,
    SdpConfig,
    moonlight_sdp,
    parse_rtsp_response,
    parse_xml,
    rtsp_request,
    shared_client_identity,
)
from gs_host import BASE_PORT, Host, descendants, drive, still_alive
from punktfunk.apps import AppList
from punktfunk.gamestream.nvhttp import parse_launch
from punktfunk.gamestream.session import PendingLaunch
from punktfunk.vdisplay.base import DisplayBackend
from test_vdisplay_support import require_backend

PIN = "4321"
RTSP_PORT = BASE_PORT + 21
REAP_WITHIN_S = 15.0
RIKEY = bytes(range(16))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    # xvfb: a session's monitor is an X server process, so its release can be seen.
    require_backend(DisplayBackend.XVFB)
    h = Host(tmp_path, "--pin", PIN, "--display", "xvfb")
    yield h
    h.kill()


class HandClient:
    """A paired client that speaks nvhttp and plain RTSP itself and never opens ENet."""

    def __init__(self, identity: ClientIdentity, tmp: Path) -> None:
        self.cert = tmp / "client.crt"
        self.key = tmp / "client.key"
        self.cert.write_bytes(identity.cert_pem)
        self.key.write_bytes(
            identity.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # the host's self-signed cert (pinned at pairing)
        self.tls.load_cert_chain(self.cert, self.key)
        self.pairing = PairingClient(identity, PIN)
        self.cseq = 0

    def get(self, path: str, params: dict[str, str], https: bool = False) -> dict[str, str]:
        scheme, port = ("https", BASE_PORT - 5) if https else ("http", BASE_PORT)
        url = f"{scheme}://127.0.0.1:{port}{path}?{urlencode(params)}"
        context = self.tls if https else None
        with urllib.request.urlopen(url, timeout=30, context=context) as reply:
            xml = parse_xml(reply.read())
        assert xml.status_code == 200, (path, xml.status_message)
        return xml.fields

    def pair(self) -> None:
        p = self.pairing
        p.on_phase1(self.get("/pair", p.phase1_params()))
        p.on_phase2(self.get("/pair", p.phase2_params()))
        assert p.on_phase3(self.get("/pair", p.phase3_params())) == (True, True)
        assert self.get("/pair", p.phase4_params())["paired"] == "1"
        assert self.get("/pair", p.phase5_params(), https=True)["paired"] == "1"

    def launch(self) -> None:
        params = {
            "uniqueid": self.pairing.unique_id,
            "appid": "0",
            "mode": "1280x720x30",
            "rikey": RIKEY.hex(),
            "rikeyid": "1",
        }
        # No corever: plain RTSP, so the handshake below needs no rtspenc framing.
        assert self.get("/launch", params, https=True)["sessionUrl0"].startswith("rtsp://")

    def rtsp(self, method: str, target: str, body: bytes = b"") -> dict[str, str]:
        self.cseq += 1
        headers = {"Content-length": str(len(body))} if body else {}
        with socket.create_connection(("127.0.0.1", RTSP_PORT), timeout=30) as sock:
            sock.sendall(rtsp_request(method, target, self.cseq, headers, body))
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        status, fields, _ = parse_rtsp_response(reply)
        assert status == 200, (method, reply)
        return fields

    def handshake(self) -> None:
        """Moonlight's RTSP order up to PLAY; then the client 'goes away'."""
        target = f"rtsp://127.0.0.1:{RTSP_PORT}"
        self.rtsp("OPTIONS", target)
        self.rtsp("DESCRIBE", target)
        for stream in ("audio/0/0", "video/0/0", "control/13/0"):
            self.rtsp("SETUP", f"streamid={stream}")
        sdp = moonlight_sdp(SdpConfig(width=1280, height=720, fps=30, codec=0))
        self.rtsp("ANNOUNCE", "streamid=control/13/0", sdp)
        self.rtsp("PLAY", "/")


def _xservers(host: Host) -> list[str]:
    return [c for c in still_alive(descendants(host.proc.pid)) if "Xvfb" in c]


def _wait_log(host: Host, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in host.log.read_text():
            return True
        time.sleep(0.2)
    return False


def test_a_launch_without_rtsp_is_forgotten(host: Host, tmp_path: Path) -> None:
    client = HandClient(shared_client_identity(0), tmp_path)
    client.pair()
    client.launch()
    assert _wait_log(host, "launch.expired", REAP_WITHIN_S), host.log.read_text()[-3000:]
    assert "no RTSP OPTIONS within" in host.log.read_text()
    # The stale launch is gone: RTSP from this client is refused, nothing was streamed.
    with pytest.raises(AssertionError, match="403"):
        client.rtsp("OPTIONS", f"rtsp://127.0.0.1:{RTSP_PORT}")
    assert host.status()["sessions"] == []


def test_rtsp_without_control_channel_is_reaped_then_moonlight_streams(
    host: Host, tmp_path: Path
) -> None:
    client = HandClient(shared_client_identity(0), tmp_path)
    client.pair()
    client.launch()
    client.handshake()
    played = time.monotonic()
    assert len(host.status()["sessions"]) == 1
    assert len(_xservers(host)) == 1  # the session's own monitor

    assert host.wait_no_sessions(timeout=REAP_WITHIN_S + 5) == []
    assert time.monotonic() - played <= REAP_WITHIN_S
    assert _wait_log(host, "session.end", 5)
    log = host.log.read_text()
    assert 'reason="setup stalled: no control connect within 10 s"' in log, log[-3000:]
    deadline = time.monotonic() + 10  # --monitor-linger-ms 0: the X server follows promptly
    while _xservers(host) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _xservers(host) == []

    # A real Moonlight client launches and streams as if nothing had happened.
    result = drive(tmp_path, "--pin", PIN, "--seconds", "4", "--mode", "1280x720x30")
    assert result["decoded_fraction"] >= 0.95, result
    assert host.proc.poll() is None


def test_only_a_new_stage_restarts_the_deadline() -> None:
    """A client repeating one request (OPTIONS every few seconds) cannot keep a launch alive;
    control and video may come in either order, and both must come."""
    params = parse_launch({"appid": "0", "rikey": RIKEY.hex(), "rikeyid": "1"}, AppList(), False)
    launch = PendingLaunch("fp", "client", "10.0.0.2", params)
    assert launch.awaiting() == "RTSP OPTIONS"
    launch.reach("RTSP OPTIONS")
    started = launch.progress
    launch.reach("RTSP OPTIONS")
    assert launch.progress == started and launch.awaiting() == "RTSP DESCRIBE"
    for stage in ("RTSP DESCRIBE", "RTSP SETUP", "RTSP ANNOUNCE", "RTSP PLAY"):
        launch.reach(stage)
    launch.reach("first video ping")  # before the control connect
    assert launch.awaiting() == "control connect"
    launch.progress -= 11
    assert launch.stalled(10.0) == "setup stalled: no control connect within 10 s"
    launch.reach("control connect")
    assert launch.awaiting() is None and launch.stalled(0.0) is None
