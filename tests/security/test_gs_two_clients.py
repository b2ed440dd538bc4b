"""Two Moonlight devices share one certificate name: trust must follow the certificate itself.

Every Moonlight client names its certificate "NVIDIA GameStream Client"; a host that told
clients apart by that name (or let TLS pick a trust anchor by it) refused the second device's
HTTPS, or the first one's once the second paired.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from moonlight_python.identity import Identity

from gs_host import Host, drive
from punktfunk.gamestream.trust import TrustStore, fingerprint


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    yield h
    h.kill()


def _client_cert(device: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(next(device.glob("client/cert.pem")).read_bytes())


def test_two_moonlight_identities_with_the_same_cn_both_pair_list_and_stream(
    host: Host, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for device in (first, second):
        result = drive(device, "--pin", "4321", "--pair-only")
        assert result.get("paired") is True, result
        assert "Desktop" in result["apps"]
    certs = [_client_cert(d) for d in (first, second)]
    assert certs[0].subject == certs[1].subject  # the very case: one CN, two key pairs
    assert fingerprint(certs[0]) != fingerprint(certs[1])
    assert len(host.status()["paired_clients"]) == 2
    # Pairing the second must not have broken the first: both list apps and stream now.
    for device in (first, second):
        result = drive(device, "--seconds", "3", "--mode", "640x480x30")
        assert result.get("paired_before") is True, result
        assert result["decoded"] > 10, result
        assert result["shape"] == [480, 640, 3], result
        assert host.wait_no_sessions() == []


def test_a_same_named_certificate_that_never_paired_is_refused(host: Host, tmp_path: Path) -> None:
    """Trusting exact certificates must not turn into trusting the name: a third device with
    the same CN that never paired gets no HTTPS and cannot launch."""
    assert drive(tmp_path / "first", "--pin", "4321", "--pair-only").get("paired") is True
    stranger = drive(tmp_path / "stranger", "--launch-only")
    assert stranger["pair_status"] == 0
    assert stranger["launched"] is False, stranger
    assert _client_cert(tmp_path / "stranger").subject == _client_cert(tmp_path / "first").subject
    assert "https.refused" in host.log.read_text()


def test_a_store_of_certificates_filed_by_name_is_migrated_and_keeps_them_paired(
    tmp_path: Path,
) -> None:
    """A client filed under another name (its CN, as a name-keyed store would) is renamed to
    its fingerprint on load and still streams without pairing again."""
    device = tmp_path / "device"
    cert_pem = Identity(device / "client").cert_pem
    store = tmp_path / "state" / "gamestream" / "clients"
    store.mkdir(parents=True)
    (store / "NVIDIA GameStream Client.pem").write_bytes(cert_pem)
    (store / "NVIDIA GameStream Client.json").write_text('{"name": "laptop"}')
    fp = fingerprint(x509.load_pem_x509_certificate(cert_pem))
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    try:
        assert host.status()["paired_clients"] == ["laptop"]
        assert sorted(p.name for p in store.iterdir()) == [f"{fp}.json", f"{fp}.pem"]
        result = drive(device, "--seconds", "2", "--mode", "640x480x30")
        assert result.get("paired_before") is True, result
        assert result["decoded"] > 5, result
    finally:
        host.kill()
    # Unpairing now removes the client's files: a fresh store holds nobody.
    trust = TrustStore(store)
    assert trust.remove(fp)
    assert TrustStore(store).clients() == []
