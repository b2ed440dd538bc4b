"""LAN discovery over mDNS: what `punktfunk serve` announces and `probe --discover` browses.

Both adverts share one responder (`Advert`): the native `_punktfunk._udp` record, TXT for TXT as
the Rust host publishes it (`crates/host/punktfunk-host/src/hostsys/discovery.rs`, docs/wire.md
"Discovery"), and GameStream's `_nvstream._tcp` (gamestream/mdns.py). Every value in an advert
is unauthenticated: a client still pins the fingerprint on connect, so a forged advert can only
point at a host that then fails the pin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ifaddr
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from .log import event

_log = logging.getLogger("punktfunk.mdns")

NATIVE_SERVICE = "_punktfunk._udp.local."
# The service id, not the protocol: Rust clients drop an advert with another value, so it stays
# `punktfunk/1`; `wire` names the protocols the host answers.
NATIVE_PROTO = "punktfunk/1"
NATIVE_WIRE = "2"
# How often a live advert on all interfaces re-checks the routed address (as the Rust host does):
# a host that came up before its network would otherwise announce 127.0.0.1 forever.
IP_RECHECK_S = 10.0
# os-release `ID_LIKE` ancestors kept as the chain's middle token (osinfo.rs FAMILIES).
_OS_FAMILIES = ("debian", "ubuntu", "fedora", "rhel", "arch", "opensuse", "suse", "gentoo",
                "alpine", "nixos")  # fmt: skip
_MAX_MACS = 4
# A browse keeps at most this many names: a LAN peer flooding adverts cannot grow it further.
_MAX_ADVERTS = 256

Builder = Callable[[str], ServiceInfo]


def dns_label(name: str) -> str:
    """The A-record target label for a display name (discovery.rs `dns_label`): machine names
    pass through, anything outside [A-Za-z0-9.-] becomes '-', at most 63 bytes."""
    out = "".join(c if (c.isascii() and c.isalnum()) or c in "-." else "-" for c in name.strip())
    out = out[:63].strip("-.")
    return out or "punktfunk-host"


def _os_token(raw: str) -> str:
    return "".join(c for c in raw.lower() if c.isascii() and (c.isalnum() or c in "._-"))[:32]


def os_chain(os_release: str) -> str:
    """`linux[/<family>][/<id>]` from an os-release file's text (osinfo.rs `os_info`)."""
    values: dict[str, str] = {}
    for line in os_release.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    leaf = _os_token(values.get("ID", ""))
    family = next(
        (
            t
            for t in map(_os_token, values.get("ID_LIKE", "").split())
            if t in _OS_FAMILIES and t != leaf
        ),
        "",
    )
    return "/".join(["linux", *(t for t in (family, leaf) if t)])


def host_os_chain() -> str:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            return os_chain(Path(path).read_text(errors="replace"))
        except OSError:
            continue
    return "linux"


def primary_ipv4() -> str:
    """The address clients reach this host on: the source of the default route (a UDP connect
    sends nothing), or 127.0.0.1 while the machine has none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))
            ip = str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    return "127.0.0.1" if ipaddress.IPv4Address(ip).is_unspecified else ip


def wake_macs(primary_ip: str) -> list[str]:
    """MACs a client can Wake-on-LAN this host by (wol.rs `wake_macs`): the NIC holding
    `primary_ip` first, then the other non-loopback NICs with an address; at most four."""
    adapters = ifaddr.get_adapters()
    names = [a.name for a in adapters if any(i.ip == primary_ip for i in a.ips)]
    for adapter in adapters:
        loopback = any(isinstance(i.ip, str) and i.ip.startswith("127.") for i in adapter.ips)
        if adapter.ips and not loopback and adapter.name not in names:
            names.append(adapter.name)
    macs: list[str] = []
    for name in names:
        try:
            mac = Path("/sys/class/net", name, "address").read_text().strip().lower()
        except OSError:
            continue
        if len(mac) == 17 and mac != "00:00:00:00:00:00" and mac not in macs:
            macs.append(mac)
    return macs[:_MAX_MACS]


def native_txt(
    fingerprint: str,
    unique_id: str,
    addr: str,
    *,
    os: str = "",
    macs: Iterable[str] = (),
    require_pairing: bool = True,
    mgmt_port: int | None = None,
) -> dict[str, str]:
    """The `_punktfunk._udp` TXT keys and values, as discovery.rs `advertise_native` builds them."""
    txt = {
        "proto": NATIVE_PROTO,
        "fp": fingerprint.lower(),
        "pair": "required" if require_pairing else "optional",
        "id": unique_id,
        "wire": NATIVE_WIRE,
    }
    if mgmt_port is not None:  # we serve no management API: never set today
        txt["mgmt"] = str(mgmt_port)
    if os:
        txt["os"] = os
    if mac_list := list(macs):
        txt["mac"] = ",".join(mac_list)
    txt["addr"] = addr
    return txt


def native_record(
    hostname: str, port: int, fingerprint: str, unique_id: str, os: str = ""
) -> Builder:
    """The native advert for whichever address the host has at the time (re-built on a change)."""

    def build(ip: str) -> ServiceInfo:
        macs = [] if ipaddress.IPv4Address(ip).is_loopback else wake_macs(ip)
        txt = native_txt(fingerprint, unique_id, ip, os=os, macs=macs)
        return record(NATIVE_SERVICE, hostname, ip, port, txt)

    return build


def record(service: str, hostname: str, ip: str, port: int, txt: Mapping[str, str]) -> ServiceInfo:
    return ServiceInfo(
        service,
        f"{hostname}.{service}",
        port=port,
        addresses=[socket.inet_aton(ip)],
        properties=dict(txt),
        server=f"{dns_label(hostname)}.local.",
    )


async def _register(zc: Zeroconf, infos: list[ServiceInfo]) -> None:
    announcing = await asyncio.gather(
        *(zc.async_register_service(info, allow_name_change=True) for info in infos)
    )
    await asyncio.gather(*announcing)


class Advert:
    """One mDNS responder announcing the host's records.

    Bound to one address it answers on that interface only (a loopback bind is seen by this
    machine alone, which nothing on the LAN could reach anyway); bound to 0.0.0.0 it answers on
    every interface and re-announces when the routed address changes. Probing and announcing
    take ~2 s, so they run on a thread and never hold up the host's start.
    """

    def __init__(self, bind: str, builders: Iterable[Builder]) -> None:
        self._bind = bind
        self._builders = list(builders)
        self._zc: Zeroconf | None = None
        self._infos: list[ServiceInfo] = []
        self._registering: Future[None] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mdns-advert", daemon=True)

    def _address(self) -> str:
        return primary_ipv4() if self._bind == "0.0.0.0" else self._bind

    def start(self) -> None:
        interfaces = InterfaceChoice.All if self._bind == "0.0.0.0" else [self._bind]
        try:
            self._zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        except OSError as exc:
            event(_log, "mdns.unavailable", logging.WARNING, reason=exc)
            return
        self._thread.start()

    def _run(self) -> None:
        zc = self._zc
        assert zc is not None
        announced = self._address()
        try:
            self._infos = [build(announced) for build in self._builders]
            if self._stop.is_set():
                return
            # Probing and announcing take ~2 s per record: all records at once, not in a row.
            self._registering = asyncio.run_coroutine_threadsafe(
                _register(zc, self._infos), zc.loop
            )
            self._registering.result(timeout=30)
        except CancelledError:
            return  # the host stopped first
        except Exception as exc:  # a dead advert must never take the host down
            event(_log, "mdns.unavailable", logging.WARNING, reason=exc)
            return
        for info in self._infos:
            event(_log, "mdns.announced", service=info.name, address=announced, port=info.port)
        while self._bind == "0.0.0.0" and not self._stop.wait(IP_RECHECK_S):
            now = self._address()
            if now == announced:
                continue
            try:
                for i, build in enumerate(self._builders):
                    info = build(now)
                    info.name = self._infos[i].name  # keep the name probing settled on
                    zc.update_service(info)
                    self._infos[i] = info
            except Exception as exc:  # keep the old record, retry next tick
                event(_log, "mdns.reannounce_failed", logging.WARNING, reason=exc)
                continue
            event(_log, "mdns.reannounced", old=announced, new=now)
            announced = now

    def close(self) -> None:
        self._stop.set()
        if self._registering is not None:
            self._registering.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self._zc is not None:
            self._zc.close()  # sends the goodbyes: clients drop the host at once
            self._zc = None


@dataclass(frozen=True)
class DiscoveredHost:
    """One resolved `_punktfunk._udp` advert (the client core's `advert_from_txt`)."""

    name: str
    addr: str
    port: int
    fingerprint: str
    pair: str
    id: str
    fullname: str
    wire: list[int] = field(default_factory=list)
    os: str = ""
    mac: list[str] = field(default_factory=list)
    mgmt_port: int | None = None

    @property
    def key(self) -> str:
        return self.id or self.fullname

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _prefix_bits(a: str, b: str) -> int:
    x = int(ipaddress.IPv4Address(a)) ^ int(ipaddress.IPv4Address(b))
    return 32 - x.bit_length()


def rank_host_addr(
    candidates: list[str], declared: str | None, local_ips: list[str], routed: str | None
) -> str | None:
    """Which A record to dial (rank_host_addr in the client core): the longest prefix shared with
    one of our addresses, then the host's own `addr`, then the routed source's prefix, then the
    numerically lowest, so a re-announce cannot flap the pick."""

    def score(c: str) -> tuple[int, bool, int, int]:
        return (
            max((_prefix_bits(c, loc) for loc in local_ips), default=0),
            c == declared,
            _prefix_bits(c, routed) if routed else 0,
            -int(ipaddress.IPv4Address(c)),
        )

    return max(candidates, key=score, default=None)


def _local_ipv4s() -> list[str]:
    return [
        i.ip
        for a in ifaddr.get_adapters()
        for i in a.ips
        if isinstance(i.ip, str) and not i.ip.startswith("127.")
    ]


def _printable(text: str) -> str:
    """A name or value as a terminal may show it: a LAN peer's escape sequences are dropped."""
    return "".join(c for c in text if c.isprintable())[:255]


def _uint(text: str) -> int | None:
    """A decimal as Rust's `parse::<u*>()` reads it: ASCII digits only, else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _uint8(text: str) -> int | None:
    value = _uint(text.strip())
    return value if value is not None and value < 256 else None


def parse_advert(
    fullname: str, port: int, addresses: list[str], txt: Mapping[str, str]
) -> DiscoveredHost | None:
    """The host an advert describes, or None: another `proto` or no IPv4 address."""
    proto = txt.get("proto", "")
    if proto and proto != NATIVE_PROTO:
        return None
    declared = txt.get("addr") or None
    routed: str | None = primary_ipv4()
    if routed == "127.0.0.1":
        routed = None
    addr = rank_host_addr(addresses, declared, _local_ipv4s(), routed)
    if addr is None:
        return None
    mgmt = _uint(txt.get("mgmt", ""))
    return DiscoveredHost(
        name=_printable(fullname.split(".")[0]),
        addr=addr,
        port=port,
        fingerprint="".join(c for c in txt.get("fp", "").lower() if c in "0123456789abcdef"),
        pair=_printable(txt.get("pair", "")),
        id=_printable(txt.get("id", "")),
        fullname=fullname,
        wire=[w for w in map(_uint8, txt.get("wire", "").split(",")) if w is not None][:8],
        os="/".join(t for t in map(_os_token, txt.get("os", "").split("/")) if t)[:200],
        mac=[_printable(m.strip()) for m in txt.get("mac", "").split(",") if m.strip()][:_MAX_MACS],
        mgmt_port=mgmt if mgmt is not None and 0 < mgmt < 65536 else None,
    )


def _txt_strings(info: ServiceInfo) -> dict[str, str]:
    return {
        k.decode(errors="replace"): (v or b"").decode(errors="replace")
        for k, v in info.properties.items()
    }


def discover(
    seconds: float, interfaces: InterfaceChoice | list[str] = InterfaceChoice.All
) -> list[DiscoveredHost]:
    """Browse `_punktfunk._udp` for `seconds`; the hosts found, one per `key`, by address."""
    names: set[str] = set()
    lock = threading.Lock()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        with lock:
            if state_change is ServiceStateChange.Removed:
                names.discard(name)
            elif len(names) < _MAX_ADVERTS:
                names.add(name)

    zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    try:
        browser = ServiceBrowser(zc, NATIVE_SERVICE, handlers=[on_change])
        time.sleep(max(0.0, seconds))
        browser.cancel()
        hosts: dict[str, DiscoveredHost] = {}
        deadline = time.monotonic() + 1.0  # the answers are cached by now; stragglers get 1 s
        with lock:
            found = sorted(names)
        for name in found:
            info = ServiceInfo(NATIVE_SERVICE, name)
            if not info.load_from_cache(zc):
                left_ms = (deadline - time.monotonic()) * 1000
                if left_ms <= 0 or not info.request(zc, left_ms):
                    continue
            addresses = info.parsed_addresses(IPVersion.V4Only)
            host = parse_advert(name, info.port or 0, addresses, _txt_strings(info))
            if host is not None and host.port:
                hosts[host.key] = host
    finally:
        zc.close()
    return sorted(hosts.values(), key=lambda h: (int(ipaddress.IPv4Address(h.addr)), h.port))
