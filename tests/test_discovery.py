"""LAN discovery: the `_punktfunk._udp` advert as the Rust host publishes it; `probe --discover`.

Rust sources (punktfunk/punktfunk): the host advert `crates/host/punktfunk-host/src/hostsys/
discovery.rs` (`advertise_native`, `dns_label` and its test), the OS chain `crates/host/
punktfunk-host/src/hostsys/osinfo.rs` @ 867f3f4445c6d3a6ef25680f6bb94cea3fe2cac3 (its tests), and
the client's reading of an advert, `punktfunk_core::discovery` (`advert_from_txt`,
`rank_host_addr` and their tests; browsed by `crates/client/pf-client-core/src/discovery.rs`
@ 38d32483a8ce8c4105d3bd1ac39bedd79001e4a8). The end-to-end test runs real hosts on loopback:
mDNS there needs no network but `lo`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zeroconf import IPVersion, ServiceBrowser, Zeroconf

from gs_host import BASE_PORT
from punktfunk import mdns
from punktfunk.gamestream.mdns import gamestream_record
from punktfunk.mdns import (
    NATIVE_SERVICE,
    Advert,
    dns_label,
    native_record,
    native_txt,
    os_chain,
    parse_advert,
    rank_host_addr,
)

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
FP = "ab" * 32


def _txt_strings(rdata: bytes) -> list[str]:
    """A TXT record's character-strings (RFC 1035 3.3.14: a length byte, then the bytes)."""
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1 : i + 1 + n].decode())
        i += 1 + n
    return out


def test_native_txt_carries_the_rust_keys_and_values() -> None:
    # advertise_native: proto, fp, pair, id, wire, os, mac, addr; mgmt only with a mgmt API.
    txt = native_txt(FP.upper(), "HOSTID", "192.168.1.9", os="linux/debian",
                     macs=["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"])  # fmt: skip
    assert txt == {
        "proto": "punktfunk/1",
        "fp": FP,  # lowercase hex, the value a client pins
        "pair": "required",
        "id": "HOSTID",
        "wire": "2",
        "os": "linux/debian",
        "mac": "aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02",
        "addr": "192.168.1.9",
    }
    assert "os" not in native_txt(FP, "H", "10.0.0.1") and "mac" not in native_txt(
        FP, "H", "1.2.3.4"
    )


def test_native_record_encodes_as_mdns_sd_does() -> None:
    # ServiceInfo::new(NATIVE_SERVICE, instance = display name, host = dns_label(name).local.)
    info = native_record("Living Room PC", 9777, FP, "HOSTID", "linux/debian")("127.0.0.1")
    assert info.type == "_punktfunk._udp.local." == NATIVE_SERVICE
    assert info.name == "Living Room PC._punktfunk._udp.local."
    assert info.server == "Living-Room-PC.local."
    assert (info.port, info.parsed_addresses()) == (9777, ["127.0.0.1"])
    strings = _txt_strings(info.text)
    assert sorted(strings) == sorted([
        "proto=punktfunk/1", f"fp={FP}", "pair=required", "id=HOSTID", "wire=2",
        "os=linux/debian", "addr=127.0.0.1",
    ])  # fmt: skip
    # GameStream's record: Moonlight needs no TXT (gamestream/mdns.rs publishes none).
    gs = gamestream_record("desk", 47989)("192.168.1.9")
    assert (gs.name, gs.server, gs.port) == ("desk._nvstream._tcp.local.", "desk.local.", 47989)
    assert gs.properties == {}


def test_dns_label_rust_vectors() -> None:
    for plain in ("bazzite-htpc", "DESKTOP-1A2B3C", "box.lan", "steamdeck"):
        assert dns_label(plain) == plain
    assert dns_label("Living Room PC") == "Living-Room-PC"
    assert dns_label("  Ben's Rig!  ") == "Ben-s-Rig"
    assert dns_label("Wohnzimmer-PC ☕") == "Wohnzimmer-PC"
    assert dns_label("***") == "punktfunk-host"
    assert dns_label("") == "punktfunk-host"
    assert len(dns_label("a" * 200)) <= 63


@pytest.mark.parametrize(
    ("os_release", "chain"),
    [  # osinfo.rs tests
        ('PRETTY_NAME="Ubuntu 24.04.2 LTS"\nNAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n',
         "linux/debian/ubuntu"),
        ('ID=bazzite\nID_LIKE="fedora"\nPRETTY_NAME="Bazzite 42 (Kinoite)"\n',
         "linux/fedora/bazzite"),
        ("ID=steamos\nID_LIKE=arch\n", "linux/arch/steamos"),
        ('ID=nobara\nID_LIKE="rhel centos fedora"\n', "linux/rhel/nobara"),
        ("ID=nixos\n", "linux/nixos"),
        ('ID="centos"\nID_LIKE="rhel fedora"\n', "linux/rhel/centos"),
        ('ID=pop\nID_LIKE="ubuntu debian"\n', "linux/ubuntu/pop"),
        ("ID=fedora\nID_LIKE=fedora\n", "linux/fedora"),
        ("ID=chimera\nID_LIKE=frontier\n", "linux/chimera"),
        ("", "linux"),
        ("not an os-release file at all\n===\n", "linux"),
        ('ID="Ubu ntu/EVIL=1"\n', "linux/ubuntuevil1"),
        ("ID=" + "x" * 80 + "\n", "linux/" + "x" * 32),
        ("ID='opensuse-tumbleweed'\nID_LIKE='opensuse suse'\n",
         "linux/opensuse/opensuse-tumbleweed"),
        ("  ID=ubuntu \r\n\tID_LIKE=debian\r\n", "linux/debian/ubuntu"),
    ],
)  # fmt: skip
def test_os_chain_rust_vectors(os_release: str, chain: str) -> None:
    assert os_chain(os_release) == chain


def _advert(txt: dict[str, str]):
    return parse_advert("desk._punktfunk._udp.local.", 9777, ["192.168.1.9"], txt)


def test_an_advert_reads_as_the_rust_client_reads_it() -> None:
    # advert_from_txt's tests.
    host = _advert({"proto": "punktfunk/1", "id": "id-1", "fp": "ab12", "pair": "required",
                    "mgmt": "47991", "mac": " aa:bb:cc:dd:ee:01 ,,aa:bb:cc:dd:ee:02",
                    "os": "Linux/Fedora", "wire": "2"})  # fmt: skip
    assert host is not None
    assert (host.key, host.name, host.addr, host.port) == ("id-1", "desk", "192.168.1.9", 9777)
    assert (host.fingerprint, host.pair, host.mgmt_port) == ("ab12", "required", 47991)
    assert host.mac == ["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"]
    assert (host.os, host.wire) == ("linux/fedora", [2])
    assert _advert({"wire": "1, x,2"}).wire == [1, 2]
    # Whatever a LAN peer sends reads as absent, never as an error: u8 / u16 as Rust parses them.
    assert _advert({"wire": "²,300,-1,2", "mgmt": "¹²"}).wire == [2]
    assert _advert({"mgmt": "¹²"}).mgmt_port is None and _advert({"mgmt": " 80"}).mgmt_port is None
    older = _advert({})
    assert older.key == "desk._punktfunk._udp.local." and older.wire == [] and older.mac == []
    assert _advert({"mgmt": "0"}).mgmt_port is None and _advert({"mgmt": "70000"}).mgmt_port is None
    hostile = parse_advert("\x1b[2Jevil._punktfunk._udp.local.", 9777, ["192.168.1.9"],
                           {"pair": "required\x1b]0;x\x07", "fp": "AB\x1b12"})  # fmt: skip
    assert (hostile.name, hostile.pair, hostile.fingerprint) == ("[2Jevil", "required]0;x", "ab12")
    assert _advert({"proto": "sunshine/1"}) is None
    assert parse_advert("x.local.", 9777, [], {}) is None


def test_rank_host_addr_rust_cases() -> None:
    lan, overlay = "192.168.1.170", "192.168.196.206"
    for declared in (None, lan):  # a shared LAN beats a shared overlay
        assert rank_host_addr([overlay, lan], declared, ["192.168.1.150", "192.168.196.57"],
                              "192.168.1.150") == lan  # fmt: skip
    # An overlay-only client ignores the declared (off-link) LAN address.
    assert (
        rank_host_addr([lan, overlay], lan, ["10.1.2.3", "192.168.196.57"], "10.1.2.3") == overlay
    )
    # A same-LAN multi-NIC tie: the declaration wins; without one, the lowest address.
    pair = ["192.168.1.170", "192.168.1.171"]
    assert rank_host_addr(pair, "192.168.1.171", ["192.168.1.150"], "192.168.1.150") == pair[1]
    assert rank_host_addr(pair, None, ["192.168.1.150"], "192.168.1.150") == pair[0]
    assert rank_host_addr(["10.0.0.9", "10.0.0.5"], None, [], None) == "10.0.0.5"
    assert rank_host_addr([], None, [], None) is None


# ---- end to end: real hosts on loopback -------------------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Host:
    def __init__(self, tmp: Path, *args: str) -> None:
        tmp.mkdir()
        self.port = _free_port(socket.SOCK_DGRAM)
        self.log = tmp / "host.log"
        (tmp / "none.env").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        env.update(PUNKTFUNK_STATE_DIR=str(tmp / "state"), PUNKTFUNK_CONFIG=str(tmp / "none.env"))
        self.proc = subprocess.Popen(
            [str(PUNKTFUNK), "serve", "--display", "pattern", "--native-port", str(self.port),
             "--bind-address", "127.0.0.1", *args],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, line: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (match := re.search(line, self.text())) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} from the host:\n{self.text()[-3000:]}")
            time.sleep(0.1)
        return match

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _browse(service: str, seconds: float) -> dict[str, tuple[int, list[str]]]:
    """name -> (port, addresses) of every `service` record answered on loopback."""
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    names: set[str] = set()
    try:
        browser = ServiceBrowser(zc, service, handlers=[lambda name, **_: names.add(name)])
        time.sleep(seconds)
        browser.cancel()
        found = {}
        for name in sorted(names):
            info = zc.get_service_info(service, name, timeout=1000)
            if info is not None:
                found[name] = (info.port, info.parsed_addresses())
        return found
    finally:
        zc.close()


def _resolve(name: str) -> tuple[list[str], dict[bytes, bytes | None]] | None:
    """A fresh resolver's view of one native record on loopback (nothing cached)."""
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    try:
        info = zc.get_service_info(NATIVE_SERVICE, f"{name}.{NATIVE_SERVICE}", timeout=1000)
        return None if info is None else (info.parsed_addresses(), info.properties)
    finally:
        zc.close()


def test_an_advert_follows_the_hosts_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host that came up before its network announced 127.0.0.1; once routed it must say so.
    routed = ["127.0.0.1"]
    monkeypatch.setattr(mdns, "primary_ipv4", lambda: routed[0])
    monkeypatch.setattr(mdns, "IP_RECHECK_S", 0.2)
    name = f"pf-readdress-{os.getpid()}"
    advert = Advert("0.0.0.0", [native_record(name, 9777, FP, "HOSTID")])
    advert.start()
    try:
        seen = None
        deadline = time.monotonic() + 15
        for want in ("127.0.0.1", "127.0.0.2"):
            while (seen := _resolve(name)) is None or seen[0] != [want]:
                assert time.monotonic() < deadline, f"still {seen}, want {want}"
            assert seen[1][b"addr"] == want.encode() and seen[1][b"fp"] == FP.encode()
            routed[0] = "127.0.0.2"
    finally:
        advert.close()


def test_probe_discover_finds_serve_on_loopback(tmp_path: Path) -> None:
    gs_base = BASE_PORT + 500
    shown = Host(tmp_path / "a", "--gamestream", "--gamestream-port", str(gs_base))
    hidden = Host(tmp_path / "b", "--no-mdns")
    try:
        fp = shown.wait_for(r"native\.ready port=\d+ fingerprint=([0-9a-f]{64})").group(1)
        shown.wait_for(r"mdns\.announced service=\S+_punktfunk\._udp")
        shown.wait_for(r"mdns\.announced service=\S+_nvstream\._tcp")
        hidden.wait_for(r"host\.ready")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        probe = subprocess.Popen(
            [str(PUNKTFUNK), "probe", "--discover", "1.5", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        # Meanwhile: the same responder carries GameStream's record, at the nvhttp port.
        gs = [v for v in _browse("_nvstream._tcp.local.", 1.0).values() if v[0] == gs_base]
        assert gs == [(gs_base, ["127.0.0.1"])]
        out, err = probe.communicate(timeout=30)
        report = json.loads(out)
        ours = [h for h in report["hosts"] if h["port"] == shown.port]
        assert len(ours) == 1, (report, err)
        host = ours[0]
        assert (host["addr"], host["fingerprint"], host["pair"]) == ("127.0.0.1", fp, "required")
        assert host["wire"] == [2] and host["name"].startswith(socket.gethostname().split(".")[0])
        assert host["os"].startswith("linux")
        assert not [h for h in report["hosts"] if h["port"] == hidden.port], "--no-mdns advertised"
        assert probe.returncode == 0 and report["ok"] is True
        assert "mdns.announced" not in hidden.text()
    finally:
        shown.stop()
        hidden.stop()
    assert (shown.wait(), hidden.wait()) == (0, 0)
