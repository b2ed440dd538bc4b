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

from .apps import AppList, parse_apps
from .config import HostConfig
from .gamestream.host import GameStreamHost, HostPorts
from .gamestream.mdns import MdnsAnnouncer
from .gamestream.pins import PinBox
from .identity import HostIdentity, load_or_create
from .log import event
from .native.service import NativeHost
from .service.admin import AdminError, AdminServer
from .session.services import HostServices
from .session.stats import LiveStatus, StageStats

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
            f"try it with `punktfunk probe HOST --port {native.port}`",
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
        print("punktfunk: pairing uses the preset PIN (--pin)", flush=True)
    else:
        print(
            "punktfunk: to pair, start pairing on the client, then run "
            "`punktfunk pair <PIN>` with the PIN it shows",
            flush=True,
        )


def _open_native(config: HostConfig, identity: HostIdentity, services: HostServices) -> NativeHost:
    return NativeHost(
        identity,
        config.state_dir,
        services,
        pin=config.pair_pin or None,
        bind=config.bind_address,
        port=config.native_port,
        opus_factory=services.opus_encoder,
    )


def _open_gamestream(
    config: HostConfig, identity: HostIdentity, services: HostServices
) -> tuple[GameStreamHost, PinBox]:
    pins = PinBox(config.pair_pin)
    host = GameStreamHost(
        identity,
        config.state_dir / "identity",
        config.state_dir,
        services,
        pins,
        HostPorts.from_base(config.gamestream_port),
        bind=config.bind_address,
        apps=AppList(parse_apps(config.apps)),
        opus_factory=services.opus_encoder,
        video_loss_percent=config.test_video_loss_percent,
    )
    return host, pins


def _admin_commands(
    native: NativeHost | None, gs: GameStreamHost | None, pins: PinBox | None
) -> dict[str, Command]:
    """One admin socket for both hosts: a PIN arms both pairings; status reports both."""

    def pair(pin: str) -> str:
        answers = []
        if pins is not None:
            pins.submit(pin)
            answers.append(
                "GameStream: PIN accepted for "
                + (", ".join(pins.waiting) or "the next client that pairs")
            )
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
        if native is not None:
            report["native"] = native.status()
        return json.dumps(report)

    commands: dict[str, Command] = {"pair": pair, "status": status}
    if native is not None:
        commands["clients"] = lambda _: native.clients_json()
        commands["revoke"] = native.revoke
    return commands


def _live_sessions(
    native: NativeHost | None, gs: GameStreamHost | None
) -> list[tuple[str, StageStats]]:
    sessions: list[tuple[str, StageStats]] = []
    if native is not None:
        sessions += [(s.name, s.stats) for s in native.sessions()]
    if gs is not None:
        sessions += [(s.name, s.stats) for s in gs.sessions()]
    return sessions


def run_serve(config: HostConfig) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    identity = load_or_create(config.state_dir / "identity")
    services = HostServices(config)
    native: NativeHost | None = None
    try:
        native = _open_native(config, identity, services)
    except OSError as exc:
        if not config.gamestream:
            print(
                f"punktfunk serve: cannot open UDP port {config.native_port}: {exc}",
                file=sys.stderr,
            )
            services.close()
            return 1
        # GameStream still serves Moonlight clients when the native port is taken.
        event(_log, "native.unavailable", logging.WARNING, port=config.native_port, reason=exc)
    gs, pins = _open_gamestream(config, identity, services) if config.gamestream else (None, None)
    try:
        admin = AdminServer(config.state_dir, _admin_commands(native, gs, pins))
    except AdminError as exc:
        print(f"punktfunk serve: {exc}", file=sys.stderr)
        if native is not None:
            native.server.close(drain_s=0)
        services.close()
        return 1
    mdns = (
        MdnsAnnouncer(config.bind_address, config.gamestream_port, identity.unique_id)
        if gs is not None and config.mdns
        else None
    )
    try:
        if native is not None:
            native.start()
        if gs is not None:
            gs.start()
        admin.start()
        if mdns is not None:
            mdns.start()
        event(
            _log,
            "host.ready",
            state_dir=config.state_dir,
            native_port=native.port if native is not None else "off",
            gamestream=gs is not None,
            pairing="preset PIN" if config.pair_pin else "punktfunk pair <PIN>",
        )
        _print_banner(config, native, gs)
        live = LiveStatus()
        while not stop.wait(STATUS_INTERVAL_S):
            sessions = _live_sessions(native, gs)
            live.keep({name for name, _ in sessions})
            for name, stats in sessions:
                print(live.line(name, stats, time.monotonic()), flush=True)
    finally:
        event(_log, "host.stopping", reason="signal")
        with contextlib.suppress(Exception):
            if mdns is not None:
                mdns.close()
        admin.close()
        if gs is not None:
            gs.close()
        if native is not None:
            native.close()
        services.close()
    return 0
