"""nvhttp, sans-I/O: a GameStream HTTP(S) request in, an XML reply out.

The socket shell (`httpd.py`) terminates TLS, identifies the client by its certificate and
hands each request here as an `HttpRequest`. Over plain HTTP only /serverinfo (unpaired view)
and pairing phases 1-4 are served; everything else needs HTTPS with a paired certificate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from xml.sax.saxutils import escape

from ..apps import App, AppList
from ..log import event
from .pairing import PairingCore

_log = logging.getLogger("punktfunk.gamestream.nvhttp")

APP_VERSION = "7.1.431.-1"  # negative 4th field: a Sunshine-class host (x-ss extensions)
GFE_VERSION = "3.23.0.74"
MAX_LUMA_PIXELS_HEVC = 1869449984

# ServerCodecModeSupport bits.
CODEC_H264 = 0x1
CODEC_HEVC = 0x100
CODEC_HEVC_MAIN10 = 0x200
CODEC_AV1 = 0x10000
CODEC_AV1_MAIN10 = 0x20000


@dataclass(frozen=True)
class HttpRequest:
    path: str
    params: Mapping[str, str]
    https: bool
    client_fp: str | None  # fingerprint of a *trusted* client cert (HTTPS only), else None
    local_ip: str
    client_ip: str = ""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/xml"


@dataclass(frozen=True)
class LaunchParams:
    """What /launch and /resume carry; the session is negotiated further over RTSP."""

    app: App
    width: int
    height: int
    fps: int
    ri_key: bytes
    ri_key_id: int
    surround_info: int
    hdr: bool
    core_version: int
    local_audio: bool
    resume: bool = False


@dataclass(frozen=True)
class HostFacts:
    """What /serverinfo reports; `codec_mask` comes from the encoder probe."""

    hostname: str
    unique_id: str
    mac: str
    codec_mask: int
    http_port: int
    https_port: int
    rtsp_port: int
    display_modes: tuple[tuple[int, int, int], ...] = ((1920, 1080, 60), (2560, 1440, 120))


class LaunchResult(Enum):
    OK = "ok"
    BUSY = "busy"
    FAILED = "failed"


@dataclass
class SessionHooks:
    """Callbacks into the host: which client streams what, start/stop sessions."""

    current_app: Callable[[str], int]  # client fp -> running app id, 0 if none
    # (client fp, client ip, params) -> (result, reason)
    launch: Callable[[str, str, LaunchParams], tuple[LaunchResult, str]]
    cancel: Callable[[str], bool]
    rtsp_encrypted: Callable[[LaunchParams], bool] = field(
        default=lambda params: params.core_version >= 1
    )


# Characters XML 1.0 cannot carry even escaped; a client's bytes echoed in a reason may hold them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: object, entities: dict[str, str] | None = None) -> str:
    return escape(_NOT_XML.sub("\ufffd", str(value)), entities or {})


def xml_reply(status: int = 200, message: str = "OK", **fields: object) -> bytes:
    body = "".join(f"<{k}>{_xml_text(v)}</{k}>" for k, v in fields.items())
    attr = _xml_text(message, {'"': "&quot;"})  # an attribute value: quotes must be escaped too
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<root status_code="{status}" status_message="{attr}">{body}</root>'
    ).encode()


def _ok(**fields: object) -> HttpResponse:
    return HttpResponse(200, xml_reply(**fields))


def _error(status: int, message: str) -> HttpResponse:
    return HttpResponse(200, xml_reply(status, message))


class BadRequest(Exception):
    pass


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int:
    if name not in params:
        if default is None:
            raise BadRequest(f"missing {name}")
        return default
    try:
        return int(params[name], 10)
    except ValueError:
        raise BadRequest(f"{name}={params[name]!r} is not a number") from None


def parse_launch(params: Mapping[str, str], apps: AppList, resume: bool) -> LaunchParams:
    """Validate /launch or /resume parameters (BadRequest names the bad one)."""
    app_id = _int(params, "appid", 0 if resume else None)
    app = apps.by_id(app_id) if app_id else apps.desktop
    if app is None:
        raise BadRequest(f"unknown appid {app_id}")
    try:
        width, height, fps = (int(x) for x in params.get("mode", "1920x1080x60").split("x"))
    except ValueError:
        raise BadRequest(f"mode={params.get('mode')!r} is not WxHxFPS") from None
    if not (0 < width <= 16384 and 0 < height <= 16384 and 0 < fps <= 1000):
        raise BadRequest(f"mode={params.get('mode')!r} is out of range")
    try:
        ri_key = bytes.fromhex(params.get("rikey", ""))
    except ValueError:
        raise BadRequest("rikey is not hex") from None
    if len(ri_key) != 16:
        raise BadRequest("rikey must be 16 bytes (AES-128)")
    return LaunchParams(
        app=app,
        width=width,
        height=height,
        fps=fps,
        ri_key=ri_key,
        ri_key_id=_int(params, "rikeyid"),
        surround_info=_int(params, "surroundAudioInfo", 0x30002),
        hdr=params.get("hdrMode", "0") == "1",
        core_version=_int(params, "corever", 0),
        local_audio=params.get("localAudioPlayMode", "0") == "1",
        resume=resume,
    )


class NvHttpCore:
    def __init__(
        self,
        facts: HostFacts,
        pairing: PairingCore,
        apps: AppList,
        hooks: SessionHooks,
        pin_for: Callable[[str, str], str | None],
    ) -> None:
        """`pin_for(unique_id, device_name)` returns the host-side PIN (it may block until the
        user enters one) or None if none came in time."""
        self.facts = facts
        self._pairing = pairing
        self._apps = apps
        self._hooks = hooks
        self._pin_for = pin_for

    def handle(self, req: HttpRequest) -> HttpResponse:
        route = req.path.rstrip("/") or "/"
        try:
            if route == "/serverinfo":
                return self._serverinfo(req)
            if route == "/pair":
                return self._pair(req)
            if route == "/unpair" and req.client_fp is None:
                # A client abandoning a failed pairing attempt (it cannot unpair a trust it
                # does not hold without its certificate).
                self._pairing.cancel(req.params.get("uniqueid", ""), req.client_ip)
                return _ok(unpaired=1)
            if route in ("/applist", "/launch", "/resume", "/cancel", "/appasset", "/unpair"):
                if req.client_fp is None:
                    return _error(401, "The client is not authorized. Pair it first.")
                return self._paired(route, req)
            return HttpResponse(404, xml_reply(404, f"no such resource {route}"))
        except BadRequest as exc:
            event(_log, "nvhttp.bad_request", logging.WARNING, path=route, reason=exc)
            return _error(400, str(exc))

    def _serverinfo(self, req: HttpRequest) -> HttpResponse:
        f = self.facts
        app = self._hooks.current_app(req.client_fp) if req.client_fp else 0
        modes = "".join(
            f"<DisplayMode><Width>{w}</Width><Height>{h}</Height>"
            f"<RefreshRate>{r}</RefreshRate></DisplayMode>"
            for w, h, r in f.display_modes
        )
        fields: dict[str, object] = {
            "hostname": f.hostname,
            "appversion": APP_VERSION,
            "GfeVersion": GFE_VERSION,
            "uniqueid": f.unique_id,
            "HttpsPort": f.https_port,
            "ExternalPort": f.http_port,
            "MaxLumaPixelsHEVC": MAX_LUMA_PIXELS_HEVC if f.codec_mask & CODEC_HEVC else 0,
            "mac": f.mac,
            "LocalIP": req.local_ip,
            "ServerCodecModeSupport": f.codec_mask,
            "PairStatus": 1 if req.https and req.client_fp else 0,
            "currentgame": app,
            "state": "SUNSHINE_SERVER_BUSY" if app else "SUNSHINE_SERVER_FREE",
        }
        body = xml_reply(**fields).replace(
            b"</root>", f"<SupportedDisplayMode>{modes}</SupportedDisplayMode></root>".encode()
        )
        return HttpResponse(200, body)

    def _pair(self, req: HttpRequest) -> HttpResponse:
        unique_id = req.params.get("uniqueid", "")
        phrase = req.params.get("phrase")
        if phrase == "getservercert":
            # A locked host answers at once: nobody is asked for a PIN it would refuse anyway.
            device = req.params.get("devicename", "unknown")
            if self._pairing.refusal(unique_id, req.client_ip, device) is not None:
                return _ok(paired=0)
            pin = self._pin_for(unique_id, device)
            if pin is None:
                event(
                    _log,
                    "pairing.failed",
                    logging.WARNING,
                    address=req.client_ip,
                    reason="no PIN entered in time",
                )
                return _ok(paired=0)
            return _ok(**self._pairing.get_server_cert(unique_id, req.params, pin, req.client_ip))
        if phrase == "pairchallenge":
            return _ok(paired=1 if req.https and req.client_fp else 0)
        return _ok(**self._pairing.handle(unique_id, req.params, req.client_ip))

    def _paired(self, route: str, req: HttpRequest) -> HttpResponse:
        fp = req.client_fp
        assert fp is not None
        if route == "/applist":
            apps = "".join(
                f"<App><IsHdrSupported>{1 if a.hdr else 0}</IsHdrSupported>"
                f"<AppTitle>{_xml_text(a.title)}</AppTitle><ID>{a.id}</ID></App>"
                for a in self._apps.apps
            )
            return HttpResponse(200, xml_reply().replace(b"</root>", apps.encode() + b"</root>"))
        if route == "/appasset":
            app = self._apps.by_id(_int(req.params, "appid"))
            if app is None:
                raise BadRequest(f"unknown appid {req.params.get('appid')}")
            return HttpResponse(200, self._apps.box_art(app), "image/png")
        if route == "/cancel":
            return _ok(cancel=1 if self._hooks.cancel(fp) else 0)
        if route == "/unpair":
            self._pairing.unpair(fp)
            return _ok(unpaired=1)
        params = parse_launch(req.params, self._apps, resume=route == "/resume")
        result, reason = self._hooks.launch(fp, req.client_ip, params)
        if result is not LaunchResult.OK:
            code = 503 if result is LaunchResult.BUSY else 500
            return _error(code, reason)
        scheme = "rtspenc" if self._hooks.rtsp_encrypted(params) else "rtsp"
        url = f"{scheme}://{req.local_ip}:{self.facts.rtsp_port}"
        if params.resume:
            return _ok(sessionUrl0=url, resume=1)
        return _ok(sessionUrl0=url, gamesession=1)
