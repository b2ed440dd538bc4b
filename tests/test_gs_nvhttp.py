"""nvhttp as a Moonlight client sees it: /serverinfo fields, pairing over HTTP then HTTPS, the
401 gate, /launch parameter validation, sessionUrl0, /applist, /cancel, /appasset (a valid
PNG), /unpair. Every reply must be XML a client can parse, whatever the request carried.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gs_client import PairingClient, parse_xml, shared_client_identity
from punktfunk.apps import DESKTOP_ID, App, AppList
from punktfunk.gamestream.nvhttp import (
    HostFacts,
    HttpRequest,
    LaunchParams,
    LaunchResult,
    NvHttpCore,
    SessionHooks,
)
from punktfunk.gamestream.pairing import PairingCore
from punktfunk.gamestream.trust import TrustStore, fingerprint
from punktfunk.identity import HostIdentity, load_or_create

PIN = "7351"
RIKEY = bytes(range(16))
LOCAL_IP = "192.168.1.50"


@dataclass
class Sessions:
    """The host side of SessionHooks, recording what nvhttp asked for."""

    running: dict[str, int] = field(default_factory=dict)
    launches: list[tuple[str, str, LaunchParams]] = field(default_factory=list)
    result: tuple[LaunchResult, str] = (LaunchResult.OK, "")

    def current_app(self, fp: str) -> int:
        return self.running.get(fp, 0)

    def launch(self, fp: str, ip: str, params: LaunchParams) -> tuple[LaunchResult, str]:
        self.launches.append((fp, ip, params))
        if self.result[0] is LaunchResult.OK:
            self.running[fp] = params.app.id
        return self.result

    def cancel(self, fp: str) -> bool:
        return self.running.pop(fp, None) is not None


@dataclass
class Host:
    core: NvHttpCore
    pairing: PairingCore
    trust: TrustStore
    sessions: Sessions
    identity: HostIdentity
    pins: list[tuple[str, str]]
    apps: AppList

    def get(self, path: str, https: bool = False, fp: str | None = None, **params: str):
        req = HttpRequest(path, params, https, fp, LOCAL_IP, "192.168.1.77")
        return self.core.handle(req)

    def xml(self, path: str, https: bool = False, fp: str | None = None, **params: str):
        response = self.get(path, https, fp, **params)
        assert response.content_type == "application/xml"
        return parse_xml(response.body)


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> HostIdentity:
    return load_or_create(tmp_path_factory.mktemp("nvhost"))


def make_host(identity: HostIdentity, directory: Path, codec_mask: int = 0x10301) -> Host:
    trust = TrustStore(directory / "clients")
    pairing = PairingCore(identity, trust)
    sessions = Sessions()
    apps = AppList((App(1234, "Steam & Friends <Big Picture>", ("steam",), hdr=False),))
    pins: list[tuple[str, str]] = []

    def pin_for(unique_id: str, name: str) -> str | None:
        pins.append((unique_id, name))
        return PIN

    facts = HostFacts(
        hostname="punk-host",
        unique_id=identity.unique_id,
        mac="02:00:00:12:34:56",
        codec_mask=codec_mask,
        http_port=47989,
        https_port=47984,
        rtsp_port=48010,
    )
    hooks = SessionHooks(sessions.current_app, sessions.launch, sessions.cancel)
    core = NvHttpCore(facts, pairing, apps, hooks, pin_for)
    return Host(core, pairing, trust, sessions, identity, pins, apps)


@pytest.fixture
def host(identity: HostIdentity, tmp_path: Path) -> Host:
    return make_host(identity, tmp_path)


def pair(host: Host, index: int = 0) -> str:
    """Pair over nvhttp like Moonlight: phases 1-4 over HTTP, phase 5 over HTTPS."""
    ident = shared_client_identity(index)
    client = PairingClient(ident, PIN, unique_id=f"c{index}")
    client.on_phase1(host.xml("/pair", **client.phase1_params()).fields)
    client.on_phase2(host.xml("/pair", **client.phase2_params()).fields)
    assert client.on_phase3(host.xml("/pair", **client.phase3_params()).fields) == (True, True)
    reply = host.xml("/pair", **client.phase4_params())
    assert reply.status_code == 200 and reply.fields["paired"] == "1"
    fp = fingerprint(ident.cert)
    assert host.trust.get(fp) is not None
    # Phase 5 is the first mutual-TLS request: the TLS layer now identifies the client.
    assert host.xml("/pair", True, fp, **client.phase5_params()).fields["paired"] == "1"
    return fp


def launch_params(**overrides: str) -> dict[str, str]:
    params = {
        "uniqueid": "c0",
        "appid": str(DESKTOP_ID),
        "mode": "2560x1440x120",
        "additionalStates": "1",
        "sops": "0",
        "rikey": RIKEY.hex(),
        "rikeyid": "-1698720153",
        "localAudioPlayMode": "0",
        "surroundAudioInfo": str((0x3F << 16) | 6),
        "remoteControllersBitmap": "1",
        "gcmap": "1",
        "gcpersist": "0",
        "corever": "1",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def quad(version: str) -> list[int]:
    return [int(part) for part in version.split(".")]


# --- /serverinfo ------------------------------------------------------------------------------


def test_serverinfo_over_http_unpaired(host: Host) -> None:
    reply = host.xml("/serverinfo", uniqueid="x")
    f = reply.fields
    assert reply.status_code == 200
    assert f["appversion"] == "7.1.431.-1"
    q = quad(f["appversion"])
    assert q[3] < 0 and q[:3] >= [7, 1, 431]  # IS_SUNSHINE and APP_VERSION_AT_LEAST(7,1,431)
    assert q[0] >= 7  # SHA-256 pairing
    assert f["GfeVersion"] == "3.23.0.74"
    assert f["hostname"] == "punk-host"
    assert f["uniqueid"] == host.identity.unique_id
    assert f["HttpsPort"] == "47984" and f["ExternalPort"] == "47989"
    assert f["LocalIP"] == LOCAL_IP
    assert int(f["ServerCodecModeSupport"]) == 0x10301
    assert f["MaxLumaPixelsHEVC"] == "1869449984"
    assert f["PairStatus"] == "0"
    assert f["currentgame"] == "0"
    assert f["state"] == "SUNSHINE_SERVER_FREE"
    for required in ("currentgame", "PairStatus", "appversion", "state", "mac"):
        assert required in f


def test_serverinfo_without_hevc_reports_no_luma_limit(identity: HostIdentity, tmp_path: Path):
    host = make_host(identity, tmp_path, codec_mask=0x1)
    f = host.xml("/serverinfo").fields
    assert f["ServerCodecModeSupport"] == "1"
    assert f["MaxLumaPixelsHEVC"] == "0"


def test_serverinfo_display_modes(host: Host) -> None:
    root = host.xml("/serverinfo").root
    modes = root.findall("./SupportedDisplayMode/DisplayMode")
    assert [(m.findtext("Width"), m.findtext("Height"), m.findtext("RefreshRate")) for m in modes]


def test_pairstatus_only_over_https_with_a_trusted_client(host: Host) -> None:
    fp = pair(host)
    assert host.xml("/serverinfo", True, fp).fields["PairStatus"] == "1"
    assert host.xml("/serverinfo", True, None).fields["PairStatus"] == "0"
    assert host.xml("/serverinfo", False, None).fields["PairStatus"] == "0"


def test_state_busy_while_the_client_streams(host: Host) -> None:
    fp = pair(host)
    reply = host.xml("/launch", True, fp, **launch_params(appid="1234"))
    assert reply.status_code == 200
    f = host.xml("/serverinfo", True, fp).fields
    assert f["state"] == "SUNSHINE_SERVER_BUSY" and f["state"].endswith("_SERVER_BUSY")
    assert f["currentgame"] == "1234"
    assert host.xml("/cancel", True, fp).fields["cancel"] == "1"
    f = host.xml("/serverinfo", True, fp).fields
    assert (f["state"], f["currentgame"]) == ("SUNSHINE_SERVER_FREE", "0")


# --- pairing through nvhttp -------------------------------------------------------------------


def test_pairing_asks_for_the_pin_with_the_device_name(host: Host) -> None:
    pair(host)
    assert host.pins == [("c0", "roth")]


def test_no_pin_entered_answers_paired_0(host: Host) -> None:
    host.core._pin_for = lambda uid, name: None
    client = PairingClient(shared_client_identity(0), PIN)
    reply = host.xml("/pair", **client.phase1_params())
    assert reply.status_code == 200 and reply.fields["paired"] == "0"
    assert not host.pairing.pending(client.unique_id)


def test_pairchallenge_without_trusted_cert_is_not_paired(host: Host) -> None:
    assert host.xml("/pair", True, None, phrase="pairchallenge").fields["paired"] == "0"
    assert host.xml("/pair", False, None, phrase="pairchallenge").fields["paired"] == "0"


def test_wrong_pin_through_nvhttp_reports_paired_0_with_status_200(host: Host) -> None:
    client = PairingClient(shared_client_identity(0), "0000")
    client.on_phase1(host.xml("/pair", **client.phase1_params()).fields)
    client.on_phase2(host.xml("/pair", **client.phase2_params()).fields)
    assert client.on_phase3(host.xml("/pair", **client.phase3_params()).fields) == (True, False)
    reply = host.xml("/pair", **client.phase4_params())
    assert reply.status_code == 200 and reply.fields["paired"] == "0"  # clients read <paired>
    assert host.trust.clients() == []


def test_unpair_over_http_abandons_an_attempt(host: Host) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    client.on_phase1(host.xml("/pair", **client.phase1_params()).fields)
    assert host.xml("/unpair", uniqueid=client.unique_id).fields["unpaired"] == "1"
    assert host.xml("/pair", **client.phase2_params()).fields["paired"] == "0"


def test_unpair_over_https_forgets_the_client(host: Host) -> None:
    fp = pair(host)
    assert host.xml("/unpair", True, fp).fields["unpaired"] == "1"
    assert host.trust.get(fp) is None


# --- the 401 gate -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/applist", "/launch", "/resume", "/cancel", "/appasset"])
@pytest.mark.parametrize("https", [False, True])
def test_unauthenticated_access_is_refused(host: Host, path: str, https: bool) -> None:
    reply = host.xml(path, https, None, **launch_params())
    assert reply.status_code == 401
    assert reply.status_message
    assert host.sessions.launches == []


def test_unknown_resource_is_404(host: Host) -> None:
    response = host.get("/nope")
    assert response.status == 404
    assert parse_xml(response.body).status_code == 404


def test_unknown_resource_with_a_quote_still_answers_xml(host: Host) -> None:
    parse_xml(host.get('/x"y<z>&').body)


# --- /applist ---------------------------------------------------------------------------------


def test_applist(host: Host) -> None:
    fp = pair(host)
    reply = host.xml("/applist", True, fp)
    assert reply.status_code == 200
    apps = reply.root.findall("App")
    listed = {}
    for app in apps:
        title, app_id = app.findtext("AppTitle"), app.findtext("ID")
        assert title is not None and app_id is not None  # else "Invalid applist XML"
        assert app.findtext("IsHdrSupported") in ("0", "1")
        listed[int(app_id)] = title
    assert listed == {DESKTOP_ID: "Desktop", 1234: "Steam & Friends <Big Picture>"}
    assert all(0 < i < 2**31 for i in listed)


# --- /launch and /resume ----------------------------------------------------------------------


def test_launch_returns_rtspenc_url_and_passes_parameters(host: Host) -> None:
    fp = pair(host)
    reply = host.xml("/launch", True, fp, **launch_params(hdrMode="1", localAudioPlayMode="1"))
    assert reply.status_code == 200
    assert reply.fields["sessionUrl0"] == f"rtspenc://{LOCAL_IP}:48010"
    assert reply.fields["gamesession"] == "1"
    ((got_fp, ip, params),) = host.sessions.launches
    assert (got_fp, ip) == (fp, "192.168.1.77")
    assert (params.width, params.height, params.fps) == (2560, 1440, 120)
    assert params.ri_key == RIKEY
    assert params.ri_key_id == -1698720153  # signed, as Moonlight prints it
    assert params.surround_info == (0x3F << 16) | 6
    assert params.hdr and params.local_audio
    assert params.core_version == 1
    assert params.app.id == DESKTOP_ID and not params.resume


@pytest.mark.parametrize("corever", [None, "0"])
def test_launch_without_corever_uses_plain_rtsp(host: Host, corever: str | None) -> None:
    fp = pair(host)
    reply = host.xml("/launch", True, fp, **launch_params(corever=corever))
    assert reply.fields["sessionUrl0"] == f"rtsp://{LOCAL_IP}:48010"
    params = host.sessions.launches[0][2]
    assert params.core_version == 0
    assert params.surround_info == (0x3F << 16) | 6


def test_launch_defaults_to_stereo(host: Host) -> None:
    fp = pair(host)
    host.xml("/launch", True, fp, **launch_params(surroundAudioInfo=None))
    assert host.sessions.launches[0][2].surround_info == 196610


def test_resume(host: Host) -> None:
    fp = pair(host)
    reply = host.xml("/resume", True, fp, **launch_params(appid=None, corever="1"))
    assert reply.status_code == 200
    assert reply.fields["resume"] == "1"
    assert reply.fields["sessionUrl0"].startswith("rtspenc://")
    assert host.sessions.launches[0][2].resume


@pytest.mark.parametrize(
    "overrides",
    [
        {"rikey": None},
        {"rikey": "xyz"},
        {"rikey": RIKEY.hex()[:-2]},
        {"rikey": RIKEY.hex() + "00"},
        {"rikeyid": None},
        {"rikeyid": "12ab"},
        {"rikeyid": ""},
        {"appid": None},
        {"appid": "99"},
        {"appid": "one"},
        {"mode": "1920x1080"},
        {"mode": "axbxc"},
        {"mode": "1920x1080x60x1"},
        {"surroundAudioInfo": "stereo"},
        {"corever": "v1"},
        {"mode": "1'x2"},
        {"rikeyid": "9'9"},
        {"appid": '1"2'},
    ],
)
def test_launch_validation_errors_are_400_with_a_message(
    host: Host, overrides: dict[str, str | None]
) -> None:
    fp = pair(host)
    reply = host.xml("/launch", True, fp, **launch_params(**overrides))
    assert reply.status_code == 400
    assert reply.status_message
    assert host.sessions.launches == []


def test_launch_failures_are_reported(host: Host) -> None:
    fp = pair(host)
    host.sessions.result = (LaunchResult.BUSY, "An app is already running on this host")
    reply = host.xml("/launch", True, fp, **launch_params())
    assert (reply.status_code, reply.status_message) == (
        503,
        "An app is already running on this host",
    )
    host.sessions.result = (LaunchResult.FAILED, 'encoder said "no"')
    reply = host.xml("/launch", True, fp, **launch_params())
    assert (reply.status_code, reply.status_message) == (500, 'encoder said "no"')


@pytest.fixture(scope="module")
def fuzz_host(identity: HostIdentity, tmp_path_factory: pytest.TempPathFactory) -> Host:
    return make_host(identity, tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["appid", "mode", "rikey", "rikeyid", "surroundAudioInfo", "corever", "hdrMode"]
        ),
        st.one_of(st.text(max_size=40), st.text(alphabet="0123456789xabcdef-'\"<>& ", max_size=40)),
    ),
    st.sampled_from(["/launch", "/resume", "/appasset", "/cancel", "/applist", "/serverinfo"]),
)
def test_no_request_raises_and_every_reply_is_xml_or_png(fuzz_host: Host, params, path) -> None:
    """A paired client (HTTPS, trusted fingerprint) sending anything at all."""
    response = fuzz_host.core.handle(HttpRequest(path, params, True, "f" * 64, LOCAL_IP))
    if response.content_type == "image/png":
        assert response.body.startswith(b"\x89PNG\r\n\x1a\n")
        return
    reply = parse_xml(response.body)
    assert reply.status_code in (200, 400, 500, 503)
    if reply.status_code != 200:
        assert reply.status_message


# --- /cancel, /appasset -----------------------------------------------------------------------


def test_cancel_without_a_session(host: Host) -> None:
    fp = pair(host)
    reply = host.xml("/cancel", True, fp)
    assert reply.status_code == 200 and reply.fields["cancel"] == "0"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), f"bad CRC on {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


@pytest.mark.parametrize("app_id", [DESKTOP_ID, 1234])
def test_appasset_is_a_valid_png(host: Host, app_id: int) -> None:
    fp = pair(host)
    response = host.get("/appasset", True, fp, appid=str(app_id), AssetType="2", AssetIdx="0")
    assert response.status == 200 and response.content_type == "image/png"
    chunks = _png_chunks(response.body)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, comp, filt, interlace) == (8, 0, 0, 0) and color in (2, 6)
    assert width > 0 and height > 0
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    bpp = 3 if color == 2 else 4
    assert len(pixels) == height * (1 + bpp * width)
    assert all(pixels[row * (1 + bpp * width)] <= 4 for row in range(height))  # filter types


@pytest.mark.parametrize("params", [{}, {"appid": "77"}, {"appid": "x"}])
def test_appasset_bad_appid(host: Host, params: dict[str, str]) -> None:
    fp = pair(host)
    reply = host.xml("/appasset", True, fp, **params)
    assert reply.status_code == 400 and reply.status_message
