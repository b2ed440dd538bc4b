"""`punktfunk serve`: bring the host up, keep it up until SIGINT/SIGTERM, take it down cleanly.

The native punktfunk/2 host always runs; `--gamestream` adds the GameStream host for Moonlight.
Both share the host services (virtual displays, encoder probe), the identity and one admin
socket (`punktfunk pair`, `clients`, `revoke`, `status`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import leftovers
from .apps import AppList, load_apps
from .config import HostConfig, LoadedConfig, host_name
from .encode.base import Codec, EncoderBackend
from .encode.factory import EncoderUnavailableError, select_backend
from .gamestream.host import GameStreamHost, HostPorts
from .gamestream.mdns import gamestream_record
from .gamestream.pins import PinBox
from .identity import HostIdentity, load_or_create
from .log import event
from .mdns import Advert, Builder, host_os_chain, native_record
from .native.host.service import NativeHost
from .pinlock import PinLock
from .service.admin import AdminError, AdminServer, testlimit_command
from .service.notify import notify
from .session import sendlimit
from .session.limit import SessionLimit, capacity
from .session.services import HostServices
from .session.stats import LiveStatus, StageStats
from .session.workerproc import usable_cores, workers_enabled
from .supervise import counters, set_fatal_hook

_log = logging.getLogger("punktfunk.serve")

STATUS_INTERVAL_S = 2.0
Command = Callable[[str], str]


def _addresses(bind: str) -> list[str]:
    """Where clients can reach the host: the bound address, or this machine's IPv4 addresses."""
    if bind != "0.0.0.0":
        return [bind]
    found = {"127.0.0.1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    except OSError:
        pass
    return sorted(found)


def _print_banner(config: HostConfig, native: NativeHost | None, gs: GameStreamHost | None) -> None:
    where = ", ".join(_addresses(config.bind_address))
    if native is not None:
        print(
            f"punktfunk: punktfunk/2 host on {where} UDP {native.port}; "
            f"try it with `punktfunk probe HOST --port {native.port}`"
            + (" or find it with `punktfunk probe --discover`" if config.mdns else ""),
            flush=True,
        )
    if gs is not None:
        ports = HostPorts.from_base(config.gamestream_port)
        print(
            f"punktfunk: GameStream host on {where} (HTTP {ports.http}, HTTPS {ports.https}, "
            f"RTSP {ports.rtsp}); add it in Moonlight by address"
            + (" or let Moonlight find it on the LAN" if config.mdns else ""),
            flush=True,
        )
    if config.pair_pin:
        print(
            "punktfunk: pairing uses the preset PIN (--pin); a failed GameStream attempt "
            "disarms it until `punktfunk pair <PIN>` re-arms it",
            flush=True,
        )
    else:
        print(
            "punktfunk: to pair, start pairing on the client, then run "
            "`punktfunk pair <PIN>` with the PIN it shows",
            flush=True,
        )


def configured_apps(config: HostConfig) -> AppList:
    """Desktop plus the configured apps; StartError naming the apps file and what is wrong."""
    try:
        return AppList(load_apps(config.apps, config.apps_file))
    except ValueError as exc:
        raise StartError(str(exc)) from None


def _max_sessions(config: HostConfig, services: HostServices, workers: bool) -> int:
    """The `max_sessions` setting, or for auto what the cores and the encoder hold (logged)."""
    if config.max_sessions is not None:
        return config.max_sessions
    try:
        backend = select_backend(config.encoder, Codec.H264, services.report)
    except EncoderUnavailableError:
        backend = EncoderBackend.SOFTWARE
    cores = usable_cores()
    n, why = capacity(cores, workers, backend is not EncoderBackend.SOFTWARE)
    if n > config.max_monitors:  # each session's own monitor: the display's cap comes first
        n, why = config.max_monitors, f"{why}; max_monitors={config.max_monitors} first"
    event(_log, "limit.resolved", max_sessions=n, reason=why)
    return n


def _open_native(
    config: HostConfig,
    identity: HostIdentity,
    services: HostServices,
    apps: AppList,
    workers: bool,
) -> NativeHost:
    return NativeHost(
        identity,
        config.state_dir,
        services,
        pin=config.pair_pin or None,
        cooldown_s=config.pair_cooldown_s,
        bind=config.bind_address,
        port=config.native_port,
        opus_factory=services.opus_encoder,
        workers=workers,
        apps=apps,
    )


def _open_gamestream(
    config: HostConfig,
    identity: HostIdentity,
    services: HostServices,
    apps: AppList,
    workers: bool,
) -> tuple[GameStreamHost, PinBox]:
    pins = PinBox(config.pair_pin, lock=PinLock(cooldown_s=config.pair_cooldown_s))
    host = GameStreamHost(
        identity,
        config.state_dir / "identity",
        config.state_dir,
        services,
        pins,
        HostPorts.from_base(config.gamestream_port),
        bind=config.bind_address,
        apps=apps,
        opus_factory=services.opus_encoder,
        video_loss_percent=config.test_video_loss_percent,
        setup_stage_timeout_s=config.setup_stage_timeout_ms / 1000,
        hostname=host_name(config),
        workers=workers,
    )
    return host, pins


def _advert(
    config: HostConfig, identity: HostIdentity, native: NativeHost | None, gs: GameStreamHost | None
) -> Advert | None:
    """`_punktfunk._udp` (as the Rust host publishes it) and, with GameStream, `_nvstream._tcp`."""
    hostname = host_name(config)
    records: list[Builder] = []
    if native is not None:
        records.append(native_record(hostname, native.port, native.fingerprint.hex(),
                                     identity.unique_id, host_os_chain()))  # fmt: skip
    if gs is not None:
        http_port = HostPorts.from_base(config.gamestream_port).http
        records.append(gamestream_record(hostname, http_port))
    return Advert(config.bind_address, records) if records else None


def _admin_commands(
    native: NativeHost | None, gs: GameStreamHost | None, pins: PinBox | None
) -> dict[str, Command]:
    """One admin socket for both hosts: a PIN arms both pairings; status reports both."""

    def pair(pin: str) -> str:
        answers = []
        if pins is not None:
            answers.append("GameStream: " + pins.submit(pin))
        if native is not None:
            try:
                answers.append("punktfunk/2: " + native.arm(pin))
            except ValueError as exc:
                answers.append(f"punktfunk/2: {exc}")
        return "; ".join(answers)

    def status(_: str) -> str:
        report: dict[str, object] = {"sessions": [], "paired_clients": []}
        if gs is not None:
            report["sessions"] = [
                {
                    "name": s.name,
                    "client": s.launch.client_name,
                    "display": s.display_name,
                    **s.stats.snapshot(),
                }
                for s in gs.sessions()
            ]
            report["paired_clients"] = [c.name for c in gs.trust.clients()]
            report["gamestream_net"] = {
                "control": dict(gs.control.stats),
                "http": dict(gs.http.http.gate.stats),
                "https": dict(gs.http.https.gate.stats),
                "rtsp": dict(gs.rtsp.gate.stats),
            }
        if native is not None:
            report["native"] = native.status()
        # Crash and restart counters: a crashed or restarted thread is never silent.
        report["health"] = counters()
        return json.dumps(report)

    commands: dict[str, Command] = {"pair": pair, "status": status}
    if sendlimit.test_limiter is not None:
        commands["testlimit"] = testlimit_command(sendlimit.test_limiter)
    if native is not None:
        commands["clients"] = lambda _: native.clients_json()
        commands["revoke"] = native.revoke
    return commands


def _live_sessions(
    native: NativeHost | None, gs: GameStreamHost | None
) -> list[tuple[str, StageStats, str]]:
    sessions: list[tuple[str, StageStats, str]] = []
    if native is not None:
        sessions += [(s.name, s.stats, s.plan_summary) for s in native.sessions()]
    if gs is not None:
        sessions += [(s.name, s.stats, s.plan_summary) for s in gs.sessions()]
    return sessions


class StartError(Exception):
    """The host cannot come up (a port is taken, the admin socket is in use); says why."""


@dataclass
class RunningHost:
    """The host's services up and serving in background threads (`punktfunk serve` and the
    embedded `punktfunk.Host` share this one start-up path)."""

    config: HostConfig
    services: HostServices
    native: NativeHost | None
    gs: GameStreamHost | None
    admin: AdminServer
    mdns: Advert | None
    commands: dict[str, Command]
    pins: PinBox | None
    limit: SessionLimit

    def live_sessions(self) -> list[tuple[str, StageStats, str]]:
        return _live_sessions(self.native, self.gs)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.mdns is not None:
                self.mdns.close()
        self.admin.close()
        if self.gs is not None:
            self.gs.close()
        if self.native is not None:
            self.native.close()
        self.services.close()


def start_host(
    config: HostConfig,
    services: HostServices,
    apps: AppList | None = None,
    *,
    native_on: bool = True,
) -> RunningHost:
    """Open the protocols, the admin socket and the advert over `services`, and start them
    (the native protocol unless `native_on` is False, GameStream per `config.gamestream`).
    On StartError `services` stay open (the caller closes them)."""
    if apps is None:
        apps = configured_apps(config)
    workers = workers_enabled(config.session_workers, config.test_send_limit, config.display)
    leftovers.sweep(config.state_dir, "host")  # what a killed host and driver left
    identity = load_or_create(config.state_dir / "identity")
    if config.test_send_limit:
        sendlimit.test_limiter = sendlimit.SendLimiter()
        reason = "test_send_limit is set: `testlimit KBPS` throttles video on purpose"
        event(_log, "serve.test_send_limit", logging.WARNING, reason=reason)
    native: NativeHost | None = None
    if native_on:
        try:
            native = _open_native(config, identity, services, apps, workers)
        except OSError as exc:
            if not config.gamestream:
                raise StartError(f"cannot open UDP port {config.native_port}: {exc}") from None
            # GameStream still serves Moonlight clients when the native port is taken.
            event(_log, "native.unavailable", logging.WARNING, port=config.native_port, reason=exc)
    gs, pins = (
        _open_gamestream(config, identity, services, apps, workers)
        if config.gamestream
        else (None, None)
    )
    limit = SessionLimit(
        _max_sessions(config, services, workers), lambda: len(_live_sessions(native, gs))
    )
    for host in (native, gs):
        if host is not None:
            host.limit = limit
    commands = _admin_commands(native, gs, pins)
    try:
        admin = AdminServer(config.state_dir, commands)
    except AdminError as exc:
        if native is not None:
            native.server.close(drain_s=0)
        if gs is not None:
            gs.close()
        raise StartError(str(exc)) from None
    mdns = _advert(config, identity, native, gs) if config.mdns else None
    running = RunningHost(config, services, native, gs, admin, mdns, commands, pins, limit)
    try:
        if native is not None:
            native.start()
        if gs is not None:
            gs.start()
        admin.start()
        if mdns is not None:
            mdns.start()
    except BaseException:
        running.close()
        raise
    event(
        _log,
        "host.ready",
        state_dir=config.state_dir,
        native_port=native.port if native is not None else "off",
        gamestream=gs is not None,
        pairing="preset PIN" if config.pair_pin else "punktfunk pair <PIN>",
    )
    return running


def _start_console(loaded: LoadedConfig, running: RunningHost, services: HostServices) -> Any:
    """The console, or None where it cannot run: the host streams on without it."""
    try:
        from .console.hook import start_console  # aiohttp loads only with the console
    except ImportError as exc:
        event(_log, "console.unavailable", logging.WARNING, reason=f"cannot import: {exc}")
        return None
    return start_console(
        loaded, running.native, running.gs, running.pins, services, running.limit,
        running.commands["status"],
    )  # fmt: skip


def run_serve(config: HostConfig, loaded: LoadedConfig | None = None) -> int:
    stop = threading.Event()
    # SIGHUP too: `service run` relays a reload as SIGHUP and starts the host again.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    fatal: list[str] = []

    def give_up(reason: str) -> None:
        # A service thread is beyond restarting: stop the whole host, loudly, so the service
        # manager restarts it rather than leaving a host that answers only in part.
        fatal.append(reason)
        print(f"punktfunk serve: fatal: {reason}; stopping", file=sys.stderr, flush=True)
        stop.set()

    set_fatal_hook(give_up)
    services = HostServices(config)
    try:
        running = start_host(config, services)
    except StartError as exc:
        print(f"punktfunk serve: {exc}", file=sys.stderr)
        set_fatal_hook(None)
        services.close()
        return 1
    console = None
    try:
        _print_banner(config, running.native, running.gs)
        if loaded is not None and config.console:
            console = _start_console(loaded, running, services)
        notify("READY=1")  # to systemd or `service run`: every listener is bound
        live = LiveStatus()
        while not stop.wait(STATUS_INTERVAL_S):
            notify("WATCHDOG=1")
            sessions = running.live_sessions()
            live.keep({name for name, _, _ in sessions})
            for name, stats, plan in sessions:
                line = live.line(name, stats, time.monotonic())
                print(f"{line}, {plan}" if plan else line, flush=True)
    finally:
        event(_log, "host.stopping", logging.CRITICAL if fatal else logging.INFO,
              reason=fatal[0] if fatal else "signal")  # fmt: skip
        notify("STOPPING=1")
        set_fatal_hook(None)
        if console is not None:
            console.close()
        running.close()
    return 1 if fatal else 0
