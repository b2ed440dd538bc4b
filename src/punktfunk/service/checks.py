"""`punktfunk doctor`'s service rows: are the host's ports free, what does systemd say about the
unit, and (once the web console exists) does it answer.

The console hook: a module `punktfunk.console` that defines `doctor_checks(loaded) -> list[Check]`
gets its rows shown here; without one, nothing is said about a console.
"""

from __future__ import annotations

import importlib
import importlib.util
import socket

from ..config import LoadedConfig
from ..doctor import Check
from ..gamestream.host import HostPorts
from . import systemd
from .admin import AdminError, request


def _free(kind: int, host: str, port: int) -> str | None:
    """None when `port` can be bound, else why not."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def port_checks(loaded: LoadedConfig) -> list[Check]:
    config = loaded.config
    wanted = [("native", socket.SOCK_DGRAM, config.native_port)]
    if config.gamestream:
        ports = HostPorts.from_base(config.gamestream_port)
        wanted += [("gs http", socket.SOCK_STREAM, ports.http),
                   ("gs https", socket.SOCK_STREAM, ports.https),
                   ("gs rtsp", socket.SOCK_STREAM, ports.rtsp),
                   ("gs video", socket.SOCK_DGRAM, ports.video),
                   ("gs control", socket.SOCK_DGRAM, ports.control),
                   ("gs audio", socket.SOCK_DGRAM, ports.audio)]  # fmt: skip
    try:
        request(config.state_dir, "status", timeout=2.0)
        running = True
    except AdminError:
        running = False
    busy = []
    for name, kind, port in wanted:
        why = _free(kind, config.bind_address, port)
        if why is not None:
            proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
            busy.append(f"{name} {proto}/{port} ({why})")
    listed = ", ".join(f"{n} {'tcp' if k == socket.SOCK_STREAM else 'udp'}/{p}"
                       for n, k, p in wanted)  # fmt: skip
    if not busy:
        return [Check("ports", True, f"free on {config.bind_address}: {listed}")]
    if running:
        return [Check("ports", True, f"held by the running host: {', '.join(busy)}")]
    return [Check("ports", False, f"in use by another program: {', '.join(busy)} — "
                  "stop it or choose other ports (native_port, gamestream_port)")]  # fmt: skip


def unit_checks() -> list[Check]:
    rows = []
    for user in (True, False):
        path = systemd.unit_path(user)
        label = "unit (user)" if user else "unit (system)"
        if not path.exists():
            scope = " --user" if user else ""
            rows.append(Check(label, False, f"not installed (punktfunk service install{scope})"))
            continue
        state = systemd.describe_state(systemd.unit_state(user))
        rows.append(Check(label, True, f"{path}: {state}"))
    return rows


def console_checks(loaded: LoadedConfig) -> list[Check]:
    if importlib.util.find_spec("punktfunk.console") is None:
        return []
    hook = getattr(importlib.import_module("punktfunk.console"), "doctor_checks", None)
    return list(hook(loaded)) if hook is not None else []


def service_checks(loaded: LoadedConfig) -> list[Check]:
    return port_checks(loaded) + unit_checks() + console_checks(loaded)
