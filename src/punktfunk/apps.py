"""The app list clients see: `Desktop` (the session's own virtual display) plus configured
apps, each launched on the session's display and killed with it.

Apps come from the `apps` setting (`Title=command; ...`) and from the apps file (`apps_file`,
`apps.json` beside host.env), which adds what a command alone cannot say, in Sunshine's
apps.json terms so a Sunshine file carries over:

    {"apps": [{"name": "Steam", "cmd": "steam -bigpicture", "working-dir": "/home/me",
               "prep-cmd": [{"do": "pactl set-sink-mute 0 1", "undo": "pactl ..."}],
               "detached": ["syncthing"]}]}

A launch runs the prep commands in order (each must succeed; a failure undoes those done and
refuses the launch with the command's own words), starts the detached commands (left
running, not the session's), then the command; the session's end stops the command's whole
process group, then runs the undo commands in reverse order.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .log import event
from .ownfiles import replace_file

DESKTOP_ID = 881448767  # any stable positive int32 works; this one is what clients often see


_log = logging.getLogger("punktfunk.apps")
PREP_TIMEOUT_S = 30.0  # a prep or undo command that takes longer is killed (and failed)
# Sunshine apps.json keys that mean nothing here (per-app images, elevation, its own output
# and wait policies): read and let be, so a Sunshine file loads as it is.
_SUNSHINE_ONLY = frozenset({"image-path", "output", "elevated", "auto-detach", "wait-all",
                            "exit-timeout", "exclude-global-prep-cmd", "id", "uuid"})  # fmt: skip
_KEYS = frozenset({"name", "cmd", "working-dir", "prep-cmd", "detached", "hdr"})


class AppError(Exception):
    """An app could not start (a prep command failed, the command is not there)."""


@dataclass(frozen=True)
class Prep:
    do: tuple[str, ...]
    undo: tuple[str, ...] = ()


@dataclass(frozen=True)
class App:
    id: int
    title: str
    command: tuple[str, ...] = ()  # empty: just the desktop (and any prep/detached)
    hdr: bool = True
    working_dir: str | None = None
    prep: tuple[Prep, ...] = ()
    detached: tuple[tuple[str, ...], ...] = ()

    @property
    def runs_anything(self) -> bool:
        return bool(self.command or self.prep or self.detached)


def stable_id(title: str) -> int:
    return zlib.crc32(title.encode()) & 0x7FFFFFFF or 1


def parse_apps(spec: str) -> tuple[App, ...]:
    """Parse `Title=command args; Other=command` (the `apps` setting). ValueError if malformed."""
    apps: list[App] = []
    for entry in filter(None, (part.strip() for part in spec.split(";"))):
        title, sep, command = entry.partition("=")
        title, command = title.strip(), command.strip()
        if not sep or not title or not command:
            raise ValueError(f"app entry {entry!r} is not Title=command")
        _append_new(apps, App(stable_id(title), title, tuple(shlex.split(command))))
    return tuple(apps)


def _append_new(apps: list[App], app: App) -> None:
    """`app` after the others; ValueError if its title is taken (Desktop always is)."""
    if app.title == "Desktop" or any(a.title == app.title for a in apps):
        raise ValueError(f"app title {app.title!r} is used twice")
    apps.append(app)


def _command(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise ValueError(f"{where}: a command line (a string), not {type(value).__name__}")
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not argv:
        raise ValueError(f"{where}: an empty command")
    return argv


def _parse_entry(entry: object, index: int) -> App:
    if not isinstance(entry, dict):
        raise ValueError(f"app {index}: an object with a name")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in ";=\n\r"):
        raise ValueError(f"app {index}: a name (text without ';', '=' or line breaks)")
    title = name.strip()
    unknown = set(entry) - _KEYS - _SUNSHINE_ONLY
    if unknown:
        raise ValueError(f"app {title!r}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(_KEYS))}")  # fmt: skip
    command = _command(entry["cmd"], f"app {title!r} cmd") if entry.get("cmd") else ()
    working_dir = entry.get("working-dir") or None
    if working_dir is not None and (
        not isinstance(working_dir, str) or not working_dir.startswith("/")
    ):
        raise ValueError(f"app {title!r} working-dir: an absolute path")
    prep = []
    steps = entry.get("prep-cmd", [])
    if not isinstance(steps, list):
        raise ValueError(f'app {title!r} prep-cmd: a list of {{"do": ..., "undo": ...}}')
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not step.get("do"):
            raise ValueError(f'app {title!r} prep-cmd {i}: an object with "do"')
        undo = (
            _command(step["undo"], f"app {title!r} prep-cmd {i} undo") if step.get("undo") else ()
        )
        prep.append(Prep(_command(step["do"], f"app {title!r} prep-cmd {i} do"), undo))
    detached = entry.get("detached", [])
    if not isinstance(detached, list):
        raise ValueError(f"app {title!r} detached: a list of command lines")
    hdr = entry.get("hdr", True)
    if not isinstance(hdr, bool):
        raise ValueError(f"app {title!r} hdr: true or false")
    return App(
        stable_id(title), title, command, hdr, working_dir, tuple(prep),
        tuple(_command(d, f"app {title!r} detached {i}") for i, d in enumerate(detached)),
    )  # fmt: skip


def parse_apps_file(text: str) -> tuple[App, ...]:
    """The apps of an apps.json text. ValueError, saying which app and key, if malformed."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    entries = data.get("apps") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError('an object {"apps": [...]}')
    apps: list[App] = []
    for index, entry in enumerate(entries):
        _append_new(apps, _parse_entry(entry, index))
    return tuple(apps)


def app_to_entry(app: App) -> dict[str, object]:
    """An app as its apps.json object (what `parse_apps_file` reads back the same)."""
    entry: dict[str, object] = {"name": app.title}
    if app.command:
        entry["cmd"] = shlex.join(app.command)
    if app.working_dir:
        entry["working-dir"] = app.working_dir
    if app.prep:
        entry["prep-cmd"] = [
            {"do": shlex.join(p.do), **({"undo": shlex.join(p.undo)} if p.undo else {})}
            for p in app.prep
        ]
    if app.detached:
        entry["detached"] = [shlex.join(d) for d in app.detached]
    if not app.hdr:
        entry["hdr"] = False
    return entry


def load_apps(setting: str, apps_file: Path | None) -> tuple[App, ...]:
    """The configured apps: the `apps` setting's, then the apps file's (if there is one).
    ValueError naming the file and what is wrong."""
    apps = list(parse_apps(setting))
    if apps_file is not None and apps_file.is_file():
        try:
            from_file = parse_apps_file(apps_file.read_text())
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"apps file {apps_file}: {exc}") from None
        for app in from_file:
            if any(a.title == app.title for a in apps):
                raise ValueError(f"apps file {apps_file}: app title {app.title!r} is also "
                                 "in the apps setting")  # fmt: skip
            apps.append(app)
    return tuple(apps)


def write_apps_file(path: Path, apps: tuple[App, ...]) -> None:
    """Replace the apps file atomically (a reader sees the old file or the new one)."""
    text = json.dumps({"apps": [app_to_entry(a) for a in apps]}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text.encode(), 0o644)


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


class AppList:
    def __init__(self, extra: tuple[App, ...] = ()) -> None:
        self.desktop = App(DESKTOP_ID, "Desktop")
        self.apps = (self.desktop, *extra)
        self._art: dict[int, bytes] = {}

    def add(self, app: App) -> None:
        """One more app (an embedded program's, registered while the host runs)."""
        if any(a.title == app.title or a.id == app.id for a in self.apps):
            raise ValueError(f"app title {app.title!r} is used twice")
        self.apps = (*self.apps, app)

    def by_id(self, app_id: int) -> App | None:
        return next((a for a in self.apps if a.id == app_id), None)

    def by_title(self, title: str) -> App | None:
        return next((a for a in self.apps if a.title == title), None)

    def box_art(self, app: App) -> bytes:
        """A plain 130x180 PNG tinted per app (clients want an image; we have no artwork)."""
        if app.id not in self._art:
            hue = app.id % 0xFFFFFF
            self._art[app.id] = _png(130, 180, ((hue >> 16) & 0xFF, (hue >> 8) & 0xFF, hue & 0xFF))
        return self._art[app.id]


class AppProcess:
    """A configured app running for one session: its own process group, on the session's
    display (its environment says which); `stop()` ends the whole group, so nothing the app
    started outlives the session. `on_exit(returncode)` hears when it ends by itself."""

    GRACE_S = 2.0  # between SIGTERM and SIGKILL

    def __init__(
        self, app: App, env: Mapping[str, str], on_exit: Callable[[int], None] | None = None
    ) -> None:
        self.app = app
        self._stopping = threading.Event()
        self._on_exit = on_exit
        # Raises OSError (e.g. FileNotFoundError) when the command cannot start.
        self.proc = subprocess.Popen(
            app.command,
            env={**os.environ, **env},
            cwd=app.working_dir,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._watcher = threading.Thread(
            target=self._watch, name=f"app-{self.proc.pid}", daemon=True
        )
        self._watcher.start()

    def _watch(self) -> None:
        code = self.proc.wait()
        if not self._stopping.is_set() and self._on_exit is not None:
            self._on_exit(code)

    def stop(self) -> None:
        self._stopping.set()
        for sig, wait in ((signal.SIGTERM, self.GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            if not self._group_alive():
                break
        self._watcher.join(timeout=1)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


class AppRun:
    """One session's run of an app: its prep commands, detached commands and command, in that
    order (module docstring). Raises AppError (with the failing command's words) when a prep
    command fails or the command cannot start; what was prepared is undone first. `stop()`
    ends the command's group and runs the undo commands in reverse order."""

    def __init__(
        self,
        app: App,
        env: Mapping[str, str],
        session: str,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self._env = {**os.environ, **env}
        self._session = session
        self._undo: list[tuple[str, ...]] = []
        self.process: AppProcess | None = None
        try:
            for step in app.prep:
                self._run(step.do, "prep")
                if step.undo:
                    self._undo.append(step.undo)
            for argv in app.detached:
                self._detach(argv)
            if app.command:
                try:
                    self.process = AppProcess(app, env, on_exit)
                except OSError as exc:
                    raise AppError(f"command {shlex.join(app.command)!r}: {exc}") from None
        except BaseException:
            self._run_undo()
            raise

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process is not None else None

    def _run(self, argv: tuple[str, ...], what: str) -> None:
        line = shlex.join(argv)
        try:
            done = subprocess.run(
                argv, env=self._env, cwd=self.app.working_dir, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=PREP_TIMEOUT_S, start_new_session=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise AppError(f"{what} command {line!r} took over {PREP_TIMEOUT_S:.0f} s") from None
        except OSError as exc:
            raise AppError(f"{what} command {line!r}: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise AppError(f"{what} command {line!r} exited with {done.returncode}"
                           + (f": {said[-1][:200]}" if said else ""))  # fmt: skip
        event(_log, "app.prep", session=self._session, app=self.app.title, step=what,
              command=line)  # fmt: skip

    def _detach(self, argv: tuple[str, ...]) -> None:
        try:
            proc = subprocess.Popen(
                argv, env=self._env, cwd=self.app.working_dir, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise AppError(f"detached command {shlex.join(argv)!r}: {exc}") from None
        # Not the session's: left running at its end; only reaped here when it exits.
        threading.Thread(target=proc.wait, name=f"detached-{proc.pid}", daemon=True).start()
        event(_log, "app.detached", session=self._session, app=self.app.title, pid=proc.pid,
              command=shlex.join(argv))  # fmt: skip

    def _run_undo(self) -> None:
        undo, self._undo = self._undo, []
        for argv in reversed(undo):
            try:
                self._run(argv, "undo")
            except AppError as exc:  # the rest still run: each undoes its own step
                event(_log, "app.undo_failed", logging.WARNING, session=self._session,
                      app=self.app.title, reason=str(exc))  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self._run_undo()


def start_app(
    app: App, source: object, session: str, on_exit: Callable[[int], None]
) -> AppRun | None:
    """Run a launched app for a session, on its display (the source's `app_env`; a display
    that places windows per client gets the command's pid): None when the app runs nothing
    (Desktop). AppError, logged with its reason, when it cannot start."""
    if not app.runs_anything:
        return None
    try:
        run = AppRun(app, getattr(source, "app_env", {}), session, on_exit)
    except AppError as exc:
        event(_log, "app.failed", logging.ERROR, session=session, app=app.title, reason=str(exc))
        raise
    place = getattr(source, "place_app", None)
    if place is not None and run.pid is not None:  # display=wlroots: this client's output
        place(run.pid)
    event(_log, "app.start", session=session, app=app.title, pid=run.pid or 0,
          display=getattr(source, "display_name", ""))  # fmt: skip
    return run
