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
from ..log import Throttle, event
from ..session.limit import SessionLimit
from ..session.plan import TYPICAL_MODE, ClientRequest, PlanError
from ..session.remote import GAMESTREAM_TARGET, RemoteSource, WorkerOpenError
from ..session.source import SessionServices, VideoSource
from ..supervise import supervised_thread
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
    RtspRequest,
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

SETUP_STAGE_TIMEOUT_S = 10.0
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
    limit: SessionLimit | None = None  # max_sessions, shared with the native host (serve sets it)

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
        setup_stage_timeout_s: float = SETUP_STAGE_TIMEOUT_S,
        hostname: str | None = None,
        workers: bool = False,
    ) -> None:
        self.services = services
        self._setup_timeout_s = setup_stage_timeout_s
        self._video_loss_percent = video_loss_percent
        # Each session's capture, encode, FEC and send in a worker process of its own (the
        # simulated loss of tests lives in this process's sink: those stay here).
        self.workers = workers and not video_loss_percent
        self.trust = TrustStore(state_dir / "gamestream" / "clients")
        self._pins = pins
        self._apps = apps or AppList()
        self._opus_factory = opus_factory
        self._lock = threading.RLock()
        self._pending: dict[str, PendingLaunch] = {}  # by client ip
        self._sessions: dict[str, StreamSession] = {}  # by client cert fingerprint
        self._stop = threading.Event()
        facts = HostFacts(
            hostname=hostname or socket.gethostname(),
            unique_id=identity.unique_id,
            mac="00:00:00:00:00:00",
            # Moonlight reads this before it names its mode: judged at the typical 1080p60.
            codec_mask=codec_mask(services.sustainable_codecs(TYPICAL_MODE), services.hdr_codecs()),
            http_port=ports.http,
            https_port=ports.https,
            rtsp_port=ports.rtsp,
        )
        hooks = SessionHooks(
            current_app=self._current_app, launch=self._launch, cancel=self._cancel
        )
        self.core = NvHttpCore(
            facts,
            PairingCore(identity, self.trust, lock=pins.lock, pins=pins),
            self._apps,
            hooks,
            pins.wait_for_pin,
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
        self._watchdog = supervised_thread("gs-watchdog", self._watch, self._stop)
        self._throttle = Throttle()

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
            # Before ANNOUNCE a launch holds no monitor: forgetting it is all it takes.
            with self._lock:
                for ip, pending in list(self._pending.items()):
                    reason = pending.stalled(self._setup_timeout_s)
                    if reason is not None and not pending.announced:
                        del self._pending[ip]
                        event(
                            _log,
                            "launch.expired",
                            logging.WARNING,
                            client=pending.client_name,
                            address=ip,
                            reason=reason,
                        )
            for session in self.sessions():
                reason = session.launch.stalled(self._setup_timeout_s)
                if reason is not None:
                    session.end(reason)
                elif (
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
        refusal = self.limit.refusal("gamestream", name) if self.limit and old is None else None
        if refusal is not None:
            return LaunchResult.BUSY, refusal
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
        reply = self._rtsp_reply(req.method, req, pending)
        pending.reach(f"RTSP {req.method}")
        return reply

    def _rtsp_reply(self, method: str, req: RtspRequest, pending: PendingLaunch) -> bytes:
        if method == "OPTIONS":
            return build_response(req.cseq)
        if method == "DESCRIBE":
            # moonlight-common-c picks its codec from this reply (AV1 rtpmap, else the HEVC
            # VPS marker, else H.264) and only then ANNOUNCEs it: the last point at which the
            # host can steer it, with the mode from /launch known. Unsustainable codecs stay out.
            params = pending.params
            mode = DisplayMode(params.width, params.height, params.fps or 60)
            offered = self.services.sustainable_codecs(mode)
            withheld = self.services.codecs() - offered
            if withheld:
                event(_log, "rtsp.codecs_withheld", client=pending.client_ip, mode=mode,
                      withheld="|".join(sorted(withheld)), offered="|".join(sorted(offered)),
                      reason="the encoder cannot hold the mode's rate")  # fmt: skip
            caps = DescribeCaps(
                hevc=Codec.HEVC in offered,
                av1=Codec.AV1 in offered,
                rfi=self.services.supports_rfi(),
            )
            return build_response(req.cseq, body=describe_body(caps))
        if method == "SETUP":
            return self._setup(req.cseq, stream_type(req.target), pending)
        if method == "ANNOUNCE":
            # Announced from here on, so the deadline leaves a monitor that opens slowly alone.
            with self._lock:
                if pending.announced:
                    raise RtspError(400, "this launch was already announced")
                pending.announced = True
            try:
                self._announce(pending, req.body, req.headers.get("host", ""))
            except BaseException:
                pending.announced = False
                raise
            return build_response(req.cseq)
        if method == "PLAY":
            # The handshake is complete; the launch has become a session.
            with self._lock:
                if self._pending.get(pending.client_ip) is pending:
                    del self._pending[pending.client_ip]
            return build_response(req.cseq)
        raise RtspError(404, f"unsupported RTSP method {method}")

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
        mode = DisplayMode(negotiation.width, negotiation.height, negotiation.fps)
        # The codec is the client's (its decoder is set up for it); what DESCRIBE withheld
        # from its choice is this session's downgrade, so say so with the plan.
        withheld = sorted(self.services.codecs() - self.services.sustainable_codecs(mode))
        notes = (
            (f"{'|'.join(withheld)} not offered at DESCRIBE: cannot hold {mode}",)
            if withheld and codec not in withheld
            else ()
        )
        request = ClientRequest(mode, codec, negotiation.hdr, negotiation.bitrate_kbps,
                                notes=notes, app=pending.params.app.title)  # fmt: skip
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
            source = self._open_source(request, pending.client_fp[:16], session)
        except PlanError as exc:
            raise RtspError(400, f"cannot stream as asked: {exc}") from exc
        except WorkerOpenError as exc:
            raise RtspError(503, f"cannot stream: {exc}") from exc
        session.start(source)
        pending.reach("RTSP ANNOUNCE")  # before the watchdog can see the session
        with self._lock:
            self._sessions[pending.client_fp] = session

    def _open_source(
        self, request: ClientRequest, client_id: str, session: StreamSession
    ) -> VideoSource:
        if not self.workers:
            return self.services.open_video(request, client_id)
        return RemoteSource(self.services, request, client_id, session.name, session.stats,  # type: ignore[return-value]
                            audio=self._opus_factory is not None,
                            target=GAMESTREAM_TARGET)  # fmt: skip

    def _session_ended(self, session: StreamSession, reason: str) -> None:
        launch = session.launch
        with self._lock:
            if self._sessions.get(launch.client_fp) is session:
                del self._sessions[launch.client_fp]
            if self._pending.get(launch.client_ip) is launch:  # ended before its PLAY
                del self._pending[launch.client_ip]
        if session.control_peer is not None:
            self.control.disconnect(session.control_peer)

    # --- media and control ----------------------------------------------------------------

    def _by_payload(self, payload: bytes, addr: tuple[str, int]) -> StreamSession | None:
        """The session a media ping starts: its payload is the session's secret, and it must
        come from the address that launched it, so nobody can turn a stream elsewhere."""
        session = next((s for s in self.sessions() if s.launch.ping_payload == payload), None)
        if session is not None and session.launch.client_ip != addr[0]:
            self._throttle.event(
                _log,
                "media.foreign_ping",
                logging.WARNING,
                client=addr[0],
                session=session.name,
                reason="not the launching address",
            )
            return None
        return session

    def _video_ping(self, payload: bytes, addr: tuple[str, int]) -> None:
        session = self._by_payload(payload, addr)
        if session is not None:
            session.launch.reach("first video ping")
            session.on_video_ping(addr)

    def _audio_ping(self, payload: bytes, addr: tuple[str, int]) -> None:
        session = self._by_payload(payload, addr)
        if session is not None:
            session.on_audio_ping(addr)

    def _control_connect(self, peer: int, data: int, client_ip: str) -> None:
        session = next((s for s in self.sessions() if s.launch.connect_data == data), None)
        if session is None:
            self._throttle.event(_log, "control.unknown_peer", logging.WARNING, client=client_ip,
                                 reason="connect data matches no session")  # fmt: skip
            self.control.disconnect(peer)
            return
        event(_log, "control.connected", session=session.name)
        session.launch.reach("control connect")
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
