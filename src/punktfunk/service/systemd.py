"""The systemd unit: written, removed and asked about by `punktfunk service install|uninstall|
status [--user]`.

A user unit (`~/.config/systemd/user/punktfunk.service`) runs the host in a desktop session as
that user; a system unit (`/etc/systemd/system/punktfunk.service`) runs it on a headless box as
the `punktfunk` system user, with its state in /var/lib/punktfunk and its settings in
/etc/punktfunk/host.env. Both run `punktfunk service run` (Type=notify: systemd counts the
service started once the host listens, and its watchdog sees the supervisor's keepalives).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..config import SYSTEM_CONFIG
from ..ownfiles import replace_file

UNIT_NAME = "punktfunk.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_USER = "punktfunk"
SYSTEM_STATE_DIR = Path("/var/lib/punktfunk")
# Device access a headless host wants, each only where this machine has the group.
SYSTEM_GROUPS = ("input", "video", "render", "audio")


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_path(user: bool, unit_dir: Path | None = None) -> Path:
    if unit_dir is not None:
        return unit_dir / UNIT_NAME
    return (user_unit_dir() if user else SYSTEM_UNIT_DIR) / UNIT_NAME


def _quote(word: str) -> str:
    """One ExecStart word in systemd's syntax: specifiers and variables escaped, quoted if it
    has blanks or quotes."""
    word = word.replace("%", "%%").replace("$", "$$")
    if any(c in word for c in " \t\"'\\"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_start(config: Path | None = None, python: str | None = None) -> list[str]:
    """This installation's interpreter running `service run` (right for a venv, pipx or the
    .deb's /opt tree alike, unlike a bare `punktfunk` looked up on PATH)."""
    argv = [python or sys.executable, "-m", "punktfunk.cli", "service", "run"]
    return argv + (["--config", str(config)] if config is not None else [])


@dataclass(frozen=True)
class UnitSpec:
    user: bool
    argv: Sequence[str]
    run_as: str = SYSTEM_USER  # system units only
    groups: Sequence[str] = ()


def render_unit(spec: UnitSpec) -> str:
    scope = " --user" if spec.user else ""
    lines = [
        f"# Written by `punktfunk service install{scope}` (punktfunk {__version__}); "
        f"`punktfunk service uninstall{scope}` removes it.",
        "[Unit]",
        "Description=punktfunk streaming host (a virtual monitor per client)",
    ]
    if not spec.user:
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_quote(w) for w in spec.argv),
        # The supervisor relays SIGHUP: the host stops and starts again with host.env re-read.
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5",
        # The first start probes the encoders; the supervisor pings every few seconds.
        "TimeoutStartSec=180",
        "WatchdogSec=60",
        # SIGTERM to the supervisor only: it stops the host and ends everything the host
        # started; systemd's SIGKILL to the rest is the fallback after TimeoutStopSec.
        "KillMode=mixed",
        "TimeoutStopSec=45",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if not spec.user:
        lines += [
            f"User={spec.run_as}",
            *([f"SupplementaryGroups={' '.join(spec.groups)}"] if spec.groups else []),
            f"StateDirectory={SYSTEM_STATE_DIR.name}",
            "StateDirectoryMode=0700",
            f"Environment=PUNKTFUNK_STATE_DIR={SYSTEM_STATE_DIR}",
            f"Environment=PUNKTFUNK_CONFIG={SYSTEM_CONFIG}",
            "NoNewPrivileges=yes",
            "ProtectSystem=full",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if spec.user else 'multi-user.target'}"]
    return "\n".join(lines) + "\n"


def existing_groups(names: Sequence[str] = SYSTEM_GROUPS) -> list[str]:
    found = []
    for name in names:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        found.append(name)
    return found


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


CONFIG_HEADER = (
    "# punktfunk host settings, one PUNKTFUNK_NAME=value per line (`punktfunk config show`\n"
    "# lists every name with its value and source). `systemctl reload punktfunk` applies them.\n"
)


def ensure_system_config(run_as: str, path: Path = SYSTEM_CONFIG) -> bool:
    """The system unit names /etc/punktfunk/host.env explicitly, and a named file must exist:
    create it empty (0640, readable by the service user's group, since it may hold a PIN).
    True when it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "w") as out:
        out.write(CONFIG_HEADER)
    with contextlib.suppress(KeyError, PermissionError):  # no such user yet: root reads it
        os.chown(path, 0, pwd.getpwnam(run_as).pw_gid)
    return True


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text.encode(), 0o644)


def systemctl(user: bool, *args: str) -> tuple[bool, str]:
    """Run systemctl; (succeeded, its output or why it could not run)."""
    program = shutil.which("systemctl")
    if program is None:
        return False, "systemctl not found (no systemd here)"
    argv = [program, *(["--user"] if user else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    text = (done.stdout + done.stderr).strip()
    return done.returncode == 0, text


def unit_state(user: bool) -> dict[str, str] | str:
    """systemd's view of the unit (LoadState, ActiveState, ...), or why it cannot be had."""
    props = "LoadState,ActiveState,SubState,MainPID,NRestarts,UnitFileState,Result"
    ok, text = systemctl(user, "show", UNIT_NAME, "-p", props)
    if not ok:
        return text.splitlines()[0] if text else "systemctl failed"
    state = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        state[key] = value
    return state


def describe_state(state: dict[str, str] | str) -> str:
    if isinstance(state, str):
        return f"unknown ({state})"
    if state.get("LoadState") == "not-found":
        return "not loaded by systemd (not installed, or daemon-reload pending)"
    text = f"{state.get('ActiveState', '?')} ({state.get('SubState', '?')})"
    if state.get("MainPID", "0") != "0":
        text += f", supervisor pid {state['MainPID']}"
    if state.get("NRestarts", "0") != "0":
        text += f", {state['NRestarts']} restarts by systemd"
    if state.get("UnitFileState"):
        text += f", {state['UnitFileState']}"
    return text
