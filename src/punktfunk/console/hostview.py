"""What the console shows and changes, taken from the parts `serve` already runs: both hosts'
sessions and trust stores, the PIN box, the app list setting, the registry and the log file.

Every method is synchronous and quick (locks held for a copy at most); the server calls them
from its executor so the console's event loop never waits on a host lock.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..apps import App, parse_apps, parse_apps_file, write_apps_file
from ..config import ConfigError, LoadedConfig, format_value, load_config
from ..log import LOG_FILE_NAME
from ..supervise import counters
from .settings import change_settings, settings_view

if TYPE_CHECKING:
    from ..gamestream.host import GameStreamHost
    from ..gamestream.pins import PinBox
    from ..native.host.service import NativeHost
    from ..session.limit import SessionLimit
    from ..session.services import HostServices

LOG_TAIL_BYTES = 512 * 1024
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


class NotFound(Exception):
    """The named session, client or app does not exist."""


@dataclass
class HostView:
    loaded: LoadedConfig
    native: NativeHost | None = None
    gs: GameStreamHost | None = None
    pins: PinBox | None = None
    services: HostServices | None = None
    limit: SessionLimit | None = None
    admin_status: Callable[[str], str] | None = None  # the admin socket's `status` command
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state_dir(self) -> Path:
        return self.loaded.config.state_dir

    # --- sessions -------------------------------------------------------------------------

    def live_stats(self) -> list[tuple[str, str, object]]:
        """(name, protocol, StageStats) of every live session, for metrics and stats ticks."""
        found: list[tuple[str, str, object]] = []
        if self.native is not None:
            found += [(s.name, "native", s.stats) for s in self.native.sessions()]
        if self.gs is not None:
            found += [(s.name, "gamestream", s.stats) for s in self.gs.sessions()]
        return found

    def sessions(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        if self.native is not None:
            for s in self.native.sessions():
                out.append({"protocol": "native", "plan": s.plan_summary, **s.snapshot()})
        if self.gs is not None:
            for s in self.gs.sessions():
                n = s.negotiation
                out.append(
                    {
                        "protocol": "gamestream",
                        "name": s.name,
                        "client": s.launch.client_name,
                        "fingerprint": s.launch.client_fp,
                        "mode": f"{n.width}x{n.height}@{n.fps}",
                        "display": s.display_name,
                        "plan": s.plan_summary,
                        **s.stats.snapshot(),
                    }
                )
        return out

    def session(self, name: str) -> dict[str, object]:
        for s in self.sessions():
            if s["name"] == name:
                return s
        raise NotFound(f"no live session {name!r}")

    def end_session(self, name: str) -> str:
        reason = "ended from the console"
        if self.gs is not None:
            for s in self.gs.sessions():
                if s.name == name:
                    # end() joins the session's threads: off the caller's thread.
                    threading.Thread(target=s.end, args=(reason, True), daemon=True).start()
                    return f"ending {name}"
        if self.native is not None:
            for ns in self.native.sessions():
                if ns.name == name:
                    self.native.server.call_soon(lambda s=ns: s._close_for(reason))
                    return f"ending {name}"
        raise NotFound(f"no live session {name!r}")

    # --- clients and pairing --------------------------------------------------------------

    def clients(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        if self.native is not None:
            for c in self.native.trust.clients():
                out.append({"protocol": "native", "fingerprint": c.fingerprint, "name": c.name,
                            "paired_at": c.paired_at})  # fmt: skip
        if self.gs is not None:
            for g in self.gs.trust.clients():
                out.append({"protocol": "gamestream", "fingerprint": g.fingerprint,
                            "name": g.name, "paired_at": None})  # fmt: skip
        return out

    def revoke(self, protocol: str, fingerprint: str) -> str:
        if protocol == "native" and self.native is not None:
            try:
                return self.native.revoke(fingerprint)
            except ValueError as exc:
                raise NotFound(str(exc)) from None
        if protocol == "gamestream" and self.gs is not None:
            client = self.gs.trust.get(fingerprint)
            if client is None or not self.gs.trust.remove(fingerprint):
                raise NotFound(f"no paired GameStream client {fingerprint!r}")
            for s in self.gs.sessions():
                if s.launch.client_fp == fingerprint:
                    threading.Thread(target=s.end, args=("pairing revoked", True),
                                     daemon=True).start()  # fmt: skip
            return f"revoked {client.name}"
        raise NotFound(f"no {protocol!r} host runs")

    def rename(self, protocol: str, fingerprint: str, name: str) -> str:
        name = name.strip()
        if not 0 < len(name) <= 64 or not name.isprintable():
            raise ValueError("a client name is 1-64 printable characters")
        trust = {
            "native": self.native and self.native.trust,
            "gamestream": self.gs and self.gs.trust,
        }
        store = trust.get(protocol)
        if store is None or store.rename(fingerprint, name) is None:
            raise NotFound(f"no paired {protocol} client {fingerprint!r}")
        return f"renamed to {name}"

    def pairing(self) -> dict[str, object]:
        gate = None if self.native is None else self.native.gate.state(time.monotonic())
        return {
            "gamestream_waiting": list(self.pins.waiting) if self.pins is not None else [],
            "gamestream": self.pins is not None,
            "native": None if gate is None else gate.value,
        }

    def pair(self, pin: str) -> str:
        """Arm a PIN for both protocols, as `punktfunk pair` does (ValueError if malformed)."""
        answers = []
        if self.pins is not None:
            answers.append("GameStream: " + self.pins.submit(pin))
        if self.native is not None:
            answers.append("punktfunk/2: " + self.native.arm(pin))
        return "; ".join(answers)

    # --- apps (the `apps` setting, read only here, and the apps file) -----------------------

    def apps(self) -> list[dict[str, object]]:
        """As the next start will read them."""
        out: list[dict[str, object]] = [
            {"title": "Desktop", "command": "", "builtin": True, "source": "builtin"}
        ]
        out += [{**_app_view(a), "source": "setting"} for a in parse_apps(self._current("apps"))]
        path = self.loaded.config.apps_file
        if path is not None and path.is_file():
            out += [{**_app_view(a), "source": "file"} for a in parse_apps_file(path.read_text())]
        return out

    def save_apps(self, apps: list[dict[str, object]]) -> dict[str, object]:
        """Replace the apps file's apps (ValueError, naming the app and field, if one is bad)."""
        path = self.loaded.config.apps_file
        if path is None:
            raise ValueError("no apps file is configured (apps_file)")
        mine = [a for a in apps if not a.get("builtin") and a.get("source") != "setting"]
        parsed = parse_apps_file(json.dumps({"apps": [_app_entry(a) for a in mine]}))
        fixed = {a.title for a in parse_apps(self._current("apps"))}
        clash = sorted(fixed & {a.title for a in parsed})
        if clash:
            raise ValueError(f"app title(s) {', '.join(clash)} already in the apps setting")
        with self._lock:
            write_apps_file(path, parsed)
        return {"apps_file": str(path), "apps": len(parsed), "applies": "at the next start"}

    def _current(self, name: str) -> str:
        """A setting as host.env now has it (what the console last wrote), else its value."""
        return self._saved().get(name, format_value(getattr(self.loaded.config, name)))

    # --- settings, logs, info -------------------------------------------------------------

    def settings(self) -> dict[str, object]:
        """Every knob as the running host uses it, plus `saved`: what host.env holds now (a
        change written by the console shows there until the host restarts)."""
        view = settings_view(self.loaded)
        saved = self._saved()
        for row in view["settings"]:  # type: ignore[attr-defined]
            row["saved"] = saved.get(row["name"], row["value"])
        return view

    def _saved(self) -> dict[str, str]:
        if not self.loaded.config_file.is_file():
            return {}
        try:
            on_disk = load_config(environ={}, config_path=self.loaded.config_file)
        except ConfigError:
            return {}
        # Only what host.env itself sets: a default read here is not the running host's
        # (the state dir's default depends on the environment, say).
        return {
            name: value
            for name, value, _ in on_disk.rows()
            if on_disk.origins[name].kind == "host.env"
        }

    def change_settings(self, changes: dict[str, str | None]) -> dict[str, object]:
        with self._lock:  # two browsers saving at once must not lose one's change
            return change_settings(self.loaded, changes)

    def logs(self, level: str = "INFO", lines: int = 200) -> list[str]:
        threshold = LEVELS.index(level)
        path = self.state_dir / "logs" / LOG_FILE_NAME
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return []
        with os.fdopen(fd, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
        kept = []
        for line in text.splitlines():
            m = _LOG_LINE.match(line)
            if m is not None and LEVELS.index(m.group(1)) >= threshold:
                kept.append(line)
        return kept[-lines:]

    def status(self) -> dict[str, object]:
        """What `punktfunk status` prints: sessions, listener counters, health."""
        if self.admin_status is None:
            return {}
        return dict(json.loads(self.admin_status("")))

    def info(self) -> dict[str, object]:
        config = self.loaded.config
        encoders: list[dict[str, object]] = []
        displays: list[str] = []
        if self.services is not None:
            encoders = [{"backend": str(e.backend), "codec": str(e.codec),
                         "max_bit_depth": e.max_bit_depth}
                        for e in self.services.report.encoders]  # fmt: skip
            displays = sorted(str(d) for d in self.services.caps.displays)
        return {
            "version": __version__,
            "hostname": platform.node(),
            "python": platform.python_version(),
            "encoders": encoders,
            "displays": displays,
            "native_port": self.native.port if self.native is not None else None,
            "gamestream_ports": config.gamestream_ports() if self.gs is not None else None,
            "sessions": len(self.live_stats()),
            "max_sessions": self.limit.max_sessions if self.limit is not None else None,
            "refusals": self.limit.recent() if self.limit is not None else [],
            "health": counters(),
        }


def _app_view(app: App) -> dict[str, object]:
    return {
        "title": app.title,
        "command": shlex.join(app.command),
        "working_dir": app.working_dir or "",
        "prep": [{"do": shlex.join(p.do), "undo": shlex.join(p.undo)} for p in app.prep],
        "detached": [shlex.join(d) for d in app.detached],
        "hdr": app.hdr,
    }


def _app_entry(view: dict[str, object]) -> dict[str, object]:
    """The console's app (as `_app_view` gives it) as an apps.json object; its checks are
    `parse_apps_file`'s."""
    entry: dict[str, object] = {
        "name": view.get("title"),
        "prep-cmd": view.get("prep") or [],
        "detached": view.get("detached") or [],
    }
    for key, name in (("cmd", "command"), ("working-dir", "working_dir")):
        if view.get(name):
            entry[key] = view[name]
    if "hdr" in view:
        entry["hdr"] = view["hdr"]
    return entry
