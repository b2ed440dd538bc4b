"""How `serve` starts the console: one call, after the hosts are up; never fatal to the host."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import LoadedConfig
from ..log import event
from .auth import ensure_password
from .bus import EventBus
from .hostview import HostView
from .server import Console

if TYPE_CHECKING:
    from ..gamestream.host import GameStreamHost
    from ..gamestream.pins import PinBox
    from ..native.host.service import NativeHost
    from ..session.limit import SessionLimit
    from ..session.services import HostServices

_log = logging.getLogger("punktfunk.console")


def start_console(
    loaded: LoadedConfig,
    native: NativeHost | None,
    gs: GameStreamHost | None,
    pins: PinBox | None,
    services: HostServices | None,
    limit: SessionLimit | None = None,
    status: Callable[[str], str] | None = None,
) -> Console | None:
    """The running console, or None when it is off or cannot listen (logged; the host runs)."""
    config = loaded.config
    if not config.console:
        return None
    try:
        password = ensure_password(config.state_dir)
        if password is not None:
            # Shown once on stdout (the journal under systemd), never in the log file; reset
            # with `punktfunk service password`.
            event(
                _log,
                "console.password_created",
                logging.WARNING,
                note="printed once on stdout; change it with `punktfunk service password`",
            )
            print(f"punktfunk: console admin password (shown once): {password}", flush=True)
        view = HostView(loaded, native, gs, pins, services, limit, status)
        identity = config.state_dir / "identity"
        console = Console(view, EventBus(), config.console_bind, config.console_port,
                          config.console_allow,
                          (identity / "host.crt", identity / "host.key"))  # fmt: skip
        console.start()
    except OSError as exc:
        event(_log, "console.unavailable", logging.WARNING, port=config.console_port,
              reason=exc.strerror or exc)  # fmt: skip
        return None
    print(f"punktfunk: console on https://{config.console_bind}:{config.console_port}/",
          flush=True)  # fmt: skip
    return console
