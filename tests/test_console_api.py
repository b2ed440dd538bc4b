"""The management API of a real `punktfunk serve` (native host, pattern display) over HTTPS.

One host for the module, its console bound to 0.0.0.0 with `console_allow=127.0.0.1/32`, so the
source-address rule can be exercised from 127.0.0.2 (still loopback: no traffic leaves the
machine). What that proves: the console refuses, before any authentication, a source outside
`console_allow`, and the default `loopback` allow list admits exactly 127/8 and ::1 (checked on
the rule itself below: a real non-loopback peer cannot be made on this machine). A real
`punktfunk probe` stream feeds the session routes, the event stream and the metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from console_client import ConsoleClient, password_from
from gs_host import BASE_PORT
from punktfunk.console.server import parse_allow, source_allowed

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
CONSOLE_PORT = BASE_PORT + 40
NATIVE_PORT = BASE_PORT + 41
PIN = "4321"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    env.update(PUNKTFUNK_STATE_DIR=str(tmp / "state"), PUNKTFUNK_CONFIG=str(tmp / "host.env"))
    return env


class Host:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env_file = tmp / "host.env"
        self.env_file.write_text("# written by the test\nPUNKTFUNK_BITRATE_MAX_KBPS=150000\n")
        self.log = tmp / "host.log"
        self.proc = subprocess.Popen(
            [str(PUNKTFUNK), "serve", "--display", "pattern", "--pin", PIN, "--no-mdns",
             "--native-port", str(NATIVE_PORT), "--bind-address", "127.0.0.1",
             "--monitor-linger-ms", "0", "--console-port", str(CONSOLE_PORT),
             "--console-bind", "0.0.0.0", "--console-allow", "127.0.0.1/32",
             "--max-sessions", "1"],
            env=_env(tmp), stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "console.ready" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the host did not start:\n{self.text()[-3000:]}")
            time.sleep(0.2)
        self.cert = tmp / "state" / "identity" / "host.crt"
        self.password = password_from(self.text())

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kw: str) -> ConsoleClient:
        return ConsoleClient(CONSOLE_PORT, self.cert, **kw)

    def token(self, scope: str) -> str:
        out = subprocess.run([str(PUNKTFUNK), "token", "create", "--scope", scope],
                             env=_env(self.tmp), capture_output=True, text=True,
                             timeout=30, check=True)  # fmt: skip
        return out.stdout.strip()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    h = Host(tmp_path_factory.mktemp("console"))
    yield h
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(timeout=30) == 0
    assert "console.unavailable" not in h.text()


@pytest.fixture(scope="module")
def admin(host: Host) -> ConsoleClient:
    return host.client(token=host.token("admin"))


@pytest.fixture(scope="module")
def spec(admin: ConsoleClient) -> dict:
    answer = admin.request("GET", "/api/openapi.json")
    assert answer.status == 200
    return answer.json()  # type: ignore[return-value]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nothing", path).replace("/nothing/nothing", "/native/nothing")


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(m.upper(), p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def _check(spec: dict, op: dict, answer, status: int = 200) -> None:
    """The answer has a documented status, content type and (for JSON) schema."""
    assert str(answer.status) in op["responses"], (answer.status, op["operationId"])
    content = op["responses"][str(answer.status)]["content"]
    kind = answer.headers["content-type"].split(";")[0]
    if kind == "text/plain" and "text/plain" not in content:
        raise AssertionError(f"{op['operationId']} answered {kind}")
    assert kind in content or kind.startswith("text/plain"), (kind, list(content))
    if kind == "application/json":
        OAS30Validator(content[kind]["schema"]).validate(answer.json())
    assert answer.status == status, (op["operationId"], answer.status, answer.body[:300])


def test_openapi_document_is_valid(spec: dict) -> None:
    validate(spec)  # raises on an invalid OpenAPI 3 document
    assert {"/api/sessions", "/api/events", "/metrics", "/api/settings"} <= set(spec["paths"])


def test_without_auth_every_route_but_login_is_401(host: Host, spec: dict) -> None:
    anonymous = host.client()
    for method, path, op in _operations(spec):
        answer = anonymous.request(method, _concrete(path), {} if method != "GET" else None)
        if path == "/api/login":
            assert answer.status == 400  # no password given: a bad request, not a session
            continue
        assert answer.status == 401, (method, path, answer.status)
        _check(spec, op, answer, 401)
    assert anonymous.login("wrong").status == 401


def test_read_token_reads_but_changes_nothing(host: Host, spec: dict) -> None:
    reader = host.client(token=host.token("read"))
    before = host.env_file.read_text()
    for method, path, op in _operations(spec):
        if method == "GET":
            if "{" not in path and path != "/api/events":
                _check(spec, op, reader.request(method, path))
            continue
        if path in ("/api/login",):
            continue
        answer = reader.request(method, _concrete(path), {"bitrate_max_kbps": "9000"})
        assert answer.status == 403, (method, path, answer.status)
    assert host.env_file.read_text() == before


def test_browser_post_without_csrf_token_is_refused(host: Host, spec: dict) -> None:
    browser = host.client()
    login = browser.login(host.password)
    _check(spec, spec["paths"]["/api/login"]["post"], login)
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict"):
        assert attribute in login.headers["set-cookie"]
    before = host.env_file.read_text()
    for method, path, body in (("PATCH", "/api/settings", {"bitrate_max_kbps": "9000"}),
                               ("POST", "/api/pairing", {"pin": "1234"}),
                               ("PUT", "/api/apps", [])):  # fmt: skip
        answer = browser.request(method, path, body, csrf=False)
        assert answer.status == 403 and b"CSRF" in answer.body, (path, answer.body)
    assert host.env_file.read_text() == before
    answer = browser.request("PATCH", "/api/settings", {"bitrate_max_kbps": "90000"})
    _check(spec, spec["paths"]["/api/settings"]["patch"], answer)
    text = host.env_file.read_text()
    assert "PUNKTFUNK_BITRATE_MAX_KBPS=90000" in text and "# written by the test" in text
    assert oct(host.env_file.stat().st_mode & 0o777) in ("0o600", "0o644")
    bad = browser.request("PATCH", "/api/settings", {"bitrate_max_kbps": "12"})
    assert bad.status == 400 and b"500..1000000" in bad.body  # the registry's allowed values
    assert "PUNKTFUNK_BITRATE_MAX_KBPS=90000" in host.env_file.read_text()
    _check(spec, spec["paths"]["/api/logout"]["post"], browser.request("POST", "/api/logout"))
    assert browser.request("GET", "/api/whoami").status == 401  # the session is gone


def test_source_outside_console_allow_is_refused(host: Host, admin: ConsoleClient) -> None:
    outsider = host.client(source="127.0.0.2", token=admin.token)
    answer = outsider.request("GET", "/api/info")
    assert answer.status == 403 and b"console_allow" in answer.body
    assert outsider.request("POST", "/api/login", {"password": host.password}).status == 403
    assert admin.request("GET", "/api/info").status == 200
    # The default rule (console_allow=loopback) on its own: loopback only, v4-mapped too.
    default = parse_allow("loopback")
    for address, allowed in (("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                             ("192.0.2.7", False), ("::ffff:192.0.2.7", False),
                             ("10.0.0.1", False), ("2001:db8::1", False)):  # fmt: skip
        assert source_allowed(address, default) is allowed, address


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        wanted = all(f'{k}="{v}"' in line for k, v in labels.items())
        if line.startswith((name + "{", name + " ")) and wanted:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _read_event(client: ConsoleClient, kind: str, timeout: float = 20) -> dict:
    conn = client.connection(timeout=timeout)
    try:
        conn.request("GET", "/api/events", headers=client.headers("GET"))
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type", "").startswith("text/event-stream")
        deadline = time.monotonic() + timeout
        current = ""
        while time.monotonic() < deadline:
            line = resp.fp.readline().decode().strip()
            if line.startswith("event: "):
                current = line[7:]
            elif line.startswith("data: ") and current == kind:
                return json.loads(line[6:])
        raise AssertionError(f"no {kind} event within {timeout} s")
    finally:
        conn.close()


def test_routes_events_and_metrics_during_a_stream(host: Host, admin: ConsoleClient,
                                                   spec: dict) -> None:  # fmt: skip
    probe = subprocess.Popen(
        [str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(NATIVE_PORT), "--pin", PIN,
         "--client-dir", str(host.tmp / "client"), "--mode", "640x360@30", "--seconds", "40",
         "--json"],
        env=_env(host.tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        sessions: list = []
        while not sessions and time.monotonic() < deadline:
            sessions = admin.request("GET", "/api/sessions").json()  # type: ignore[assignment]
            time.sleep(0.3)
        assert sessions, "the probe's session never showed"
        name = sessions[0]["name"]
        stats = _read_event(admin, "stats")
        assert stats["session"] == name and stats["fps"] >= 0
        first = admin.request("GET", "/metrics")
        assert first.status == 200
        time.sleep(2.5)
        second = admin.request("GET", "/metrics").body.decode()
        label = {"session": name, "stage": "host_latency"}
        count = "punktfunk_stage_latency_seconds_count"
        before = _metric(first.body.decode(), count, **label)
        after = _metric(second, count, **label)
        assert after > before > 0, (before, after)  # the histogram moves while frames flow
        bucket = "punktfunk_stage_latency_seconds_bucket"
        assert _metric(second, bucket, le="+Inf", **label) == after
        assert _metric(second, "punktfunk_session_frames_total", session=name) > 0
        assert _metric(second, "punktfunk_sessions", protocol="native") == 1
        assert _metric(second, "punktfunk_paired_clients", protocol="native") == 1
        assert _metric(second, "punktfunk_pairing_attempts_total", protocol="native") >= 1
        refusals_before = _metric(second, "punktfunk_sessions_refused_total")

        # max_sessions=1: a second client is refused with the reason, and the console says so.
        extra = subprocess.run(
            [str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(NATIVE_PORT), "--pin", PIN,
             "--client-dir", str(host.tmp / "client2"), "--seconds", "3", "--json"],
            env=_env(host.tmp), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert extra.returncode != 0 and "max_sessions" in extra.stdout, extra.stdout
        info = admin.request("GET", "/api/info").json()
        assert "max_sessions" in info["refusals"][-1]["reason"]  # type: ignore[index]
        assert len(admin.request("GET", "/api/sessions").json()) == 1  # type: ignore[arg-type]
        scraped = admin.request("GET", "/metrics").body.decode()
        assert _metric(scraped, "punktfunk_sessions_refused_total") > refusals_before

        paths = spec["paths"]
        for path, ops in paths.items():
            if "get" in ops and path not in ("/api/events",):
                concrete = path.replace("{name}", name)
                if "{" not in concrete:
                    _check(spec, ops["get"], admin.request("GET", concrete))
        status = admin.request("GET", "/api/status").json()
        assert status["native"]["sessions"][0]["name"] == name and "health" in status  # type: ignore[index]
        _check(spec, paths["/api/logs"]["get"], admin.request("GET", "/api/logs?level=WARNING"))
        fp = next(c["fingerprint"] for c in admin.request("GET", "/api/clients").json()  # type: ignore[union-attr]
                  if c["name"] == sessions[0]["client"])  # fmt: skip
        _check(spec, paths["/api/pairing"]["post"], admin.request("POST", "/api/pairing",
                                                                  {"pin": "5678"}))  # fmt: skip
        clock = {"title": "Clock", "command": "xclock -update 1", "working_dir": "/tmp",
                 "prep": [{"do": "xset s off", "undo": "xset s on"}], "detached": []}  # fmt: skip
        _check(spec, paths["/api/apps"]["put"], admin.request("PUT", "/api/apps",
               [{"title": "Desktop", "command": "", "builtin": True}, clock]))  # fmt: skip
        saved = json.loads((host.env_file.parent / "apps.json").read_text())
        prep = [{"do": "xset s off", "undo": "xset s on"}]
        assert saved == {"apps": [{"name": "Clock", "cmd": "xclock -update 1",
                                   "working-dir": "/tmp", "prep-cmd": prep}]}  # fmt: skip
        listed = admin.request("GET", "/api/apps").json()
        assert listed[1] == {**clock, "hdr": True, "source": "file"}, listed  # type: ignore[index]
        bad = admin.request("PUT", "/api/apps", [{"title": "X", "working_dir": "relative"}])
        assert bad.status == 400 and "'X' working-dir" in bad.json()["error"]  # type: ignore[index]
        _check(spec, paths["/api/sessions/{name}"]["delete"],
               admin.request("DELETE", f"/api/sessions/{name}"))  # fmt: skip
        probe.communicate(timeout=30)  # the client stops long before its 40 s
        assert admin.request("GET", f"/api/sessions/{name}").status == 404
        renamed = admin.request("PATCH", f"/api/clients/native/{fp}", {"name": "Den TV"})
        _check(spec, paths["/api/clients/{protocol}/{fingerprint}"]["patch"], renamed)
        names = {c["fingerprint"]: c["name"] for c in admin.request("GET", "/api/clients").json()}  # type: ignore[union-attr]
        assert names[fp] == "Den TV"
        _check(spec, paths["/api/clients/{protocol}/{fingerprint}"]["delete"],
               admin.request("DELETE", f"/api/clients/native/{fp}"))  # fmt: skip
        assert fp not in {c["fingerprint"] for c in admin.request("GET", "/api/clients").json()}  # type: ignore[union-attr]
        assert "ended from the console" in host.text()
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
