"""Settings for the console: every registry knob with its value, source, help and allowed values;
changes validated exactly as host.env is read, written back to host.env atomically.

A change takes effect when the host next starts (the running host's settings are frozen, as a
flag's are); the answer says so, and says when a flag or env variable would still override it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from ..config import KNOBS, ConfigError, LoadedConfig, format_value, load_config, read_host_env
from .auth import write_private


def settings_view(loaded: LoadedConfig) -> dict[str, object]:
    rows = []
    for name, value, origin in loaded.rows():
        knob = KNOBS[name]
        rows.append(
            {
                "name": name,
                "value": value,
                "source": origin,
                "default": knob.default_text,
                "allowed": knob.allowed,
                "help": knob.help,
                "env": knob.env,
                "type": "bool" if knob.is_bool else "text",
            }
        )
    return {"config_file": str(loaded.config_file), "settings": rows}


def _render(lines: list[str], changes: Mapping[str, str | None]) -> str:
    """host.env with `changes` applied: a known key's line replaced in place (comments and order
    kept), a new key appended, a None value's line removed (back to the default)."""
    done: set[str] = set()
    out: list[str] = []
    for raw in lines:
        line = raw.strip()
        key = line.removeprefix("export ").partition("=")[0].strip()
        name = next((n for n in changes if KNOBS[n].env == key), None)
        if name is None or line.startswith("#"):
            out.append(raw)
            continue
        done.add(name)
        if changes[name] is not None:
            out.append(f"{KNOBS[name].env}={_quote(changes[name] or '')}")
    for name, value in changes.items():
        if name not in done and value is not None:
            out.append(f"{KNOBS[name].env}={_quote(value)}")
    return "\n".join(out) + "\n"


def _quote(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("a setting is one line")
    return f'"{value}"' if any(c.isspace() or c == "#" for c in value) else value


def change_settings(loaded: LoadedConfig, changes: Mapping[str, str | None]) -> dict[str, object]:
    """Validate `changes` ({knob: text, or None for the default}) and write them to host.env.
    ConfigError (naming the knob and what is allowed) if any is bad; nothing is written then."""
    for name, value in changes.items():
        knob = KNOBS.get(name)
        if knob is None:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            try:
                knob.parse(value)
                _quote(value)
            except ValueError as exc:
                raise ConfigError(
                    f"bad value {value!r} for {name} ({exc}); allowed: {knob.allowed}"
                ) from None
    path = loaded.config_file
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    text = _render(lines, changes)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    candidate = path.with_name(f".{path.name}.check")
    write_private(candidate, text.encode())
    try:
        read_host_env(candidate)  # exactly how the next start reads it
        load_config(environ={}, config_path=candidate)  # and the cross-knob checks
    finally:
        candidate.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o600
    write_private(path, text.encode())
    os.chmod(path, mode)
    overridden = {
        name: str(loaded.origins[name])
        for name in changes
        if loaded.origins[name].kind in ("flag", "env")
    }
    return {
        "written": str(path),
        "changed": {n: (format_value(v) if v is not None else None) for n, v in changes.items()},
        "restart_required": True,
        "overridden": overridden,
    }
