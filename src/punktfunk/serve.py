"""`punktfunk serve`: bring the host up, keep it up until SIGINT/SIGTERM, take it down cleanly."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import time

from .apps import AppList, parse_apps
from .config import HostConfig
from .gamestream.host import GameStreamHost, HostPorts
from .gamestream.mdns import MdnsAnnouncer
from .gamestream.pins import PinBox
from .identity import load_or_create
from .log import event
from .service.admin import AdminError, AdminServer
from .session.services import HostServices
from .session.stats import LiveStatus

_log = logging.getLogger("punktfunk.serve")

STATUS_INTERVAL_S = 2.0


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


def _print_banner(config: HostConfig, ports: HostPorts) -> None:
    where = ", ".join(_addresses(config.bind_address))
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
            "punktfunk: to pair, start pairing in Moonlight, then run "
            "`punktfunk pair <PIN>` with the PIN it shows",
            flush=True,
        )


def run_serve(config: HostConfig) -> int:
    if not config.gamestream:
        print(
            "punktfunk serve: the native punktfunk/2 host is not built yet in this version; "
            "run `punktfunk serve --gamestream` to serve Moonlight clients. Nothing was started.",
            file=sys.stderr,
        )
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    identity_dir = config.state_dir / "identity"
    identity = load_or_create(identity_dir)
    services = HostServices(config)
    pins = PinBox(config.pair_pin)
    host = GameStreamHost(
        identity,
        identity_dir,
        config.state_dir,
        services,
        pins,
        HostPorts.from_base(config.gamestream_port),
        bind=config.bind_address,
        apps=AppList(parse_apps(config.apps)),
        opus_factory=services.opus_encoder,
        video_loss_percent=config.test_video_loss_percent,
    )

    def pair(pin: str) -> str:
        pins.submit(pin)
        return "PIN accepted for " + (", ".join(pins.waiting) or "the next client that pairs")

    def status(_: str) -> str:
        return json.dumps(
            {
                "sessions": [
                    {
                        "name": s.name,
                        "client": s.launch.client_name,
                        "display": s.display_name,
                        **s.stats.snapshot(),
                    }
                    for s in host.sessions()
                ],
                "paired_clients": [c.name for c in host.trust.clients()],
            }
        )

    try:
        admin = AdminServer(config.state_dir, {"pair": pair, "status": status})
    except AdminError as exc:
        print(f"punktfunk serve: {exc}", file=sys.stderr)
        services.close()
        return 1
    mdns = (
        MdnsAnnouncer(config.bind_address, config.gamestream_port, identity.unique_id)
        if config.mdns
        else None
    )
    try:
        host.start()
        admin.start()
        if mdns is not None:
            mdns.start()
        event(
            _log,
            "host.ready",
            state_dir=config.state_dir,
            pairing="preset PIN" if config.pair_pin else "punktfunk pair <PIN>",
        )
        _print_banner(config, HostPorts.from_base(config.gamestream_port))
        live = LiveStatus()
        while not stop.wait(STATUS_INTERVAL_S):
            sessions = host.sessions()
            live.keep({s.name for s in sessions})
            for session in sessions:
                print(live.line(session.name, session.stats, time.monotonic()), flush=True)
    finally:
        event(_log, "host.stopping", reason="signal")
        if mdns is not None:
            mdns.close()
        admin.close()
        host.close()
        services.close()
    return 0
