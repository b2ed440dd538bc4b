"""`punktfunk serve`: bring the host up, keep it up until SIGINT/SIGTERM, take it down cleanly."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable

from .apps import AppList, parse_apps
from .config import HostConfig
from .gamestream.host import GameStreamHost, HostPorts
from .gamestream.pins import PinBox
from .identity import load_or_create
from .log import event
from .native.service import NativeHost
from .service.admin import AdminError, AdminServer
from .session.services import HostServices

_log = logging.getLogger("punktfunk.serve")


def run_serve(config: HostConfig) -> int:
    """The native punktfunk/2 host always; the GameStream host too with --gamestream."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    identity_dir = config.state_dir / "identity"
    identity = load_or_create(identity_dir)
    services = HostServices(config)
    native: NativeHost | None
    try:
        native = NativeHost(
            identity,
            config.state_dir,
            services,
            pin=config.pair_pin or None,
            bind=config.bind_address,
            port=config.native_port,
            opus_factory=services.opus_encoder,
        )
    except OSError as exc:
        if not config.gamestream:
            print(f"punktfunk serve: cannot open UDP port {config.native_port}: {exc}",
                  file=sys.stderr)  # fmt: skip
            services.close()
            return 1
        # GameStream keeps working exactly as before when the native port is taken.
        native = None
        event(_log, "native.unavailable", logging.WARNING, port=config.native_port, reason=exc)
    if not config.gamestream:
        assert native is not None
        return _serve_native(config, services, native, stop)
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

    def both_pair(pin: str) -> str:
        answer = pair(pin)  # GameStream first, exactly as before
        if native is not None:
            with contextlib.suppress(ValueError):
                native.arm(pin)
        return answer

    def both_status(arg: str) -> str:
        extra = {} if native is None else {"native": native.status()}
        return json.dumps({**json.loads(status(arg)), **extra})

    commands = {} if native is None else native_commands(native)
    try:
        admin = AdminServer(
            config.state_dir, {**commands, "pair": both_pair, "status": both_status}
        )
    except AdminError as exc:
        print(f"punktfunk serve: {exc}", file=sys.stderr)
        if native is not None:
            native.server.close(drain_s=0)
        services.close()
        return 1
    try:
        if native is not None:
            native.start()
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
        if native is not None:
            native.close()
        services.close()
    return 0


def native_commands(native: NativeHost) -> dict[str, Callable[[str], str]]:
    """Admin socket verbs of the native host: pair, clients, revoke, status."""
    return {
        "pair": native.arm,
        "clients": lambda _: native.clients_json(),
        "revoke": native.revoke,
        "status": lambda _: json.dumps(native.status()),
    }


def _serve_native(
    config: HostConfig, services: HostServices, native: NativeHost, stop: threading.Event
) -> int:
    try:
        admin = AdminServer(config.state_dir, native_commands(native))
    except AdminError as exc:
        print(f"punktfunk serve: {exc}", file=sys.stderr)
        native.server.close(drain_s=0)
        services.close()
        return 1
    try:
        native.start()
        admin.start()
        event(
            _log,
            "host.ready",
            state_dir=config.state_dir,
            native_port=native.port,
            pairing="preset PIN" if config.pair_pin else "punktfunk pair <PIN>",
        )
        stop.wait()
    finally:
        event(_log, "host.stopping", reason="signal")
        admin.close()
        native.close()
        services.close()
    return 0
