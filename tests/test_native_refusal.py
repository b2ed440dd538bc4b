"""Who gets refused, over real UDP sockets against an in-process native host.

The host is the real `NativeHost` (socket thread, router, pairing gate, trust store). Its
session services must never be reached in these tests: a refused client gets no session, so
the stand-in below fails the test if anything asks it for a monitor. Media is counted where
it would land, at the client's socket, and at the host's sender.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from punktfunk.identity import load_or_create
from punktfunk.native.client.dial import ProbeError, pair
from punktfunk.native.client.receiver import NativeReceiver
from punktfunk.native.host.service import NativeHost
from punktfunk.native.wire.hello import ClientHello
from punktfunk.native.wire.messages import Mode
from punktfunk.native.wire.quic import ClientIdentity
from punktfunk.native.wire.registry import CloseCode, MediaSuite

PIN = "2468"
HELLO = ClientHello(mode=Mode(640, 360, 30), suites=(MediaSuite.AES_128_GCM,), name="probe")


class NoSessions:
    """SessionServices that a refused client must never reach."""

    def __getattr__(self, name: str):
        raise AssertionError(f"services.{name} was used: a refused client got a session")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[NativeHost]:
    identity = load_or_create(tmp_path / "identity")
    h = NativeHost(
        identity, tmp_path, NoSessions(), pin=PIN, bind="127.0.0.1", port=0, cooldown_s=2.0
    )
    h.start()
    yield h
    h.close()


def _addr(host: NativeHost) -> tuple[str, int]:
    return ("127.0.0.1", host.port)


def _stream(host: NativeHost, identity: ClientIdentity, host_fp: bytes | None) -> NativeReceiver:
    receiver = NativeReceiver(_addr(host), identity, host_fp, HELLO)
    receiver.run(1.5, connect_timeout=10)
    return receiver


def test_unpaired_and_other_key_clients_are_refused_and_get_no_media(host: NativeHost) -> None:
    paired = ClientIdentity.generate()
    host_fp = pair(_addr(host), paired, PIN, "probe")
    assert host_fp == host.fingerprint
    assert host.trust.is_paired(paired.fingerprint)

    # Never paired, does not even know the host key.
    stranger = _stream(host, ClientIdentity.generate(), None)
    # Knows the host and uses the paired client's name, but presents another key.
    impostor = _stream(host, ClientIdentity.generate(), host_fp)
    for receiver in (stranger, impostor):
        assert receiver.closed is not None and receiver.closed.code == CloseCode.PAIR_DENIED
        assert "not paired" in receiver.closed.reason
        assert receiver.server_hello is None and receiver.stats.media_datagrams == 0
        assert not receiver.ok
    assert host.server.sender.sent == 0  # not one media packet left the host
    assert host.sessions() == [] and host.ended == []


def test_three_wrong_pins_lock_pairing_for_the_cool_down(host: NativeHost) -> None:
    client = ClientIdentity.generate()
    for _ in range(3):
        with pytest.raises(ProbeError, match="wrong PIN"):
            pair(_addr(host), client, "1111", "guesser")
        time.sleep(0.6)  # aioquic reports the close after its draining period (3 PTO)
    time.sleep(0.2)  # the third guess is counted when its connection closes on the host
    with pytest.raises(ProbeError, match="0x62"):
        pair(_addr(host), client, PIN, "guesser")  # the right PIN, but locked
    assert not host.trust.is_paired(client.fingerprint)
    time.sleep(2.2)  # the cool-down passes
    assert pair(_addr(host), client, PIN, "guesser") == host.fingerprint
    assert host.trust.is_paired(client.fingerprint)


def test_admin_revoke_forgets_a_client(host: NativeHost) -> None:
    client = ClientIdentity.generate()
    pair(_addr(host), client, PIN, "tablet")
    listed = host.clients_json()
    assert client.fingerprint.hex() in listed and "tablet" in listed
    assert "tablet" in host.revoke(client.fingerprint.hex()[:12])
    assert not host.trust.is_paired(client.fingerprint)
    with pytest.raises(ValueError):
        host.revoke("deadbeef")
    refused = _stream(host, client, host.fingerprint)
    assert refused.closed is not None and refused.closed.code == CloseCode.PAIR_DENIED


def test_garbage_from_one_peer_is_dropped_and_others_carry_on(host: NativeHost) -> None:
    import os
    import socket

    noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = _addr(host)
    junk = [
        os.urandom(1300),  # random bytes (mostly read as QUIC, none parses)
        b"\xc0" + os.urandom(1250),  # a long header that is not a valid Initial
        b"\x00" * 60,  # looks like media: the host takes no media from clients
        b"\x40" + os.urandom(30),  # a short header for no connection
        b"",
    ]
    for datagram in junk * 20:
        noise.sendto(datagram, target)
    client = ClientIdentity.generate()
    assert pair(target, client, PIN, "survivor") == host.fingerprint  # the host still serves
    for datagram in junk * 20:
        noise.sendto(datagram, target)
    refused = _stream(host, ClientIdentity.generate(), host.fingerprint)
    assert refused.closed is not None and refused.closed.code == CloseCode.PAIR_DENIED
    assert host.server.stats["media_in"] >= 40 and host.server.stats["dropped"] >= 80
    noise.close()
