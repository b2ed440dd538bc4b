"""`punktfunk service run|install|uninstall|status [--user]|password`.

`SUBCOMMANDS` is the one list: each entry adds its arguments and names its handler, so one
more is one more entry (`service password` is the console's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import KNOBS, LoadedConfig
from . import systemd
from .admin import AdminError, request
from .supervisor import HANG_S, Supervisor

Handler = Callable[[argparse.Namespace, LoadedConfig], int]


def serve_argv(args: argparse.Namespace) -> list[str]:
    """`punktfunk serve` with the settings this command was given on its command line (the
    environment and host.env reach the child by themselves)."""
    argv = [sys.executable, "-m", "punktfunk.cli", "serve"]
    if args.config is not None:
        argv += ["--config", str(args.config)]
    for name, knob in KNOBS.items():
        if not hasattr(args, f"knob_{name}"):
            continue
        value = getattr(args, f"knob_{name}")
        if isinstance(value, bool):
            argv.append(knob.flag if value else "--no-" + knob.flag.removeprefix("--"))
        else:
            argv += [knob.flag, str(value)]
    return argv


def _run(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    return Supervisor(serve_argv(args), loaded.config.state_dir, hang_s=args.hang_timeout).run()


def _unit_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.unit_dir) if args.unit_dir else None


def _system_user(args: argparse.Namespace, real: bool) -> str | None:
    """The system unit's user: make the default one when installing for real as root."""
    if systemd.user_exists(args.run_as):
        return None
    if args.run_as != systemd.SYSTEM_USER or not real or os.geteuid() != 0:
        return f"note: user {args.run_as!r} does not exist yet; create it before starting"
    argv = ["useradd", "--system", "--user-group", "--home-dir", str(systemd.SYSTEM_STATE_DIR),
            "--no-create-home", "--shell", "/usr/sbin/nologin", args.run_as]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"note: `{' '.join(argv)}` failed: {done.stderr.strip()}"
    return f"created system user {args.run_as!r}"


def _install(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    user, unit_dir = args.user, _unit_dir(args)
    if not user and unit_dir is None and os.geteuid() != 0:
        print("punktfunk service install: a system unit needs root (sudo), or use --user "
              "for your desktop session", file=sys.stderr)  # fmt: skip
        return 1
    path = systemd.unit_path(user, unit_dir)
    spec = systemd.UnitSpec(
        user=user,
        argv=systemd.exec_start(args.config, args.python),
        run_as=args.run_as,
        groups=() if user else systemd.existing_groups(),
    )
    existed = path.exists()
    systemd.write_atomically(path, systemd.render_unit(spec))
    print(f"{'replaced' if existed else 'wrote'} {path} ({'user' if user else 'system'} unit)")
    if not user:
        note = _system_user(args, real=unit_dir is None)
        if note:
            print(note)
        if unit_dir is None and systemd.ensure_system_config(args.run_as):
            print(f"wrote {systemd.SYSTEM_CONFIG} (empty: every setting at its default)")
    scope = "--user " if user else ""
    if unit_dir is not None:
        print("not told to systemd (--unit-dir): run `systemctl daemon-reload` where it is used")
        return 0
    ok, text = systemctl_reload(user)
    print(f"systemctl {scope}daemon-reload: {'ok' if ok else 'skipped: ' + text}")
    if args.now:
        ok, text = systemd.systemctl(user, "enable", "--now", systemd.UNIT_NAME)
        print(f"systemctl {scope}enable --now: {'ok' if ok else 'failed: ' + text}")
        return 0 if ok else 1
    print(f"start it (and at every boot/login) with: systemctl {scope}enable --now "
          f"{systemd.UNIT_NAME}")  # fmt: skip
    return 0


def systemctl_reload(user: bool) -> tuple[bool, str]:
    ok, text = systemd.systemctl(user, "daemon-reload")
    return ok, (text.splitlines()[0] if text else "")


def _uninstall(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    user, unit_dir = args.user, _unit_dir(args)
    path = systemd.unit_path(user, unit_dir)
    scope = "--user " if user else ""
    if unit_dir is None:
        ok, text = systemd.systemctl(user, "disable", "--now", systemd.UNIT_NAME)
        first = text.splitlines()[0] if text else ""
        print(f"systemctl {scope}disable --now: {'ok' if ok else 'skipped: ' + first}")
    if not path.exists():
        print(f"no unit at {path}; nothing to remove")
        return 0
    try:
        path.unlink()
    except OSError as exc:
        print(f"punktfunk service uninstall: cannot remove {path}: {exc}", file=sys.stderr)
        return 1
    print(f"removed {path}")
    if unit_dir is None:
        ok, text = systemctl_reload(user)
        print(f"systemctl {scope}daemon-reload: {'ok' if ok else 'skipped: ' + text}")
    return 0


def _status(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    path = systemd.unit_path(args.user, _unit_dir(args))
    print(f"unit:    {path} ({'installed' if path.exists() else 'not installed'})")
    print(f"systemd: {systemd.describe_state(systemd.unit_state(args.user))}")
    try:
        answer = request(loaded.config.state_dir, "status")
    except AdminError as exc:
        print(f"host:    not answering ({exc})")
        return 1
    print(f"host:    running: {answer}")
    return 0


def _scope_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--user",
        action="store_true",
        help="the user unit (a desktop session) instead of the system unit",
    )
    cmd.add_argument(
        "--unit-dir",
        metavar="DIR",
        help="write/read the unit in DIR and leave systemd alone (packaging, tests)",
    )


def _install_arguments(cmd: argparse.ArgumentParser) -> None:
    _scope_arguments(cmd)
    cmd.add_argument("--now", action="store_true", help="also enable and start it")
    cmd.add_argument(
        "--python",
        metavar="PATH",
        help="the interpreter the unit runs (default: this one; packaging: the installed one)",
    )
    cmd.add_argument(
        "--run-as",
        default=systemd.SYSTEM_USER,
        metavar="USER",
        help="the system unit's user (default punktfunk, created if missing)",
    )


def _run_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--hang-timeout",
        type=float,
        default=HANG_S,
        metavar="SECONDS",
        help=f"restart a ready host whose keepalives stop for this long (default {HANG_S:.0f})",
    )


def _no_arguments(cmd: argparse.ArgumentParser) -> None:
    del cmd


def _password(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from ..console.cli import password_command  # argon2 loads only for this command

    return password_command(args, loaded)


# (name, help, add its arguments, handler)
SUBCOMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler], ...] = (
    (
        "run",
        "run the host supervised: restarted with backoff, stopped as a whole, sd_notify ready",
        _run_arguments,
        _run,
    ),
    ("install", "write the systemd unit (system, or --user)", _install_arguments, _install),
    ("uninstall", "stop, disable and remove the systemd unit", _scope_arguments, _uninstall),
    ("status", "the unit's state and the running host's live status", _scope_arguments, _status),
    ("password", "set a new console admin password and print it once", _no_arguments, _password),
)


def add_arguments(cmd: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    sub = cmd.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    for name, short, arguments, handler in SUBCOMMANDS:
        action = sub.add_parser(name, help=short, description=short, parents=[common])
        arguments(action)
        # Only `run` keeps a log in the state dir; install/status must not create one there.
        action.set_defaults(handler=handler, long_running=name == "run")
