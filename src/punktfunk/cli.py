"""The `punktfunk` command.

Every subcommand accepts every settings knob as a flag (from the one registry in config.py) and
`--config PATH`. Exit codes: 0 ok, 1 a runtime or configuration error (message on stderr),
2 a usage error or a capability that is not built yet.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import KNOBS, ConfigError, LoadedConfig, load_config
from .log import event, setup_logging

EXIT_OK, EXIT_ERROR, EXIT_UNAVAILABLE = 0, 1, 2
# Commands that run for a long time also log into <state_dir>/logs; the rest log to stderr only.
LONG_RUNNING = frozenset({"serve", "demo", "vdisplay", "service"})

Handler = Callable[[argparse.Namespace, LoadedConfig], int]


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (flag > PUNKTFUNK_* env > host.env > default)")
    group.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="host.env to read instead of the default (also $PUNKTFUNK_CONFIG)",
    )
    for knob in KNOBS.values():
        text = f"{knob.help} [{knob.allowed}; env {knob.env}]"
        if knob.is_bool:
            group.add_argument(
                knob.flag,
                dest=f"knob_{knob.name}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
        else:
            group.add_argument(
                knob.flag,
                dest=f"knob_{knob.name}",
                metavar="VALUE",
                default=argparse.SUPPRESS,
                help=text,
            )
    return common


def _flags(args: argparse.Namespace) -> dict[str, str]:
    flags: dict[str, str] = {}
    for name in KNOBS:
        if hasattr(args, f"knob_{name}"):
            value = getattr(args, f"knob_{name}")
            flags[name] = ("true" if value else "false") if isinstance(value, bool) else value
    return flags


def _config_show(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    state = "found" if loaded.config_file_found else "not present, defaults apply"
    print(f"# host.env: {loaded.config_file} ({state})")
    rows = list(loaded.rows())
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, origin in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {origin}")
    return EXIT_OK


def _doctor(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .doctor import run_doctor

    return run_doctor(loaded, clean=args.clean)


def _serve(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .serve import run_serve

    return run_serve(loaded.config, loaded)


def _pair(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .service.admin import AdminError, request

    try:
        print(request(loaded.config.state_dir, f"pair {args.pin}"))
    except AdminError as exc:
        print(f"punktfunk pair: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _admin(verb: str) -> Handler:
    """A command answered by the running host over its admin socket (status, clients, revoke)."""

    def handler(args: argparse.Namespace, loaded: LoadedConfig) -> int:
        from .service.admin import AdminError, request

        line = f"{verb} {getattr(args, 'fingerprint', '')}".strip()
        try:
            print(request(loaded.config.state_dir, line))
        except AdminError as exc:
            print(f"punktfunk {verb}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK

    return handler


def _probe(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .native.client.probe import ProbeArgs, run_discover, run_probe

    if args.discover is not None:
        return run_discover(args.discover, as_json=args.json)
    if args.host is None:
        print("punktfunk probe: name a HOST, or browse the LAN with --discover", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return run_probe(
        ProbeArgs(
            host=args.host,
            port=args.port or loaded.config.native_port,
            seconds=args.seconds,
            mode=args.mode,
            # --pin is the pair_pin knob's flag: for probe, the PIN to pair with.
            pin=loaded.config.pair_pin or None,
            loss=args.loss,
            codec=args.video_codec,
            suite=args.suite,
            bitrate_kbps=args.bitrate,
            client_dir=args.client_dir,
            as_json=args.json,
            seed=args.seed,
            launch=args.launch,
        )
    )


def _codec_list(text: str) -> str:
    codecs = [c.strip() for c in text.split(",")]
    if not all(c in ("h264", "hevc", "av1") for c in codecs):
        raise argparse.ArgumentTypeError(f"{text!r}: codecs are h264, hevc, av1")
    return ",".join(codecs)


def _add_client_arguments(
    cmd: argparse.ArgumentParser, bitrate_kbps: int, host_optional: bool = False
) -> None:
    """What every native client (probe, connect) asks of a host."""
    cmd.add_argument("host", metavar="HOST", nargs="?" if host_optional else None,
                     help="the host's address")  # fmt: skip
    cmd.add_argument("--port", type=int, default=0, help="its UDP port (default: native_port)")
    cmd.add_argument("--mode", default="1280x720@60", help="WIDTHxHEIGHT@HZ to ask for")
    cmd.add_argument("--video-codec", default="h264", type=_codec_list,
                     help="h264|hevc|av1, or a comma list, preferred first")  # fmt: skip
    cmd.add_argument("--bitrate", type=int, default=bitrate_kbps, help="kbit/s to ask for")
    cmd.add_argument("--suite", default="aes128gcm", choices=("aes128gcm", "chacha20"),
                     help="media AEAD to ask for first")  # fmt: skip
    cmd.add_argument("--client-dir", type=Path, help="client identity and pinned hosts")


def _add_probe_arguments(cmd: argparse.ArgumentParser) -> None:
    _add_client_arguments(cmd, bitrate_kbps=8000, host_optional=True)
    cmd.add_argument(
        "--discover",
        type=float,
        nargs="?",
        const=3.0,
        metavar="SECONDS",
        help="instead of streaming, list the punktfunk hosts that answer on the LAN "
        "(mDNS _punktfunk._udp) within SECONDS (default 3); exit 1 if none",
    )
    cmd.add_argument("--seconds", type=float, default=5.0, help="how long to stream")
    cmd.add_argument("--loss", type=float, default=0.0, help="drop this %% of media on receipt")
    cmd.add_argument("--seed", type=int, help="seed for --loss (repeatable runs)")
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.add_argument("--launch", default="", help="the app to stream (an embedded app's title)")


def _connect(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .viewer.connect import ConnectArgs, run_connect

    return run_connect(
        ConnectArgs(
            host=args.host,
            port=args.port or loaded.config.native_port,
            mode=args.mode,
            # --pin is the pair_pin knob's flag: for connect, the PIN to pair with.
            pin=loaded.config.pair_pin or None,
            fullscreen=args.fullscreen,
            seconds=args.seconds,
            screenshot=args.screenshot,
            codec=args.video_codec,
            suite=args.suite,
            bitrate_kbps=args.bitrate,
            client_dir=args.client_dir,
        )
    )


def _add_connect_arguments(cmd: argparse.ArgumentParser) -> None:
    _add_client_arguments(cmd, bitrate_kbps=20_000)
    cmd.add_argument("--fullscreen", action="store_true", help="start fullscreen (F11 toggles)")
    cmd.add_argument("--seconds", type=float, help="quit after this many seconds of streaming")
    cmd.add_argument("--screenshot", type=Path, metavar="PNG",
                     help="save the window's last picture to this PNG on quitting")  # fmt: skip


def _token(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .console.cli import token_command

    return token_command(args, loaded)


def _demo(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .demo import run_demo

    return run_demo(loaded.config, args.mode, args.seconds)


def _vdisplay(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    from .vdisplay.cli import run

    return run(args, loaded)


# (name, help, description, handler)
COMMANDS: tuple[tuple[str, str, str, Handler], ...] = (
    (
        "serve",
        "run the streaming host",
        "Run the host: every client that connects gets its own virtual monitor at its exact "
        "mode, captured, encoded and streamed over punktfunk/2 (and GameStream with "
        "--gamestream).",
        _serve,
    ),
    (
        "demo",
        "host on the built-in pattern display plus a loopback client, with live stats",
        "Start a host on the built-in pattern display and a loopback client, and print live "
        "latency/fps/bitrate statistics until Ctrl-C.",
        _demo,
    ),
    (
        "vdisplay",
        "run the virtual display driver process",
        "Run the virtual display driver: a separate process that creates one virtual monitor "
        "per client (Xorg dummy, Xvfb or the built-in pattern) and publishes its frames into a "
        "shared-memory ring. The host starts it when it is not running.",
        _vdisplay,
    ),
    (
        "pair",
        "enter a client's pairing PIN into the running host",
        "Pair a client: pass the PIN the client shows; it is handed to the running host over "
        "its local admin socket. On a host with a preset PIN (--pin) it arms a new kept PIN, "
        "as after a failed attempt disarmed the preset one.",
        _pair,
    ),
    (
        "probe",
        "stream from a host over the native protocol headlessly and report what arrived",
        "Connect to a punktfunk host over punktfunk/2 (pairing with --pin on first contact), "
        "stream for --seconds, decode every frame and print fps, decoded fraction, FEC "
        "recoveries and latencies. Exit 1 if the stream failed.",
        _probe,
    ),
    (
        "status",
        "show the running host's sessions and health as JSON",
        "Print the running host's live sessions (both protocols), its listeners' counters and "
        "its health: uncaught exceptions, service-thread crashes and restarts.",
        _admin("status"),
    ),
    (
        "clients",
        "list the native clients paired with the running host",
        "Print the running host's paired punktfunk/2 clients as JSON (fingerprint, name).",
        _admin("clients"),
    ),
    (
        "revoke",
        "forget a paired native client",
        "Remove a paired punktfunk/2 client by its certificate fingerprint (or a unique "
        "prefix of at least 8 hex digits); its running session ends.",
        _admin("revoke"),
    ),
    (
        "connect",
        "stream from a host over the native protocol and show it",
        "Connect to a punktfunk host over punktfunk/2 (pairing with --pin on first contact) "
        "and show its display in a window (needs pygame-ce: pip install 'punktfunk[viewer]'). "
        "Keyboard, mouse and game controllers go to the host. F11 or Alt+Enter: fullscreen; "
        "F10: stats overlay; Ctrl+Alt+Shift+Q or closing the window: end the session.",
        _connect,
    ),
    (
        "token",
        "create a bearer token for the management API",
        "Create a bearer token for scripts using the console's management API: "
        "`token create --scope read|admin`; printed once, only its hash is kept.",
        _token,
    ),
    (
        "doctor",
        "check this machine: settings, driver ABI, installed display/audio tools, native FEC",
        "Check that the settings parse, that the host<->driver ABI is intact, and which "
        "display, audio and build tools this machine has. Exit 1 if something required fails.",
        _doctor,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = argparse.ArgumentParser(
        prog="punktfunk",
        description="Low-latency game and desktop streaming host: a virtual monitor per client.",
    )
    parser.add_argument("--version", action="version", version=f"punktfunk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, short, description, handler in COMMANDS:
        cmd = sub.add_parser(name, help=short, description=description, parents=[common])
        cmd.set_defaults(handler=handler)
        if name == "pair":
            cmd.add_argument("pin", metavar="PIN", help="the 4-8 digit PIN the client shows")
        if name == "probe":
            _add_probe_arguments(cmd)
        if name == "connect":
            _add_connect_arguments(cmd)
        if name == "demo":
            cmd.add_argument("--mode", default="1280x720@60", help="WIDTHxHEIGHT@HZ to stream")
            cmd.add_argument("--seconds", type=float, default=0, help="stop after this long")
        if name == "doctor":
            cmd.add_argument(
                "--clean",
                action="store_true",
                help="remove what a killed host or driver left in /dev/shm and the state dir",
            )
        if name == "token":
            from .console.cli import add_token_arguments

            add_token_arguments(cmd)
        if name == "revoke":
            cmd.add_argument("fingerprint", metavar="FINGERPRINT", help="hex SHA-256 or prefix")
        if name == "vdisplay":
            from .vdisplay.cli import add_arguments

            add_arguments(cmd)
    config = sub.add_parser(
        "config",
        help="show the effective settings and where each came from",
        description="Inspect the settings registry.",
    )
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser(
        "show",
        help="print every setting's effective value and its source",
        description="Print every knob with its effective value and where it came from "
        "(flag, env, host.env file:line, or default).",
        parents=[common],
    )
    show.set_defaults(handler=_config_show)
    from .service.commands import add_arguments as add_service_arguments

    add_service_arguments(
        sub.add_parser(
            "service",
            help="run the host supervised, or install it as a systemd service",
            description="Run the host under a supervisor (restarts, whole-tree stop, sd_notify) "
            "and install, remove or inspect its systemd unit. Actions live in "
            "punktfunk.service.commands.SUBCOMMANDS.",
        ),
        common,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        loaded = load_config(flags=_flags(args), config_path=args.config)
    except ConfigError as exc:
        print(f"punktfunk: configuration error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    config = loaded.config
    long_running = args.command in LONG_RUNNING and getattr(args, "long_running", True)
    setup_logging(config.log_level, config.state_dir if long_running else None)
    log = logging.getLogger("punktfunk.cli")
    for name in loaded.ignored_env:
        event(
            log, "config.ignored_env", logging.WARNING, key=name, reason="not a punktfunk setting"
        )
    return int(args.handler(args, loaded))


if __name__ == "__main__":
    sys.exit(main())
