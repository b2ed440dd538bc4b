"""`punktfunk service password` and `punktfunk token create --scope read|admin`: console
credentials, written straight into the state dir (a running host picks them up at once).

Every CLI command builds its parser with `add_token_arguments`: argon2 and the rest of the
console load only when one of these commands runs."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LoadedConfig


def password_command(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """Set a new random admin password and print it once."""
    from .auth import new_password, set_password

    password = new_password()
    set_password(loaded.config.state_dir, password)
    print(f"new console admin password (shown once): {password}")
    print("browser sessions logged in with the old one stay valid until the host restarts",
          file=sys.stderr)  # fmt: skip
    return 0


def token_command(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """Create a bearer token for scripts; only its hash is kept."""
    from .auth import create_token

    raw = create_token(loaded.config.state_dir, args.scope, args.name or "")
    print(raw)
    print(f"a {args.scope} token (shown once; send it as `Authorization: Bearer <token>`)",
          file=sys.stderr)  # fmt: skip
    return 0


def add_token_arguments(cmd: argparse.ArgumentParser) -> None:
    # A positional action rather than a sub-parser, so the settings flags work after it too.
    cmd.add_argument("action", choices=("create",), help="create: a new bearer token")
    cmd.add_argument("--scope", choices=("read", "admin"), default="read",
                     help="read: GET only; admin: everything")  # fmt: skip
    cmd.add_argument("--name", help="a note kept with the token's hash")
