"""Structured logging: one `event key=value ...` line per decision that matters.

Per-frame paths stay quiet; decisions (plan resolved, backend chosen, fallback taken, session
start/end) are logged once through `event()` so a log can be grepped by event name.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FILE_NAME = "punktfunk.log"


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
    if state_dir is None:
        return None
    path = state_dir / "logs" / LOG_FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        event(root, "log.file_unavailable", logging.WARNING, path=path, reason=exc.strerror)
        return None
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    return path
