"""`punktfunk serve`: bring the host up, keep it up until SIGINT/SIGTERM, take it down cleanly."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading

from .apps import AppList, parse_apps
from .config import HostConfig
from .gamestream.host import GameStreamHost, HostPorts
from .gamestream.pins import PinBox
from .identity import load_or_create
from .log import event
from .service.admin import AdminError, AdminServer
from .session.services import HostServices

_log = logging.getLogger("punktfunk.serve")


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
    try:
        host.start()
        admin.start()
        event(
            _log,
            "host.ready",
            state_dir=config.state_dir,
            pairing="preset PIN" if config.pair_pin else "punktfunk pair <PIN>",
        )
        stop.wait()
    finally:
        event(_log, "host.stopping", reason="signal")
        admin.close()
        host.close()
        services.close()
    return 0
