"""`punktfunk vdisplay`: run the driver in the foreground, or (`vdisplay edid`) write an EDID."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..config import LoadedConfig
from ..proto.control import mode_error
from .driver.edid import EdidRequest, build_edid, serial_for

_MODE = re.compile(r"^(\d+)x(\d+)@(\d+)$")


def _mode(text: str) -> tuple[int, int, int]:
    match = _MODE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT@HZ (e.g. 1920x1080@120)")
    width, height, hz = (int(g) for g in match.groups())
    reason = mode_error(width, height, hz)
    if reason is not None:
        raise argparse.ArgumentTypeError(reason)
    return width, height, hz


def _serial(text: str) -> int:
    value = int(text, 0)
    if not 0 <= value < 1 << 32:
        raise argparse.ArgumentTypeError(f"serial {text} does not fit in 32 bits")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The driver's own options, and the `edid` action."""
    driver = parser.add_argument_group("driver")
    driver.add_argument(
        "--exit-when-idle",
        metavar="SECONDS",
        type=float,
        default=None,
        help="exit once no host has been connected and no monitor existed for this long "
        "(the host starts the driver with this; default: serve until stopped)",
    )
    driver.add_argument(
        "--no-publish",
        action="store_true",
        help="create monitors and accept rings but never publish a frame (a test aid: the "
        "host must fall back to X11 capture)",
    )
    actions = parser.add_subparsers(
        dest="vdisplay_action",
        metavar="ACTION",
        title="actions",
        description="none: run the driver in the foreground (Ctrl-C/SIGTERM removes every "
        "monitor and exits)",
    )
    edid = actions.add_parser(
        "edid",
        help="write the EDID a virtual monitor at a mode would have",
        description="Write the 256-byte EDID (base block + CTA-861 extension) of a virtual "
        "monitor at MODE; check it with `edid-decode --check FILE`.",
    )
    edid.add_argument("--mode", required=True, type=_mode, help="WIDTHxHEIGHT@HZ")
    edid.add_argument("--hdr", action="store_true", help="advertise HDR10 (SMPTE ST 2084)")
    ident = edid.add_mutually_exclusive_group()
    ident.add_argument("--serial", type=_serial, help="32-bit serial number (decimal or 0x..)")
    ident.add_argument("--client-id", help="derive the serial from a client identity")
    edid.add_argument(
        "-o", "--output", required=True, type=Path, help="file to write ('-' = stdout)"
    )


def _write_edid(args: argparse.Namespace) -> int:
    width, height, hz = args.mode
    if args.serial is not None:
        serial = args.serial
    else:
        serial = serial_for(args.client_id) if args.client_id else 0
    data = build_edid(EdidRequest(width, height, hz, args.hdr, serial))
    if str(args.output) == "-":
        sys.stdout.buffer.write(data)
    else:
        args.output.write_bytes(data)
        print(
            f"wrote {len(data)}-byte EDID for {width}x{height}@{hz}"
            f"{' HDR' if args.hdr else ''}, serial 0x{serial:08x}, to {args.output}",
            file=sys.stderr,
        )
    return 0


def run(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """The `vdisplay` command handler."""
    if getattr(args, "vdisplay_action", None) == "edid":
        return _write_edid(args)
    from .driver.main import run_driver

    return run_driver(
        loaded.config, exit_when_idle_s=args.exit_when_idle, publish=not args.no_publish
    )
