"""`punktfunk.Host`: the host's services in background threads of the calling program.

    with punktfunk.Host(name="sim", pin="1234") as host:
        frames = host.app("Sim")            # a PushSource; or host.app("Sim", source=render)
        session = frames.wait_session()     # a client launched "Sim"
        frames.push(render(session.mode))

Start-up is `punktfunk serve`'s own (`serve.start_host`); nothing here needs the caller's
asyncio loop or signal handlers, so it works from a plain script, inside a running event loop
or a Jupyter kernel. Settings are the registry's (`config.py`, the names of host.env), given
as keyword arguments; the environment and host.env apply as for `serve`, below the keywords.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ..apps import App, AppList, stable_id
from ..config import KNOBS, HostConfig, default_state_dir, load_config
from ..log import event
from .services import EmbeddedApp, EmbedServices
from .session import Session
from .source import PushSource, Render

_log = logging.getLogger("punktfunk.embed")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _setting_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def make_config(
    name: str, gamestream: bool, pin: str | None, state_dir: Path | str | None, settings: dict
) -> HostConfig:
    if not _NAME.fullmatch(name):
        raise ValueError(f"name {name!r}: letters, digits, '.', '_' and '-' (it names a folder)")
    unknown = sorted(set(settings) - set(KNOBS))
    if unknown:
        raise TypeError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOBS))}"
        )
    flags = {k: _setting_text(v) for k, v in settings.items()}
    flags["gamestream"] = _setting_text(gamestream)
    flags.setdefault("host_name", name)  # what Moonlight lists the program as
    if pin is not None:
        flags["pair_pin"] = pin
    if state_dir is not None:
        flags["state_dir"] = str(state_dir)
    loaded = load_config(flags)
    if loaded.origins["state_dir"].kind == "default":
        # Its own state (identity, pairings, admin socket) per name, apart from `serve`'s.
        return replace(loaded.config, state_dir=default_state_dir() / "embedded" / name)
    return loaded.config


def _file_log(config: HostConfig) -> logging.Handler | None:
    """The host's log file in its state dir, as `serve` keeps one, unless the program already
    set up punktfunk's logging; stderr and the program's excepthooks are left alone."""
    from .. import log

    root = logging.getLogger("punktfunk")
    if root.handlers:
        return None
    if root.level == logging.NOTSET:
        root.setLevel(config.log_level.upper())
    path = config.state_dir / "logs" / log.LOG_FILE_NAME
    try:
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log._private_dir(path.parent)
        handler = log._PrivateFileHandler(path, encoding="utf-8")
    except OSError as exc:
        event(root, "log.file_unavailable", logging.WARNING, path=path, reason=exc)
        return None
    handler.setFormatter(logging.Formatter(log._FORMAT))
    root.addHandler(handler)
    return handler


class Host:
    """A punktfunk host inside this program. Use as a context manager, or `start()`/`close()`."""

    def __init__(
        self,
        name: str = "punktfunk",
        *,
        gamestream: bool = True,
        native: bool = True,
        pin: str | None = None,
        state_dir: Path | str | None = None,
        **settings: Any,
    ) -> None:
        self.name = name
        self.config = make_config(name, gamestream, pin, state_dir, settings)
        self._native_on = native
        self._lock = threading.Lock()
        self._pending: list[EmbeddedApp] = []
        self._start_hooks: list[Callable[[Session], None]] = []
        self._end_hooks: list[Callable[[Session], None]] = []
        self._services: EmbedServices | None = None
        self._applist: AppList | None = None
        self._running: Any = None
        self._log_handler: logging.Handler | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Probe the encoders and bring both protocols up (a second or two); StartError from
        `punktfunk.serve` when a port or the state dir is taken."""
        from ..serve import configured_apps, start_host

        if self._running is not None:
            return self
        applist = configured_apps(self.config)  # before anything opens: a bad file says so
        self._log_handler = _file_log(self.config)
        services = EmbedServices(self.config)
        services.on_start.extend(self._start_hooks)
        services.on_end.extend(self._end_hooks)
        with self._lock:
            for app in self._pending:
                services.apps[app.title] = app
                applist.add(App(stable_id(app.title), app.title, hdr=app.hdr))
            self._pending.clear()
        try:
            running = start_host(self.config, services, applist, native_on=self._native_on)
        except BaseException:
            services.close()
            raise
        services.stats_of = self._stats_of
        self._services, self._applist, self._running = services, applist, running
        event(_log, "embed.host_ready", name=self.name, apps=",".join(services.apps),
              native_port=self.native_port or "off",
              gamestream=self.gamestream_port or "off")  # fmt: skip
        return self

    def close(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.close()  # ends every session, then the services
        handler, self._log_handler = self._log_handler, None
        if handler is not None:
            logging.getLogger("punktfunk").removeHandler(handler)
            handler.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    # --- apps and sessions ----------------------------------------------------------------

    def app(
        self, title: str, source: PushSource | Render | None = None, *, hdr: bool = False
    ) -> PushSource | Render:
        """Register an app clients list and launch. `source` is a `PushSource` (created when
        left out, and returned) or a callable `render(mode) -> frame` asked for each frame at
        the client's rate. `hdr=True`: the program renders float16 HDR frames when
        `mode.hdr` (only then does a client asking for HDR get it)."""
        if not title or title == "Desktop":
            raise ValueError(f"app title {title!r} is taken or empty")
        if source is None:
            source = PushSource()
        if not isinstance(source, PushSource) and not callable(source):
            raise ValueError("source must be a PushSource or a callable render(mode) -> frame")
        app = EmbeddedApp(title, source, hdr)
        with self._lock:
            services = self._services
            if services is None:
                if any(a.title == title for a in self._pending):
                    raise ValueError(f"app title {title!r} is used twice")
                self._pending.append(app)
                return source
        assert self._applist is not None
        self._applist.add(App(stable_id(title), title, hdr=hdr))
        services.apps[title] = app
        return source

    def on_session(
        self,
        start: Callable[[Session], None] | None = None,
        end: Callable[[Session], None] | None = None,
    ) -> None:
        """Call `start(session)` when a client launches an embedded app (before its first
        frame is due: render at `session.mode` from here on) and `end(session)` when it goes."""
        for hook, hooks, attr in ((start, self._start_hooks, "on_start"),
                                  (end, self._end_hooks, "on_end")):  # fmt: skip
            if hook is None:
                continue
            hooks.append(hook)
            if self._services is not None:
                getattr(self._services, attr).append(hook)

    @property
    def sessions(self) -> list[Session]:
        return self._services.sessions() if self._services is not None else []

    def wait_session(self, timeout: float | None = None) -> Session | None:
        """The first live session of any embedded app, waiting up to `timeout` s for one."""
        done = threading.Event()
        found: list[Session] = []

        def started(session: Session) -> None:
            found.append(session)
            done.set()

        self.on_session(start=started)
        try:
            if not self.sessions:
                done.wait(timeout)
            live = self.sessions
            return live[0] if live else (found[0] if found else None)
        finally:
            for hooks in (self._start_hooks, self._services.on_start if self._services else []):
                if started in hooks:
                    hooks.remove(started)

    # --- what a client needs to know ------------------------------------------------------

    @property
    def native_port(self) -> int | None:
        running = self._running
        return running.native.port if running is not None and running.native else None

    @property
    def gamestream_port(self) -> int | None:
        running = self._running
        return self.config.gamestream_port if running is not None and running.gs else None

    @property
    def fingerprint(self) -> bytes | None:
        """The native host's certificate fingerprint (what `punktfunk probe` pins)."""
        running = self._running
        return running.native.fingerprint if running is not None and running.native else None

    def pair(self, pin: str) -> str:
        """Arm pairing with the PIN a client shows (as `punktfunk pair PIN`)."""
        if self._running is None:
            raise RuntimeError("the host is not started")
        return str(self._running.commands["pair"](pin))

    def _stats_of(self, session_name: str) -> dict[str, object]:
        running = self._running
        if running is None:
            return {}
        for name, stats, plan in running.live_sessions():
            if name == session_name:
                snap = stats.snapshot()
                latency = snap["stages"].get("host_latency", {})  # type: ignore[union-attr]
                return {"session": name, "plan": plan, "frames": stats.counter("frames"),
                        "bytes": stats.counter("bytes"), "host_latency_ms": latency,
                        "bitrate_kbps": stats.gauge("bitrate_kbps")}  # fmt: skip
        return {}
