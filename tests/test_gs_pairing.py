"""GameStream PIN pairing, driven the way a Moonlight client drives it.

The client side (tests/gs_client.py) derives the AES key from salt + PIN, hashes the X.509
signatureValue it extracts from the DER itself, signs with RSA-PKCS1v15-SHA256 and checks the
host's signature with the key from `plaincert` - so a host that hashes or signs the wrong bytes
fails here exactly where a real client would stop. Also: the failure rules (paired=0 and the
attempt discarded on any wrong step), the attempt timeout, unpairing, the persisted trust store
and the host identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID

from gs_client import (
    PairingClient,
    aes_ecb,
    der_signature_value,
    pem_signature_value,
    shared_client_identity,
)
from punktfunk.gamestream.pairing import ATTEMPT_TIMEOUT_S, PairingCore
from punktfunk.gamestream.trust import TrustStore
from punktfunk.identity import HostIdentity, IdentityError, load_or_create

PIN = "0420"  # leading zero on purpose: the PIN is hashed as ASCII text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> HostIdentity:
    return load_or_create(tmp_path_factory.mktemp("host"))


@pytest.fixture
def trust(tmp_path: Path) -> TrustStore:
    return TrustStore(tmp_path / "clients")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(host: HostIdentity, trust: TrustStore, clock: Clock) -> PairingCore:
    return PairingCore(host, trust, clock=clock)


def client_fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def run_to_phase3(core: PairingCore, client: PairingClient, host_pin: str) -> tuple[bool, bool]:
    uid = client.unique_id
    client.on_phase1(core.get_server_cert(uid, client.phase1_params(), host_pin))
    client.on_phase2(core.handle(uid, client.phase2_params()))
    return client.on_phase3(core.handle(uid, client.phase3_params()))


# --- the happy path ---------------------------------------------------------------------------


def test_full_pairing_trusts_the_client_certificate(
    core: PairingCore, host: HostIdentity, trust: TrustStore
) -> None:
    ident = shared_client_identity(0)
    client = PairingClient(ident, PIN)
    signature_ok, pin_ok = run_to_phase3(core, client, PIN)
    assert signature_ok, "host signature over its secret must verify with the plaincert key"
    assert pin_ok, "the phase-2 hash must prove the host knows the PIN"
    assert client.server_cert_pem == host.cert_pem  # plaincert is the host's PEM text
    assert trust.clients() == []  # nothing is trusted before phase 4
    assert core.handle(client.unique_id, client.phase4_params()) == {"paired": "1"}
    fp = client_fingerprint(ident.cert_pem)
    paired = trust.get(fp)
    assert paired is not None and paired.name == "roth"
    assert x509.load_pem_x509_certificate(paired.cert_pem) == ident.cert
    assert not core.pending(client.unique_id)


def test_signature_bytes_are_the_der_signature_value(host: HostIdentity) -> None:
    """What both sides hash: the 256-byte BIT STRING contents, not a digest of the cert."""
    sig = der_signature_value(host.cert.public_bytes(serialization.Encoding.DER))
    assert len(sig) == 256
    assert sig == host.cert.signature
    assert pem_signature_value(shared_client_identity(0).cert_pem) == (
        shared_client_identity(0).cert.signature
    )


def test_phase2_reply_layout_with_sunshine_vector(host: HostIdentity, trust: TrustStore) -> None:
    """Sunshine's test vector: salt ff5d..., PIN 5338, AES-ECB('CLIENT CHALLENGE') = 741c...;
    the reply is ECB(SHA256(challenge || host cert signature || secret) || server challenge)."""
    randoms = iter([b"S" * 16, b"C" * 16])
    core = PairingCore(host, trust, rand=lambda n: next(randoms))
    salt = "ff5dc6eda99339a8a0793e216c4257c4"
    params = {
        "uniqueid": "u",
        "salt": salt,
        "clientcert": shared_client_identity(0).cert_pem.hex(),
    }
    assert core.get_server_cert("u", params, "5338")["paired"] == "1"
    reply = core.handle("u", {"clientchallenge": "741CD3D6890C16DA39D53BCA0893AAF0"})
    key = hashlib.sha256(bytes.fromhex(salt) + b"5338").digest()[:16]
    plain = aes_ecb(key, bytes.fromhex(reply["challengeresponse"]), False)
    assert len(plain) == 48
    sig = der_signature_value(host.cert.public_bytes(serialization.Encoding.DER))
    assert plain[:32] == hashlib.sha256(b"CLIENT CHALLENGE" + sig + b"S" * 16).digest()
    assert plain[32:] == b"C" * 16


def test_two_clients_pair_concurrently_by_uniqueid(core: PairingCore, trust: TrustStore) -> None:
    a = PairingClient(shared_client_identity(0), PIN, unique_id="aaaa")
    b = PairingClient(shared_client_identity(1), "9999", unique_id="bbbb")
    a.on_phase1(core.get_server_cert("aaaa", a.phase1_params(), PIN))
    b.on_phase1(core.get_server_cert("bbbb", b.phase1_params(), "9999"))
    a.on_phase2(core.handle("aaaa", a.phase2_params()))
    b.on_phase2(core.handle("bbbb", b.phase2_params()))
    assert b.on_phase3(core.handle("bbbb", b.phase3_params())) == (True, True)
    assert a.on_phase3(core.handle("aaaa", a.phase3_params())) == (True, True)
    assert core.handle("bbbb", b.phase4_params()) == {"paired": "1"}
    assert core.handle("aaaa", a.phase4_params()) == {"paired": "1"}
    assert len(trust.clients()) == 2


# --- failures: paired=0, attempt discarded, nothing trusted ----------------------------------


def test_wrong_pin_fails_at_phase4_and_trusts_nothing(core: PairingCore, trust: TrustStore) -> None:
    client = PairingClient(shared_client_identity(0), "1234")
    signature_ok, pin_ok = run_to_phase3(core, client, "4321")
    assert signature_ok  # the host's signature is still genuine...
    assert not pin_ok  # ...but its hash shows it derived a different key
    assert core.handle(client.unique_id, client.phase4_params()) == {"paired": "0"}
    assert trust.clients() == []
    assert not core.pending(client.unique_id)


def test_phase4_with_forged_signature_is_refused(core: PairingCore, trust: TrustStore) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    assert run_to_phase3(core, client, PIN) == (True, True)
    params = client.phase4_params()
    blob = bytearray(bytes.fromhex(params["clientpairingsecret"]))
    blob[-1] ^= 0x01
    params["clientpairingsecret"] = blob.hex()
    assert core.handle(client.unique_id, params) == {"paired": "0"}
    assert trust.clients() == []
    assert not core.pending(client.unique_id)


def test_phase4_signed_by_another_key_is_refused(core: PairingCore, trust: TrustStore) -> None:
    """The hash matches (right PIN) but the secret is signed by a key other than the cert's."""
    client = PairingClient(shared_client_identity(0), PIN)
    assert run_to_phase3(core, client, PIN) == (True, True)
    impostor = shared_client_identity(1).key
    signature = impostor.sign(client.client_secret, padding.PKCS1v15(), hashes.SHA256())
    params = {"clientpairingsecret": (client.client_secret + signature).hex()}
    assert core.handle(client.unique_id, params) == {"paired": "0"}
    assert trust.clients() == []


@pytest.mark.parametrize(
    "order",
    [
        ("phase3",),  # skips the challenge
        ("phase4",),  # straight to the secret
        ("phase2", "phase4"),  # skips the challenge response
        ("phase2", "phase2"),  # replayed challenge
        ("phase2", "phase3", "phase3"),  # replayed response
    ],
)
def test_out_of_order_or_replayed_phase_discards_the_attempt(
    core: PairingCore, trust: TrustStore, order: tuple[str, ...]
) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    uid = client.unique_id
    client.on_phase1(core.get_server_cert(uid, client.phase1_params(), PIN))
    replies = []
    for phase in order:
        if phase == "phase2":
            reply = core.handle(uid, client.phase2_params())
            if reply.get("paired") == "1":
                client.on_phase2(reply)
        elif phase == "phase3":
            reply = core.handle(uid, client.phase3_params())
        else:
            reply = core.handle(uid, client.phase4_params())
        replies.append(reply)
    assert replies[-1] == {"paired": "0"}
    assert not core.pending(uid)
    # The attempt is gone: even the correct next step now fails.
    assert core.handle(uid, client.phase3_params()) == {"paired": "0"}
    assert core.handle(uid, client.phase4_params()) == {"paired": "0"}
    assert trust.clients() == []


def test_phase_without_any_attempt(core: PairingCore) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    assert core.handle("nobody", client.phase2_params()) == {"paired": "0"}
    assert core.handle("nobody", {"uniqueid": "nobody"}) == {"paired": "0"}


def _ec_cert_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(salt="zz" * 16),
        lambda p: p.update(salt="00" * 15),
        lambda p: p.update(salt="00" * 17),
        lambda p: p.pop("salt"),
        lambda p: p.update(clientcert="abc"),
        lambda p: p.update(clientcert=b"not a certificate".hex()),
        lambda p: p.pop("clientcert"),
        lambda p: p.update(clientcert=_ec_cert_pem().hex()),
    ],
    ids=[
        "salt-not-hex",
        "salt-short",
        "salt-long",
        "salt-missing",
        "cert-odd-hex",
        "cert-not-pem",
        "cert-missing",
        "cert-not-rsa",
    ],
)
def test_malformed_phase1_is_refused(core: PairingCore, mutate) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    params = client.phase1_params()
    mutate(params)
    assert core.get_server_cert(client.unique_id, params, PIN) == {"paired": "0"}
    assert not core.pending(client.unique_id)


@pytest.mark.parametrize(
    ("phase", "name", "value"),
    [
        (2, "clientchallenge", "xyz"),
        (2, "clientchallenge", "00" * 15),
        (2, "clientchallenge", "00" * 32),
        (2, "clientchallenge", ""),
        (3, "serverchallengeresp", "00" * 16),
        (3, "serverchallengeresp", "00" * 33),
        (3, "serverchallengeresp", "0g" * 32),
        (4, "clientpairingsecret", "00" * 16),
        (4, "clientpairingsecret", "12345"),
        (4, "clientpairingsecret", ""),
    ],
)
def test_malformed_later_phase_discards_the_attempt(
    core: PairingCore, trust: TrustStore, phase: int, name: str, value: str
) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    uid = client.unique_id
    client.on_phase1(core.get_server_cert(uid, client.phase1_params(), PIN))
    if phase >= 3:
        client.on_phase2(core.handle(uid, client.phase2_params()))
    if phase >= 4:
        client.on_phase3(core.handle(uid, client.phase3_params()))
    assert core.handle(uid, {"uniqueid": uid, name: value}) == {"paired": "0"}
    assert not core.pending(uid)
    assert trust.clients() == []


def test_attempt_times_out(core: PairingCore, clock: Clock, trust: TrustStore) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    uid = client.unique_id
    client.on_phase1(core.get_server_cert(uid, client.phase1_params(), PIN))
    clock.now += ATTEMPT_TIMEOUT_S - 1
    client.on_phase2(core.handle(uid, client.phase2_params()))  # still in time
    clock.now += 2
    assert core.handle(uid, client.phase3_params()) == {"paired": "0"}
    assert not core.pending(uid)
    assert trust.clients() == []


def test_new_phase1_restarts_an_attempt(core: PairingCore, trust: TrustStore) -> None:
    first = PairingClient(shared_client_identity(0), "1111")
    first.on_phase1(core.get_server_cert(first.unique_id, first.phase1_params(), "1111"))
    first.on_phase2(core.handle(first.unique_id, first.phase2_params()))
    again = PairingClient(shared_client_identity(0), PIN)
    assert run_to_phase3(core, again, PIN) == (True, True)
    assert core.handle(again.unique_id, again.phase4_params()) == {"paired": "1"}
    assert len(trust.clients()) == 1


def test_cancel_drops_the_attempt(core: PairingCore) -> None:
    client = PairingClient(shared_client_identity(0), PIN)
    client.on_phase1(core.get_server_cert(client.unique_id, client.phase1_params(), PIN))
    core.cancel(client.unique_id)
    assert core.handle(client.unique_id, client.phase2_params()) == {"paired": "0"}


# --- unpair, trust store, identity ------------------------------------------------------------


def _pair(core: PairingCore, index: int = 0) -> str:
    client = PairingClient(shared_client_identity(index), PIN, unique_id=f"id{index}")
    assert run_to_phase3(core, client, PIN) == (True, True)
    assert core.handle(client.unique_id, client.phase4_params()) == {"paired": "1"}
    return client_fingerprint(shared_client_identity(index).cert_pem)


def test_unpair_forgets_only_that_client(core: PairingCore, trust: TrustStore) -> None:
    fp0, fp1 = _pair(core, 0), _pair(core, 1)
    assert core.unpair(fp0) is True
    assert trust.get(fp0) is None and trust.get(fp1) is not None
    assert core.unpair(fp0) is False
    assert not list(trust._dir.glob(f"{fp0}*"))  # its files are gone too


def test_trust_store_survives_a_restart(core: PairingCore, trust: TrustStore) -> None:
    fp = _pair(core, 0)
    reloaded = TrustStore(trust._dir)
    client = reloaded.get(fp)
    assert client is not None and client.name == "roth"
    bundle = reloaded.pem_bundle()
    assert x509.load_pem_x509_certificates(bundle)[0] == shared_client_identity(0).cert


def test_trust_store_skips_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_bytes(b"garbage")
    assert TrustStore(tmp_path).clients() == []


def test_identity_is_created_private_and_reloaded(tmp_path: Path) -> None:
    first = load_or_create(tmp_path / "state")
    for name in ("host.key", "host.crt"):
        mode = stat.S_IMODE(os.stat(tmp_path / "state" / name).st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    again = load_or_create(tmp_path / "state")
    assert again.cert_pem == first.cert_pem
    assert again.unique_id == first.unique_id
    assert len(first.unique_id) == 16
    assert len(first.cert.signature) == 256  # RSA-2048, as clients expect


def test_identity_refuses_a_mismatched_key(tmp_path: Path) -> None:
    a = load_or_create(tmp_path / "a")
    b = load_or_create(tmp_path / "b")
    (tmp_path / "a" / "host.key").write_bytes(b.key_pem)
    with pytest.raises(IdentityError):
        load_or_create(tmp_path / "a")
    (tmp_path / "a" / "host.key").write_bytes(b"junk")
    with pytest.raises(IdentityError):
        load_or_create(tmp_path / "a")
    assert a.cert_pem != b.cert_pem
