"""The one settings registry: every knob is declared once, as a field of `HostConfig`.

That declaration (type, default, allowed values, help) drives the CLI flags, the `PUNKTFUNK_*`
environment variables, the `host.env` file and `punktfunk config show`. Precedence is
flag > env > host.env > default. The result is parsed once into a frozen `HostConfig`; no other
module reads the environment for settings.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apps import parse_apps
from .session.limit import SETTING_MAX

ENV_PREFIX = "PUNKTFUNK_"
CONFIG_ENV = "PUNKTFUNK_CONFIG"
SYSTEM_CONFIG = Path("/etc/punktfunk/host.env")


class ConfigError(Exception):
    """A setting could not be used; the message names key, value, source and what is allowed."""


@dataclass(frozen=True)
class Knob:
    """One declared setting. `parse` turns text into the typed value or raises ValueError."""

    name: str
    parse: Callable[[str], Any]
    default_text: str
    allowed: str
    help: str
    is_bool: bool = False
    flag_name: str = ""  # a shorter flag than the one derived from the name

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return self.flag_name or "--" + self.name.replace("_", "-")


# --- value parsers ----------------------------------------------------------------------------


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"not one of {'|'.join(choices)}")
        return value

    return parse


def _integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError("not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"out of range {lo}..{hi}")
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a boolean")


DISPLAY_BACKENDS = ("auto", "xorg-dummy", "xvfb", "pattern", "wlroots", "gamescope")
_X_DISPLAY = re.compile(r"^[A-Za-z0-9.\-]*:\d+(\.\d+)?$")
_WAYLAND_ATTACH = re.compile(
    r"^attach:(wayland(:[A-Za-z0-9._\-]+)?|portal)$"
)  # the Wayland session the host runs in: an output by name, or what its portal grants


def _display(text: str) -> str:
    value = text.strip()
    if value.lower() in DISPLAY_BACKENDS:
        return value.lower()
    if value.startswith("attach:") and _X_DISPLAY.match(value[len("attach:") :]):
        return value
    if _WAYLAND_ATTACH.match(value):
        return value
    raise ValueError("not a display backend")


_ADAPTER = re.compile(r"^/dev/dri/(renderD|card)\d+$")


def _adapter(text: str) -> str:
    value = text.strip()
    if value == "auto" or _ADAPTER.match(value):
        return value
    raise ValueError("not a render adapter")


_PIN = re.compile(r"^(\d{4,8})?$")


def _pin(text: str) -> str:
    value = text.strip()
    if not _PIN.match(value):
        raise ValueError("not 4-8 digits")
    return value


def _bind(text: str) -> str:
    value = text.strip()
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError("not an IPv4 address") from None
    return value


def _networks(text: str) -> str:
    value = text.strip()
    for part in filter(None, (p.strip() for p in value.split(","))):
        if part != "loopback":
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not a network") from None
    return value


def _auto_or(parse: Callable[[str], int]) -> Callable[[str], int | None]:
    def parse_or_auto(text: str) -> int | None:
        return None if text.strip() == "auto" else parse(text)

    return parse_or_auto


def _optional_path(text: str) -> Path | None:
    return _directory(text) if text.strip() else None


def _apps(text: str) -> str:
    parse_apps(text)
    return text.strip()


_HOST_NAME = re.compile(r"[A-Za-z0-9._ -]{0,63}")


def _host_name(text: str) -> str:
    value = text.strip()
    if not _HOST_NAME.fullmatch(value):
        raise ValueError("letters, digits, spaces, '.', '_' and '-', at most 63")
    return value


def host_name(config: HostConfig) -> str:
    """The name clients list this host by."""
    return config.host_name or socket.gethostname()


def _directory(text: str) -> Path:
    value = text.strip()
    if not value:
        raise ValueError("empty path")
    return Path(value).expanduser()


def default_state_dir() -> Path:
    """Root keeps state system-wide; a user keeps it under XDG_STATE_HOME."""
    if os.geteuid() == 0:
        return Path("/var/lib/punktfunk")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "punktfunk"


def default_config_path() -> Path:
    if os.geteuid() == 0:
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "punktfunk" / "host.env"


def _knob(
    parse: Callable[[str], Any],
    default: str,
    allowed: str,
    help: str,
    *,
    is_bool: bool = False,
    flag: str = "",
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a HostConfig field together with its knob (the name is filled in from the field).

    `default_factory` is for defaults that depend on who runs the host (e.g. the state dir).
    """
    meta = {"knob": Knob("", parse, default, allowed, help, is_bool, flag)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=parse(default), metadata=meta)


@dataclass(frozen=True)
class HostConfig:
    """Every host setting, typed and validated. Built once by `load_config`."""

    display: str = _knob(
        _display,
        "auto",
        "auto|xorg-dummy|xvfb|pattern|wlroots|gamescope|attach:<X display>"
        "|attach:wayland[:<output>]"
        "|attach:portal",
        "virtual display backend: auto picks sway on a GPU render node where one starts, else "
        "xorg-dummy, then xvfb, then the built-in pattern; "
        "wlroots gives each client an output of a private headless sway (Wayland); "
        "gamescope a nested gamescope of its own (needs a GPU's Vulkan; apps run on its "
        "Xwayland); "
        "attach:<X display> streams an existing X display; attach:portal the Wayland desktop the "
        "host runs in through its ScreenCast portal (asks once); attach:wayland the same, or "
        "wlr-screencopy where no portal answers; attach:wayland:<output> that output directly",
    )
    capture: str = _knob(
        _choice("auto", "idd-push", "x11"),
        "auto",
        "auto|idd-push|x11",
        "capture backend: idd-push reads the driver's frame ring (falls back to x11 on a "
        "silent ring); x11 captures the X display directly",
    )
    encoder: str = _knob(
        _choice("auto", "nvenc", "vaapi", "qsv", "amf", "software"),
        "auto",
        "auto|nvenc|vaapi|qsv|amf|software",
        "encoder backend; auto takes the best one the probe proved working",
    )
    codec: str = _knob(
        _choice("auto", "h264", "hevc", "av1"),
        "auto",
        "auto|h264|hevc|av1",
        "restrict streams to one codec; auto offers every codec the encoder probe proved",
    )
    codec_fit: bool = _knob(
        _boolean,
        "true",
        "true|false",
        "offer and pick only codecs the encoder measurably sustains at the client's mode and "
        "rate (else HEVC/AV1 fall back to H.264); false offers every codec the probe proved",
        is_bool=True,
    )
    hdr: str = _knob(
        _choice("auto", "off"),
        "auto",
        "auto|off",
        "auto: stream 10-bit HDR when the client asks and the encoder can; off: always 8-bit SDR",
    )
    render_adapter: str = _knob(
        _adapter,
        "auto",
        "auto|/dev/dri/renderD<N>|/dev/dri/card<N>",
        "GPU used for rendering and encoding on the virtual displays",
    )
    bitrate_min_kbps: int = _knob(
        _integer(500, 1_000_000), "1000", "500..1000000", "lowest video bitrate a client gets"
    )
    bitrate_max_kbps: int = _knob(
        _integer(500, 1_000_000),
        "150000",
        "500..1000000",
        "highest video bitrate a client may ask for (further clamped to the encoder's ceiling)",
    )
    gamestream: bool = _knob(
        _boolean,
        "false",
        "true|false",
        "also serve GameStream (Moonlight) clients; trusted LANs only",
        is_bool=True,
    )
    mdns: bool = _knob(
        _boolean,
        "true",
        "true|false",
        "announce the host on the LAN so clients find it (mDNS _punktfunk._udp, and "
        "_nvstream._tcp with --gamestream)",
        is_bool=True,
    )
    gamestream_port: int = _knob(
        _integer(1029, 65535 - 21),
        "47989",
        "1029..65514",
        "GameStream base port (HTTP); HTTPS, RTSP, video, control and audio follow from it",
    )
    host_name: str = _knob(
        _host_name,
        "",
        "empty or up to 63 letters, digits, spaces, '.', '_' and '-'",
        "the name clients list this host by (Moonlight's host list, mDNS); empty: the "
        "machine's hostname",
    )
    bind_address: str = _knob(
        _bind,
        "0.0.0.0",
        "an IPv4 address",
        "address every listener binds to (0.0.0.0: all interfaces)",
    )
    pair_pin: str = _knob(
        _pin,
        "",
        "empty or 4-8 digits",
        "accept GameStream pairing with this PIN without asking (automation); one failed "
        "attempt disarms it until `punktfunk pair <PIN>` re-arms one; empty: enter each PIN "
        "with `punktfunk pair <PIN>`",
        flag="--pin",
    )
    pair_cooldown_s: int = _knob(
        _integer(1, 3600),
        "60",
        "1..3600",
        "seconds pairing stays locked after 3 wrong PINs (both protocols); doubles with each "
        "lockout in a row, up to an hour",
    )
    apps: str = _knob(
        _apps,
        "",
        "Title=command; Title2=command ...",
        "extra apps besides Desktop, each a command run on the session's display (more: apps_file)",
    )
    apps_file: Path | None = _knob(  # noqa: RUF009 - a Path default is immutable enough
        _optional_path,
        "",
        "empty or a file path",
        "apps with a working dir, prep/undo and detached commands (Sunshine's apps.json "
        "format; the console edits it); empty: apps.json beside host.env",
    )
    native_port: int = _knob(
        _integer(1, 65535), "9777", "1..65535", "UDP port of the native punktfunk/2 protocol"
    )
    pipeline_depth: int = _knob(
        _integer(1, 2),
        "2",
        "1..2",
        "2 overlaps colour conversion with encoding (one frame more in flight); 1 is serial",
    )
    monitor_linger_ms: int = _knob(
        _integer(0, 600_000),
        "3000",
        "0..600000",
        "how long a client's virtual monitor outlives its session, so a reconnect keeps it",
    )
    max_monitors: int = _knob(
        _integer(1, 64),
        "8",
        "1..64",
        "most virtual monitors (and so concurrent sessions) the driver runs at once",
    )
    watchdog_timeout_ms: int = _knob(
        _integer(500, 600_000),
        "5000",
        "500..600000",
        "the driver removes every monitor when the host has not pinged it for this long",
    )
    setup_stage_timeout_ms: int = _knob(
        _integer(1000, 120_000),
        "10000",
        "1000..120000",
        "a GameStream launch that reaches no new setup stage (RTSP request, control connect, "
        "first video ping) for this long is ended and its monitor released",
    )
    test_video_loss_percent: int = _knob(
        _integer(0, 50),
        "0",
        "0..50",
        "testing only: drop this share of GameStream video shards at random before they are "
        "sent, to prove FEC and loss recovery (0 in production)",
    )
    test_send_limit: bool = _knob(
        _boolean,
        "false",
        "true|false",
        "testing only: a token-bucket rate limit on every session's video send path, set while "
        "running with the admin command `testlimit KBPS|off`, to prove adaptive bitrate",
        is_bool=True,
    )
    console: bool = _knob(
        _boolean,
        "true",
        "true|false",
        "serve the web console, management API (/api, OpenAPI at /api/openapi.json) and "
        "Prometheus metrics (/metrics) over HTTPS",
        is_bool=True,
    )
    console_port: int = _knob(
        _integer(1, 65535), "47990", "1..65535", "TCP port of the console (HTTPS)"
    )
    console_bind: str = _knob(
        _bind,
        "127.0.0.1",
        "an IPv4 address",
        "address the console listens on; 127.0.0.1 keeps it on this machine",
    )
    console_allow: str = _knob(
        _networks,
        "loopback",
        "loopback or a comma list of networks",
        "source addresses the console answers at all (before any login); to reach it from the "
        "LAN set console_bind to an address there and add the LAN here",
    )
    max_sessions: int | None = _knob(
        _auto_or(_integer(1, SETTING_MAX)),
        "auto",
        f"auto|1..{SETTING_MAX}",
        "most streaming sessions at once (both protocols); a client over it is refused with "
        "the reason; auto: what the cores and encoder hold (docs/scaling.md)",
    )
    session_workers: str = _knob(
        _choice("auto", "on", "off"),
        "auto",
        "auto|on|off",
        "run each session's media path (capture, encode, FEC, send; punktfunk/2 audio too) in "
        "its own worker process, either protocol, so sessions scale with cores; auto: on with "
        "8 or more cores (one process wins below that, docs/scaling.md)",
    )
    log_level: str = _knob(
        _choice("debug", "info", "warning", "error"),
        "info",
        "debug|info|warning|error",
        "log verbosity (stderr and <state_dir>/logs/punktfunk.log)",
    )
    state_dir: Path = _knob(  # noqa: RUF009 - returns a field() with a default_factory
        _directory,
        "",
        "a directory path",
        "where identity, paired clients, sockets and logs live "
        "(default: /var/lib/punktfunk for root, $XDG_STATE_HOME/punktfunk otherwise)",
        default_factory=default_state_dir,
    )

    def gamestream_ports(self) -> dict[str, int]:
        """The GameStream port map, derived from the base port as GameStream hosts do."""
        base = self.gamestream_port
        return {
            "http": base,
            "https": base - 5,
            "rtsp": base + 21,
            "video": base + 9,
            "control": base + 10,
            "audio": base + 11,
        }


def _collect_knobs() -> dict[str, Knob]:
    knobs: dict[str, Knob] = {}
    for f in dataclasses.fields(HostConfig):
        knobs[f.name] = dataclasses.replace(f.metadata["knob"], name=f.name)
    return knobs


KNOBS: Mapping[str, Knob] = _collect_knobs()
_BY_ENV: Mapping[str, Knob] = {k.env: k for k in KNOBS.values()}


@dataclass(frozen=True)
class Origin:
    """Where an effective value came from: default, host.env (with line), env or flag."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}".strip()


@dataclass(frozen=True)
class LoadedConfig:
    config: HostConfig
    origins: Mapping[str, Origin]
    config_file: Path
    config_file_found: bool
    ignored_env: tuple[str, ...] = ()

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """(knob, effective value, origin) for every knob, in declaration order."""
        for name in KNOBS:
            yield name, format_value(getattr(self.config, name)), str(self.origins[name])


def format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bad(knob: Knob, text: str, where: str, why: str) -> ConfigError:
    return ConfigError(
        f"{where}: bad value {text!r} for {knob.name} ({why}); allowed: {knob.allowed}"
    )


def _parse(knob: Knob, text: str, where: str) -> Any:
    try:
        return knob.parse(text)
    except ValueError as exc:
        raise _bad(knob, text, where, str(exc)) from None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def read_host_env(path: Path) -> dict[str, tuple[str, int]]:
    """Parse a host.env file: `PUNKTFUNK_KEY=value` lines, `#` comments, optional `export `.

    Returns {knob name: (raw value, line number)}. Unknown keys and malformed lines are errors
    that name the file and line, so a typo never silently falls back to a default.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    values: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        where = f"{path}:{number}"
        if not sep:
            raise ConfigError(f"{where}: expected KEY=VALUE, got {raw.strip()!r}")
        knob = _BY_ENV.get(key)
        if knob is None:
            raise ConfigError(
                f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(_BY_ENV))}"
            )
        values[knob.name] = (_unquote(value.strip()), number)
    return values


def load_config(
    flags: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> LoadedConfig:
    """Resolve every knob once: flag > env > host.env > default.

    `flags` maps knob names to the raw text given on the command line; `environ` defaults to
    os.environ; `config_path` (from --config) beats $PUNKTFUNK_CONFIG beats the default path.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    explicit = config_path is not None or CONFIG_ENV in environ
    if config_path is None:
        config_path = Path(environ[CONFIG_ENV]) if CONFIG_ENV in environ else None
    path = (config_path or default_config_path()).expanduser()
    found = path.is_file()
    if explicit and not found:
        raise ConfigError(f"config file {path} does not exist (given by --config/{CONFIG_ENV})")
    from_file = read_host_env(path) if found else {}

    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for name, knob in KNOBS.items():
        if name in flags:
            values[name] = _parse(knob, flags[name], f"flag {knob.flag}")
            origins[name] = Origin("flag", knob.flag)
        elif knob.env in environ:
            values[name] = _parse(knob, environ[knob.env], f"env {knob.env}")
            origins[name] = Origin("env", knob.env)
        elif name in from_file:
            text, line = from_file[name]
            values[name] = _parse(knob, text, f"{path}:{line}")
            origins[name] = Origin("host.env", f"{path}:{line}")
        else:
            origins[name] = Origin("default")
    if values.get("apps_file") is None:
        values["apps_file"] = path.parent / "apps.json"  # beside host.env, wherever that is
    config = HostConfig(**values)
    _check_consistency(config, origins)
    known = set(_BY_ENV) | {CONFIG_ENV}
    ignored = tuple(sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known))
    return LoadedConfig(config, origins, path, found, ignored)


def _check_consistency(config: HostConfig, origins: Mapping[str, Origin]) -> None:
    if config.bitrate_min_kbps > config.bitrate_max_kbps:
        raise ConfigError(
            f"bitrate_min_kbps={config.bitrate_min_kbps} ({origins['bitrate_min_kbps']}) is above "
            f"bitrate_max_kbps={config.bitrate_max_kbps} ({origins['bitrate_max_kbps']}); "
            "allowed: bitrate_min_kbps <= bitrate_max_kbps"
        )
