"""Structured logging: one `event key=value ...` line per decision that matters.

Per-frame paths stay quiet; decisions (plan resolved, backend chosen, fallback taken, session
start/end) are logged once through `event()` so a log can be grepped by event name.

Crashes: `setup_logging` routes uncaught exceptions of every thread (and of the main thread)
into this logging, traceback included, and counts them (`crash_counts`). The log directory is
kept 0700 and the log file 0600, opened without following a symlink.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FILE_NAME = "punktfunk.log"

_crash_log = logging.getLogger("punktfunk.crash")
_counts_lock = threading.Lock()
_counts: dict[str, int] = {"uncaught_exceptions": 0, "thread_crashes": 0}
_by_thread: dict[str, int] = {}


def _fmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        # One event, one line: a value's newlines (a tool's multi-line stderr) are escaped.
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


def format_event(name: str, /, **fields: object) -> str:
    """Render `name key=value ...`, quoting values that contain spaces, quotes or '='."""
    parts = [name]
    parts.extend(f"{key}={_fmt_value(value)}" for key, value in fields.items())
    return " ".join(parts)


def event(
    logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: object
) -> None:
    """Log one structured decision line."""
    if logger.isEnabledFor(level):
        logger.log(level, format_event(name, **fields))


class Throttle:
    """One log line per `interval_s` for an event a flood can trigger at will.

    The lines held back are counted and reported with the next one that goes out
    (`since_last=`), so a flood of garbage never becomes a flood of log lines, yet nothing is
    hidden. Thread-safe; `clock` is injectable for tests.
    """

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def event(
        self,
        logger: logging.Logger,
        name: str,
        level: int = logging.INFO,
        /,
        throttle_key: str = "",
        **fields: object,
    ) -> bool:
        """Log `name` unless it (with this `throttle_key`) went out less than `interval_s` ago;
        True when logged."""
        key = f"{name}/{throttle_key}"
        now = self._clock()
        with self._lock:
            held = self._held.get(key, 0) + 1
            if now - self._last.get(key, now - self._interval) < self._interval:
                self._held[key] = held
                return False
            self._last[key] = now
            self._held[key] = 0
        event(logger, name, level, **fields, since_last=held)
        return True


def count_crash(kind: str, thread: str) -> None:
    with _counts_lock:
        _counts[kind] = _counts.get(kind, 0) + 1
        _by_thread[thread] = _by_thread.get(thread, 0) + 1


def crash_counts() -> dict[str, object]:
    """How many exceptions escaped (threads and main) or crashed a service, and where."""
    with _counts_lock:
        return {**_counts, "crashes_by_thread": dict(_by_thread)}


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    count_crash("uncaught_exceptions", name)
    _crash_log.error(
        format_event("thread.exception", thread=name, reason=repr(args.exc_value)),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
    )


def _main_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    count_crash("uncaught_exceptions", "main")
    _crash_log.critical(
        format_event("host.exception", reason=repr(exc)), exc_info=(exc_type, exc, tb)
    )


class _PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file is created 0600 and never reached through a symlink."""

    def _open(self):  # type: ignore[no-untyped-def]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a file an older version left readable
        except OSError:
            os.close(fd)
            raise
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise OSError(f"{path} is not a plain directory")
    path.chmod(0o700)


def setup_logging(level: str, state_dir: Path | None) -> Path | None:
    """Send punktfunk's logs to stderr and, when the state dir is writable, to a log file there.

    Returns the log file path, or None when only stderr is used (the reason is logged).
    """
    root = logging.getLogger("punktfunk")
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    root.propagate = False
    threading.excepthook = _thread_hook
    sys.excepthook = _main_hook
    if state_dir is None:
        return None
    path = state_dir / "logs" / LOG_FILE_NAME
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_dir(path.parent)
        file_handler = _PrivateFileHandler(path, encoding="utf-8")
    except OSError as exc:
        event(root, "log.file_unavailable", logging.WARNING, path=path,
              reason=exc.strerror or exc)  # fmt: skip
        return None
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    return path
