"""`punktfunk connect HOST`: pair on first contact (like `probe`), then open the viewer window.

Exit status: 0 when frames were shown and the session ended cleanly (window closed,
Ctrl+Alt+Shift+Q or `--seconds` ran out); 1 when pygame-ce is missing, the host refused or
could not be reached, or nothing was shown; 2 for a bad argument.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..native.client.dial import ProbeError
from ..native.client.probe import (
    _CODECS,
    _SUITES,
    EXIT_FAILED,
    EXIT_USAGE,
    ClientStore,
    default_client_dir,
    parse_mode,
    pinned_or_paired,
)
from ..native.wire.registry import DEFAULT_PORT

INSTALL_HINT = "pip install 'punktfunk[viewer]'"


@dataclass(frozen=True)
class ConnectArgs:
    host: str
    port: int = DEFAULT_PORT
    mode: str = "1280x720@60"
    pin: str | None = None
    fullscreen: bool = False
    seconds: float | None = None  # None: until the window is closed
    screenshot: Path | None = None
    codec: str = "h264"  # or a comma list, preferred first (the ClientHello lists them all)
    suite: str = "aes128gcm"
    bitrate_kbps: int = 20_000
    name: str = "punktfunk-viewer"
    client_dir: Path | None = None


def have_pygame() -> bool:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame  # noqa: F401
    except ImportError:
        return False
    return True


def run_connect(args: ConnectArgs) -> int:
    if not have_pygame():
        print(
            f"punktfunk connect: the viewer needs pygame-ce, which is not installed: "
            f"{INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        mode = parse_mode(args.mode)
    except ValueError as exc:
        print(f"punktfunk connect: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.seconds is not None and args.seconds <= 0:
        print("punktfunk connect: --seconds must be positive", file=sys.stderr)
        return EXIT_USAGE
    codecs = [c.strip() for c in args.codec.split(",")]  # preferred first, then fallbacks
    if not all(c in _CODECS for c in codecs) or args.suite not in _SUITES:
        print("punktfunk connect: unknown codec or suite", file=sys.stderr)
        return EXIT_USAGE
    store = ClientStore(args.client_dir or default_client_dir())
    try:
        host_fp = pinned_or_paired(store, args.host, args.port, args.pin, args.name)
    except ProbeError as exc:
        print(f"punktfunk connect: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if host_fp is None:
        print(
            f"punktfunk connect: not paired with {args.host}:{args.port} yet: pass --pin PIN "
            "(the PIN armed on the host with `punktfunk pair PIN` or its --pin)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    from .app import Viewer

    return Viewer(args, store.identity, host_fp, mode).run()
