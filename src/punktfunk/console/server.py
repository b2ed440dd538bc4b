"""The console server: aiohttp on its own thread and event loop, HTTPS with the host identity.

Why aiohttp: one well-kept dependency that is both the HTTP/1.1 server (TLS through the standard
ssl module, streaming responses for server-sent events, static files) and nothing more; it runs
on a private event loop in a thread of its own, so it needs no process manager and shares no
loop with the QUIC host. Starlette would need uvicorn besides it for the same.

Order of checks on every request: the source address (`console_allow`), then authentication
(session cookie or bearer token; only the login route and the static console files are open),
then the scope (a read token may only GET) and, for cookie sessions, the CSRF header on every
state-changing request.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import ssl
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..log import event
from ..session.stats import StageStats
from .api import ROUTES, Api, ApiError
from .auth import Auth, Principal
from .bus import BusLogHandler, EventBus
from .hostview import HostView
from .metrics import CONTENT_TYPE, Metrics
from .openapi import document

_log = logging.getLogger("punktfunk.console")

COOKIE = "pf_session"
CSRF_HEADER = "X-CSRF-Token"
TICK_S = 1.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/", "/index.html", "/app.js", "/style.css", "/api/login"})
STATIC_FILES = ("index.html", "app.js", "style.css")
_PRINCIPAL = web.AppKey("principal", Principal)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def parse_allow(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`console_allow`: comma-separated networks, `loopback` for 127.0.0.0/8 and ::1."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part == "loopback":
            nets += [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
        else:
            nets.append(ipaddress.ip_network(part, strict=False))
    return tuple(nets)


def source_allowed(remote: str | None, allow: tuple[Any, ...]) -> bool:
    """Whether a request from `remote` may be served at all (before any authentication)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in allow)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Console:
    def __init__(self, view: HostView, bus: EventBus, bind: str, port: int, allow: str,
                 cert_and_key: tuple[Path, Path]) -> None:  # fmt: skip
        self.view = view
        self.bus = bus
        self.bind, self.port = bind, port
        self.allow = parse_allow(allow)
        self.auth = Auth(view.state_dir)
        self.metrics = Metrics(view.live_stats, self._paired_counts)
        bus.listen(self.metrics.on_event)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(*cert_and_key)
        self._api = Api(view)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)
        self._rates: dict[str, tuple[float, int, int]] = {}
        self._log_handler = BusLogHandler(bus)  # the host's event() lines feed the bus

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (raises OSError when the port is taken) and serve from the console thread."""
        self._thread.start()
        self._ready.wait(30)
        if self._failed is not None:
            raise self._failed
        logging.getLogger("punktfunk").addHandler(self._log_handler)
        event(_log, "console.ready", url=f"https://{self.bind}:{self.port}/",
              allow=",".join(str(n) for n in self.allow))  # fmt: skip

    def close(self) -> None:
        logging.getLogger("punktfunk").removeHandler(self._log_handler)
        if self._stopping is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.bind, self.port, ssl_context=self._ssl,
                               reuse_address=True, shutdown_timeout=1.0)  # fmt: skip
            await site.start()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        ticker = asyncio.create_task(self._tick())
        await self._stopping.wait()
        ticker.cancel()
        await runner.cleanup()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.metrics.tick()
                if self.bus.subscribers():
                    self._publish_stats()
                else:  # nobody watching: nothing to compute, and no stale rate baselines
                    self._rates.clear()
            except Exception as exc:  # a metrics bug must not stop the ticks for good
                event(_log, "console.tick_failed", logging.ERROR, reason=repr(exc))

    def _publish_stats(self) -> None:
        """One `stats` event per live session: fps, Mbit/s and host latency since the last."""
        now = time.monotonic()
        live = self.view.live_stats()
        for name, protocol, stats in live:
            assert isinstance(stats, StageStats)
            frames, sent = stats.counter("frames"), stats.counter("bytes")
            then, frames_then, sent_then = self._rates.get(name, (now - TICK_S, frames, sent))
            self._rates[name] = (now, frames, sent)
            elapsed = max(1e-3, now - then)
            latency = stats.stage("host_latency")
            self.bus.publish("stats", session=name, protocol=protocol,
                             fps=round((frames - frames_then) / elapsed, 1),
                             mbps=round((sent - sent_then) * 8 / elapsed / 1e6, 2),
                             bitrate_kbps=stats.gauge("bitrate_kbps"),
                             latency_p50_ms=round(latency.p50_ms, 2),
                             latency_p99_ms=round(latency.p99_ms, 2), frames=frames)  # fmt: skip
        for gone in set(self._rates) - {name for name, _, _ in live}:
            del self._rates[gone]

    def _paired_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for client in self.view.clients():
            counts[str(client["protocol"])] = counts.get(str(client["protocol"]), 0) + 1
        return counts

    # --- the application ------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=256 * 1024)
        special = {"login": self._login, "logout": self._logout, "whoami": self._whoami,
                   "events": self._events, "openapi": self._openapi,
                   "metrics": self._metrics}  # fmt: skip
        for route in ROUTES:
            handler = special.get(route.handler) or getattr(self._api, route.handler)
            app.router.add_route(route.method, route.path, handler)
        app.router.add_get("/", self._static)
        app.router.add_get("/{file:(index.html|app.js|style.css)}", self._static)
        app.on_response_prepare.append(self._headers)
        return app

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for key, value in HEADERS.items():
            response.headers.setdefault(key, value)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not source_allowed(request.remote, self.allow):
            event(_log, "console.refused", logging.WARNING, source=request.remote,
                  reason="source address not in console_allow")  # fmt: skip
            return _error(403, "requests from this address are refused (see console_allow)")
        if request.path not in PUBLIC_PATHS:
            principal = self._principal(request)
            if principal is None:
                return _error(401, "log in, or send Authorization: Bearer <token>")
            if request.method not in SAFE_METHODS:
                if principal.scope != "admin":
                    return _error(403, "this token may only read")
                sent = request.headers.get(CSRF_HEADER, "")
                if principal.via == "session" and not hmac.compare_digest(sent, principal.csrf):
                    return _error(403, f"missing or wrong {CSRF_HEADER} header")
            request[_PRINCIPAL] = principal
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, str(exc))

    def _principal(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return self.auth.bearer(header[7:].strip())
        sid = request.cookies.get(COOKIE)
        return self.auth.session(sid) if sid else None

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info.get("file", "index.html")
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        kind = {"html": "text/html", "js": "text/javascript", "css": "text/css"}
        return web.Response(body=data, content_type=kind[name.rsplit(".", 1)[1]],
                            charset="utf-8")  # fmt: skip

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str):
            return _error(400, 'send {"password": "..."}')
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(None, self.auth.login, password)
        except RuntimeError as exc:
            return _error(429, str(exc))
        if found is None:
            return _error(401, "wrong password")
        sid, csrf = found
        response = web.json_response({"csrf": csrf, "scope": "admin"})
        response.set_cookie(COOKIE, sid, secure=True, httponly=True, samesite="Strict",
                            path="/")  # fmt: skip
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(COOKIE)
        if sid:
            self.auth.logout(sid)
        response = web.json_response({"message": "logged out"})
        response.del_cookie(COOKIE, path="/")
        return response

    async def _whoami(self, request: web.Request) -> web.Response:
        p = request[_PRINCIPAL]
        return web.json_response({"scope": p.scope, "via": p.via, "csrf": p.csrf})

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document(ROUTES))

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        sub = self.bus.subscribe(lambda: loop.call_soon_threadsafe(wake.set))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            while self._stopping is not None and not self._stopping.is_set():
                try:
                    await asyncio.wait_for(wake.wait(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                wake.clear()
                for item in sub.drain():
                    line = f"event: {item['type']}\ndata: {json.dumps(item)}\n\n"
                    await response.write(line.encode())
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            sub.close()
        return response
