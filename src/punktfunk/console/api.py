"""The REST routes: one table (`ROUTES`) drives both the aiohttp router and the OpenAPI
document. Handlers call the HostView in the default executor, so host locks and file I/O never
hold up the console's event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..config import ConfigError
from .hostview import LEVELS, HostView, NotFound
from .openapi import (
    ANY,
    APP,
    BOOL,
    CLIENT,
    INT,
    MESSAGE,
    SESSION,
    SETTING,
    STR,
    Route,
    array,
    obj,
)

PROTOCOL = {"type": "string", "enum": ["native", "gamestream"]}
_NAME = ("name", "path", STR)

# fmt: off
ROUTES: list[Route] = [
    Route("POST", "/api/login", "login", "log in with the admin password (sets the session "
          "cookie; answers the CSRF token)", scope="none", body=obj(("password",), password=STR),
          answer=obj(("csrf",), csrf=STR, scope=STR)),
    Route("POST", "/api/logout", "logout", "end this browser session"),
    Route("GET", "/api/whoami", "whoami", "this caller's scope (and, for a browser session, "
          "its CSRF token)", answer=obj(("scope",), scope=STR, via=STR, csrf=STR)),
    Route("GET", "/api/info", "info", "host info: version, encoders found, displays, ports",
          answer=ANY),
    Route("GET", "/api/status", "status", "what `punktfunk status` prints: sessions of both "
          "protocols, listener counters, health (crashes, restarts)", answer=ANY),
    Route("GET", "/api/sessions", "sessions", "live sessions of both protocols with mode, "
          "codec, bitrate, host latency, loss and FEC", answer=array(SESSION)),
    Route("GET", "/api/sessions/{name}", "session", "one live session", answer=SESSION,
          params=(_NAME,)),
    Route("DELETE", "/api/sessions/{name}", "end_session", "end a live session (the client "
          "is told)", scope="admin", params=(_NAME,)),
    Route("GET", "/api/clients", "clients", "paired clients of both protocols",
          answer=array(CLIENT)),
    Route("PATCH", "/api/clients/{protocol}/{fingerprint}", "rename", "rename a paired client",
          scope="admin", body=obj(("name",), name=STR),
          params=(("protocol", "path", PROTOCOL), ("fingerprint", "path", STR))),
    Route("DELETE", "/api/clients/{protocol}/{fingerprint}", "revoke", "forget a paired "
          "client; its running session ends", scope="admin",
          params=(("protocol", "path", PROTOCOL), ("fingerprint", "path", STR))),
    Route("GET", "/api/pairing", "pairing", "pairing state: GameStream clients waiting for a "
          "PIN, the native pairing gate", answer=obj(("gamestream_waiting",),
          gamestream_waiting=array(STR), gamestream=BOOL,
          native={"type": "string", "nullable": True})),
    Route("POST", "/api/pairing", "pair", "enter the PIN a client shows (arms both protocols, "
          "as `punktfunk pair`)", scope="admin", body=obj(("pin",), pin=STR)),
    Route("GET", "/api/apps", "apps", "the app list: Desktop, the `apps` setting's (read "
          "only here) and the apps file's, with working dir, prep/undo and detached commands",
          answer=array(APP)),
    Route("PUT", "/api/apps", "save_apps", "replace the apps file's apps (entries from "
          "Desktop and the `apps` setting are left as they are; applies at the next start)",
          scope="admin", body=array(APP), answer=ANY),
    Route("GET", "/api/settings", "settings", "every setting with value, source, default, "
          "allowed values and help", answer=obj(("settings",), config_file=STR,
          settings=array(SETTING))),
    Route("PATCH", "/api/settings", "change_settings", "change settings ({name: value, or "
          "null for the default}); validated as host.env is, written back atomically",
          scope="admin", body={"type": "object", "additionalProperties":
          {"type": "string", "nullable": True}}, answer=ANY),
    Route("GET", "/api/logs", "logs", "recent log lines at or above a level",
          answer=obj(("lines",), lines=array(STR)),
          params=(("level", "query", {"type": "string", "enum": list(LEVELS)}),
                  ("lines", "query", INT))),
    Route("GET", "/api/events", "events", "server-sent events: session_started, "
          "session_ended, session_refused, pairing_requested, pairing_completed, "
          "pairing_failed, stats (per session, every second), fallback",
          content_type="text/event-stream", answer=STR),
    Route("GET", "/api/openapi.json", "openapi", "this document", answer=ANY),
    Route("GET", "/metrics", "metrics", "Prometheus metrics (text exposition format)",
          content_type="text/plain", answer=STR),
]
# fmt: on


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except (ValueError, ConfigError) as exc:
        raise ApiError(400, str(exc)) from None


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None


def _ok(payload: Any) -> web.Response:
    return web.json_response(payload)


class Api:
    """The JSON handlers (login, events, metrics and openapi live in the server)."""

    def __init__(self, view: HostView) -> None:
        self.view = view

    async def info(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.info))

    async def status(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.status))

    async def sessions(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.sessions))

    async def session(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.session, request.match_info["name"]))

    async def end_session(self, request: web.Request) -> web.Response:
        return _ok({"message": await _call(self.view.end_session, request.match_info["name"])})

    async def clients(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.clients))

    async def revoke(self, request: web.Request) -> web.Response:
        m = request.match_info
        return _ok({"message": await _call(self.view.revoke, m["protocol"], m["fingerprint"])})

    async def rename(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise ApiError(400, 'send {"name": "..."}')
        m = request.match_info
        return _ok({"message": await _call(self.view.rename, m["protocol"], m["fingerprint"],
                                           name)})  # fmt: skip

    async def pairing(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.pairing))

    async def pair(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        pin = body.get("pin") if isinstance(body, dict) else None
        if not isinstance(pin, str):
            raise ApiError(400, 'send {"pin": "1234"}')
        return _ok({"message": await _call(self.view.pair, pin)})

    async def apps(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.apps))

    async def save_apps(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, list) or not all(
            isinstance(a, dict) and isinstance(a.get("title"), str) for a in body
        ):
            raise ApiError(400, 'send a list of {"title": ..., "command": ...}')
        return _ok(await _call(self.view.save_apps, body))

    async def settings(self, request: web.Request) -> web.Response:
        return _ok(await _call(self.view.settings))

    async def change_settings(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if (
            not isinstance(body, dict)
            or not body
            or not all(isinstance(v, str | None) for v in body.values())
        ):
            raise ApiError(400, 'send {"setting": "value" or null, ...}')
        return _ok(await _call(self.view.change_settings, body))

    async def logs(self, request: web.Request) -> web.Response:
        level = request.query.get("level", "INFO").upper()
        if level not in LEVELS:
            raise ApiError(400, f"level is one of {'|'.join(LEVELS)}")
        try:
            lines = max(1, min(5000, int(request.query.get("lines", "200"))))
        except ValueError:
            raise ApiError(400, "lines is a whole number") from None
        return _ok({"lines": await _call(self.view.logs, level, lines)})


__all__ = ["MESSAGE", "ROUTES", "Api", "ApiError", "Handler"]
