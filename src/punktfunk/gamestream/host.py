"""The GameStream host: nvhttp, RTSP, control and media listeners around the per-client sessions.

Each paired client may stream at once, each from its own virtual monitor. Launches wait (by
client IP) for the RTSP handshake; ANNOUNCE turns one into a StreamSession; pings and ENet
connects find their session by the identifiers SETUP handed out.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..apps import AppList
from ..encode.base import Codec
from ..identity import HostIdentity
from ..log import event
from ..session.plan import ClientRequest, PlanError
from ..session.source import SessionServices
from ..vdisplay.base import DisplayMode
from .control_server import ControlHandlers, ControlServer
from .httpd import NvHttpServers
from .media import MediaPort
from .nvhttp import (
    CODEC_AV1,
    CODEC_H264,
    CODEC_HEVC,
    CODEC_HEVC_MAIN10,
    HostFacts,
    LaunchParams,
    LaunchResult,
    NvHttpCore,
    SessionHooks,
)
from .pairing import PairingCore
from .pins import PinBox
from .rtsp import (
    SESSION_ID,
    DescribeCaps,
    RtspCipher,
    RtspError,
    build_response,
    describe_body,
    parse_announce,
    parse_request,
    stream_type,
)
from .rtsp_server import RtspServer
from .session import CONTROL_TIMEOUT_S, PendingLaunch, StreamSession
from .trust import TrustStore

_log = logging.getLogger("punktfunk.gamestream.host")

LAUNCH_TIMEOUT_S = 30.0
BITSTREAM_CODEC = {0: Codec.H264, 1: Codec.HEVC, 2: Codec.AV1}


@dataclass(frozen=True)
class HostPorts:
    http: int
    https: int
    rtsp: int
    video: int
    control: int
    audio: int

    @classmethod
    def from_base(cls, base: int) -> HostPorts:
        return cls(base, base - 5, base + 21, base + 9, base + 10, base + 11)


def codec_mask(codecs: frozenset[Codec], hdr: frozenset[Codec]) -> int:
    mask = CODEC_H264 if Codec.H264 in codecs else 0
    if Codec.HEVC in codecs:
        mask |= CODEC_HEVC | (CODEC_HEVC_MAIN10 if Codec.HEVC in hdr else 0)
    if Codec.AV1 in codecs:
        mask |= CODEC_AV1
    return mask


class GameStreamHost:
    def __init__(
        self,
        identity: HostIdentity,
        identity_dir: Path,
        state_dir: Path,
        services: SessionServices,
        pins: PinBox,
        ports: HostPorts,
        bind: str = "0.0.0.0",
        apps: AppList | None = None,
        opus_factory: Callable[[int, bool, int], Callable[[bytes], bytes]] | None = None,
        video_loss_percent: int = 0,
    ) -> None:
        self.services = services
        self._video_loss_percent = video_loss_percent
        self.trust = TrustStore(state_dir / "gamestream" / "clients")
        self._pins = pins
        self._apps = apps or AppList()
        self._opus_factory = opus_factory
        self._lock = threading.RLock()
        self._pending: dict[str, PendingLaunch] = {}  # by client ip
        self._sessions: dict[str, StreamSession] = {}  # by client cert fingerprint
        self._stop = threading.Event()
        facts = HostFacts(
            hostname=socket.gethostname(),
            unique_id=identity.unique_id,
            mac="00:00:00:00:00:00",
            codec_mask=codec_mask(services.codecs(), services.hdr_codecs()),
            http_port=ports.http,
            https_port=ports.https,
            rtsp_port=ports.rtsp,
        )
        hooks = SessionHooks(
            current_app=self._current_app, launch=self._launch, cancel=self._cancel
        )
        self.core = NvHttpCore(
            facts, PairingCore(identity, self.trust), self._apps, hooks, pins.wait_for_pin
        )
        cert_and_key = (identity_dir / "host.crt", identity_dir / "host.key")
        self.http = NvHttpServers(
            self.core, self.trust, cert_and_key, bind, ports.http, ports.https
        )
        self.rtsp = RtspServer(bind, ports.rtsp, self._rtsp, self._rtsp_cipher)
        self.video = MediaPort("video", bind, ports.video, self._video_ping)
        self.audio = MediaPort("audio", bind, ports.audio, self._audio_ping)
        self.control = ControlServer(
            bind,
            ports.control,
            ControlHandlers(self._control_connect, self._control_packet, self._control_gone),
        )
        self._ports = ports
        self._watchdog = threading.Thread(target=self._watch, name="gs-watchdog", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for part in (self.http, self.rtsp, self.video, self.audio, self.control):
            part.start()
        self._watchdog.start()
        event(
            _log,
            "gamestream.ready",
            http=self._ports.http,
            rtsp=self._ports.rtsp,
            codecs="|".join(sorted(self.services.codecs())),
        )
        if self._video_loss_percent:
            event(
                _log,
                "gamestream.simulated_loss",
                logging.WARNING,
                percent=self._video_loss_percent,
                reason="test_video_loss_percent is set: video shards are dropped on purpose",
            )

    def close(self) -> None:
        self._stop.set()
        for session in self.sessions():
            session.end("host shutting down", notify_client=True)
        time.sleep(0.1)  # let the termination messages leave before ENet goes down
        for part in (self.http, self.rtsp, self.video, self.audio, self.control):
            part.close()

    def sessions(self) -> list[StreamSession]:
        with self._lock:
            return list(self._sessions.values())

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                expired = [
                    ip for ip, p in self._pending.items() if now - p.created > LAUNCH_TIMEOUT_S
                ]
                for ip in expired:
                    del self._pending[ip]
                    event(_log, "launch.expired", client=ip, reason="no RTSP handshake in time")
            for session in self.sessions():
                if (
                    session.control_peer is not None
                    and session.control_idle_s() > CONTROL_TIMEOUT_S
                ):
                    session.end("client stopped sending control messages (10 s)")

    # --- nvhttp hooks ---------------------------------------------------------------------

    def _current_app(self, client_fp: str) -> int:
        with self._lock:
            session = self._sessions.get(client_fp)
        return session.launch.params.app.id if session and not session.ended else 0

    def _launch(
        self, client_fp: str, client_ip: str, params: LaunchParams
    ) -> tuple[LaunchResult, str]:
        client = self.trust.get(client_fp)
        name = client.name if client else "client"
        with self._lock:
            old = self._sessions.get(client_fp)
        if old is not None and not params.resume:
            old.end("client launched a new stream")
        # The HTTPS request's source address is where RTSP will come from.
        with self._lock:
            self._pending[client_ip] = PendingLaunch(client_fp, name, client_ip, params)
        event(
            _log,
            "launch.pending",
            client=name,
            app=params.app.title,
            mode=f"{params.width}x{params.height}x{params.fps}",
            resume=params.resume,
        )
        return LaunchResult.OK, ""

    def _cancel(self, client_fp: str) -> bool:
        with self._lock:
            session = self._sessions.get(client_fp)
        if session is None:
            return False
        session.end("client cancelled the stream (/cancel)", notify_client=True)
        return True

    # --- RTSP -----------------------------------------------------------------------------

    def _rtsp_cipher(self, client_ip: str) -> RtspCipher | None:
        with self._lock:
            pending = self._pending.get(client_ip)
        return pending.rtsp_cipher if pending else None

    def _rtsp(self, client_ip: str, raw: bytes, encrypted: bool) -> bytes:
        req = parse_request(raw)
        with self._lock:
            pending = self._pending.get(client_ip)
        if pending is None:
            raise RtspError(403, "no launch pending for this client")
        if pending.params.core_version >= 1 and not encrypted:
            raise RtspError(403, "this launch requires encrypted RTSP")
        if req.method == "OPTIONS":
            return build_response(req.cseq)
        if req.method == "DESCRIBE":
            caps = DescribeCaps(
                hevc=Codec.HEVC in self.services.codecs(),
                av1=Codec.AV1 in self.services.codecs(),
                rfi=self.services.supports_rfi(),
            )
            return build_response(req.cseq, body=describe_body(caps))
        if req.method == "SETUP":
            return self._setup(req.cseq, stream_type(req.target), pending)
        if req.method == "ANNOUNCE":
            if pending.announced:
                raise RtspError(400, "this launch was already announced")
            self._announce(pending, req.body, req.headers.get("host", ""))
            return build_response(req.cseq)
        if req.method == "PLAY":
            # The handshake is complete; the launch has become a session.
            with self._lock:
                if self._pending.get(client_ip) is pending:
                    del self._pending[client_ip]
            return build_response(req.cseq)
        raise RtspError(404, f"unsupported RTSP method {req.method}")

    def _setup(self, cseq: str, kind: str, pending: PendingLaunch) -> bytes:
        headers = {"Session": f"{SESSION_ID};timeout = 90"}
        if kind == "audio":
            headers["Transport"] = f"server_port={self._ports.audio}"
            headers["X-SS-Ping-Payload"] = pending.ping_payload.decode()
        elif kind == "video":
            headers["Transport"] = f"server_port={self._ports.video}"
            headers["X-SS-Ping-Payload"] = pending.ping_payload.decode()
        elif kind == "control":
            headers["Transport"] = f"server_port={self._ports.control}"
            headers["X-SS-Connect-Data"] = str(pending.connect_data)
        else:
            raise RtspError(404, f"unknown stream {kind!r}")
        return build_response(cseq, headers=headers)

    def _announce(self, pending: PendingLaunch, body: bytes, host_header: str) -> None:
        negotiation = parse_announce(body, host_header)
        codec = BITSTREAM_CODEC.get(negotiation.codec)
        if codec is None or codec not in self.services.codecs():
            raise RtspError(400, f"bitStreamFormat {negotiation.codec} is not offered")
        request = ClientRequest(
            DisplayMode(negotiation.width, negotiation.height, negotiation.fps),
            codec,
            negotiation.hdr,
            negotiation.bitrate_kbps,
        )
        session = StreamSession(
            pending,
            negotiation,
            self.services,
            self.video,
            self.audio,
            self.control.send,
            self._session_ended,
            self._opus_factory,
            self._video_loss_percent,
        )
        try:
            source = self.services.open_video(request, pending.client_fp[:16])
        except PlanError as exc:
            raise RtspError(400, f"cannot stream as asked: {exc}") from exc
        session.start(source)
        pending.announced = True
        with self._lock:
            self._sessions[pending.client_fp] = session

    def _session_ended(self, session: StreamSession, reason: str) -> None:
        with self._lock:
            if self._sessions.get(session.launch.client_fp) is session:
                del self._sessions[session.launch.client_fp]
        if session.control_peer is not None:
            self.control.disconnect(session.control_peer)

    # --- media and control ----------------------------------------------------------------

    def _by_payload(self, payload: bytes) -> StreamSession | None:
        return next((s for s in self.sessions() if s.launch.ping_payload == payload), None)

    def _video_ping(self, payload: bytes, addr: tuple[str, int]) -> None:
        session = self._by_payload(payload)
        if session is not None:
            session.on_video_ping(addr)

    def _audio_ping(self, payload: bytes, addr: tuple[str, int]) -> None:
        session = self._by_payload(payload)
        if session is not None:
            session.on_audio_ping(addr)

    def _control_connect(self, peer: int, data: int, client_ip: str) -> None:
        session = next((s for s in self.sessions() if s.launch.connect_data == data), None)
        if session is None:
            event(
                _log,
                "control.unknown_peer",
                logging.WARNING,
                client=client_ip,
                reason="connect data matches no session",
            )
            self.control.disconnect(peer)
            return
        event(_log, "control.connected", session=session.name)
        session.on_control_connected(peer)

    def _session_of_peer(self, peer: int) -> StreamSession | None:
        return next((s for s in self.sessions() if s.control_peer == peer), None)

    def _control_packet(self, peer: int, packet: bytes) -> None:
        session = self._session_of_peer(peer)
        if session is not None:
            session.on_control_packet(packet)

    def _control_gone(self, peer: int) -> None:
        session = self._session_of_peer(peer)
        if session is not None:
            session.control_peer = None
            threading.Thread(target=session.end, args=("client disconnected",), daemon=True).start()
