"""`punktfunk probe HOST`: stream from a native host headlessly and print what arrived.

The client's identity (a P-256 certificate) and the host fingerprints it pinned live in a
config dir (`--client-dir`, default `$XDG_CONFIG_HOME/punktfunk/client`): the first contact
with `--pin` pairs, later runs reuse the pin. The report is one JSON object (`--json`) or a
short summary; the exit status is 0 only when frames were decoded and the session ended
cleanly.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ...mdns import discover
from ..wire.hello import ClientHello
from ..wire.messages import Mode
from ..wire.quic import ClientIdentity
from ..wire.registry import DEFAULT_PORT, Codec, MediaSuite
from .dial import ProbeError, pair
from .receiver import NativeReceiver

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_CODECS = {"h264": Codec.H264, "hevc": Codec.HEVC, "av1": Codec.AV1}
# Most wanted first; the host grants the first (crypto.rs: ChaCha20 for peers without AES-NI).
_SUITES = {
    "aes128gcm": (MediaSuite.AES_128_GCM, MediaSuite.CHACHA20_POLY1305),
    "chacha20": (MediaSuite.CHACHA20_POLY1305, MediaSuite.AES_128_GCM),
}


def default_client_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "punktfunk" / "client"


class ClientStore:
    """The client's certificate and the host fingerprints it pinned (`hosts.json`)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir = directory
        cert, key = directory / "client.crt", directory / "client.key"
        if cert.exists() and key.exists():
            self.identity = ClientIdentity.from_pem(cert.read_bytes(), key.read_bytes())
        else:
            self.identity = ClientIdentity.generate()
            cert_pem, key_pem = self.identity.to_pem()
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem)
            cert.write_bytes(cert_pem)
        self._hosts_path = directory / "hosts.json"

    def hosts(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._hosts_path.read_text()))
        except (OSError, ValueError):
            return {}

    def host_fp(self, host: str, port: int) -> bytes | None:
        fp = self.hosts().get(f"{host}:{port}")
        return bytes.fromhex(fp) if fp else None

    def pin_host(self, host: str, port: int, fp: bytes) -> None:
        hosts = self.hosts()
        hosts[f"{host}:{port}"] = fp.hex()
        self._hosts_path.write_text(json.dumps(hosts, indent=1))


def pinned_or_paired(
    store: ClientStore, host: str, port: int, pin: str | None, name: str
) -> bytes | None:
    """The host fingerprint pinned for `host:port`; on first contact with a PIN, pair first
    and pin it (ProbeError if the ceremony fails). None: not paired and no PIN."""
    host_fp = store.host_fp(host, port)
    if host_fp is None and pin:
        host_fp = pair((host, port), store.identity, pin, name)
        store.pin_host(host, port, host_fp)
    return host_fp


def client_hello(
    mode: Mode,
    name: str,
    codec: str = "h264",
    suite: str = "aes128gcm",
    bitrate_kbps: int = 8000,
) -> ClientHello:
    """What our clients (probe, connect, demo) ask for: `codec` (or a comma list, preferred
    first, the rest what the host may fall back to), stereo audio, the suites in `suite`'s
    order of preference."""
    codecs = [c.strip() for c in codec.split(",")]
    return ClientHello(
        mode=mode,
        bitrate_kbps=bitrate_kbps,
        name=name,
        video_codecs=int(functools.reduce(operator.or_, (_CODECS[c] for c in codecs))),
        preferred_codec=int(_CODECS[codecs[0]]),
        suites=_SUITES[suite],
        audio_channels=2,
    )


def parse_mode(text: str) -> Mode:
    match = re.fullmatch(r"(\d+)x(\d+)(?:[@x](\d+))?", text.strip())
    if match is None:
        raise ValueError(f"mode {text!r} is not WIDTHxHEIGHT@HZ (e.g. 1280x720@60)")
    width, height, hz = match.groups()
    return Mode(int(width), int(height), int(hz or 60))


@dataclass(frozen=True)
class ProbeArgs:
    host: str
    port: int = DEFAULT_PORT
    seconds: float = 5.0
    mode: str = "1280x720@60"
    pin: str | None = None
    loss: float = 0.0
    codec: str = "h264"
    suite: str = "aes128gcm"
    bitrate_kbps: int = 8000
    name: str = "punktfunk-probe"
    client_dir: Path | None = None
    as_json: bool = False
    seed: int | None = None
    launch: str = ""  # the app to stream; "" is the desktop


def run_probe(args: ProbeArgs) -> int:
    try:
        mode = parse_mode(args.mode)
    except ValueError as exc:
        print(f"punktfunk probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.loss < 100:
        print("punktfunk probe: --loss is a percentage in 0..99", file=sys.stderr)
        return EXIT_USAGE
    store = ClientStore(args.client_dir or default_client_dir())
    addr = (args.host, args.port)
    result: dict[str, object]
    try:
        host_fp = pinned_or_paired(store, args.host, args.port, args.pin, args.name)
        hello = client_hello(mode, args.name, args.codec, args.suite, args.bitrate_kbps)
        if args.launch:
            hello = replace(hello, launch=args.launch)
        receiver = NativeReceiver(
            addr, store.identity, host_fp, hello, loss_percent=args.loss, seed=args.seed
        )
        receiver.run(args.seconds)
        result = receiver.report(args.seconds)
        result["host_fingerprint"] = host_fp.hex() if host_fp else None
    except ProbeError as exc:
        result = {"ok": False, "error": str(exc)}
    if args.as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    if not result.get("ok"):
        reason = result.get("error") or result.get("closed") or "no frame decoded"
        print(f"punktfunk probe: the stream failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_discover(seconds: float, as_json: bool = False) -> int:
    """`probe --discover`: the punktfunk hosts that answer on the LAN within `seconds`; exit 1
    when none did. Fingerprints are as advertised (unauthenticated): a dial still pins them."""
    if not 0 < seconds <= 60:
        print("punktfunk probe: --discover takes 0..60 seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        hosts = discover(seconds)
    except OSError as exc:
        print(f"punktfunk probe: cannot browse the LAN: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps({"ok": bool(hosts), "hosts": [h.as_dict() for h in hosts]}))
    else:
        for h in hosts:
            wire = ",".join(map(str, h.wire)) or "-"
            print(
                f"{h.name}  {h.addr}:{h.port}  fingerprint {h.fingerprint or '-'}  "
                f"pairing {h.pair or '-'}  wire {wire}"
            )
    if not hosts:
        print(f"punktfunk probe: no punktfunk host answered within {seconds:g} s", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
