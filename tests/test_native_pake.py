"""SPAKE2 pairing: interoperability with the Rust `spake2` crate, the confirmation MACs of
quic/pake.rs, and the host's pairing gate (one ceremony at a time, lockout)."""

import hashlib
import hmac
import json

import pytest
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.parameters.ed25519 import ParamsEd25519

from punktfunk.native.wire.messages import PairChallenge, PairProof, PairRequest, Refused
from punktfunk.native.wire.pake import (
    ClientPairing,
    HostPairing,
    Lockout,
    PairingError,
    PairingGate,
    Pake,
)
from punktfunk.native.wire.registry import CloseCode

CLIENT_FP, HOST_FP = bytes([0x11]) * 32, bytes([0x22]) * 32


def test_group_constants_match_the_rust_crate():
    # RustCrypto PAKEs spake2 `ed25519.rs` `const_m` / `const_n` (copied there from this
    # very Python library): the blinding points must be byte-identical.
    assert ParamsEd25519.M.to_bytes().hex() == (
        "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312"
    )
    assert ParamsEd25519.N.to_bytes().hex() == (
        "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3"
    )
    # `test_password_to_scalar`: HKDF-SHA256(salt "", info "SPAKE2 pw") mod l.
    scalar = ParamsEd25519.group.password_to_scalar(b"password")
    assert scalar == 3515301705789368674385125653994241092664323519848410154015274772661223168839


def _fixed(cls, scalar: int, side: str):
    """A SPAKE2 side with a chosen secret scalar, through the library's own restore path."""
    group = ParamsEd25519.group
    state = {
        "hashed_params": cls(b"password", idA=b"idA", idB=b"idB").hash_params(),
        "side": side,
        "idA": b"idA".hex(),
        "idB": b"idB".hex(),
        "password": b"password".hex(),
        "xy_scalar": group.scalar_to_bytes(scalar).hex(),
    }
    return cls.from_serialized(json.dumps(state).encode())


def test_rust_crate_asymmetric_vector():
    # RustCrypto spake2 `lib.rs` `test_asymmetric`: the same scalars give the same messages
    # (side byte 'A'/'B' then the element) and the same 32-byte key.
    a = _fixed(
        SPAKE2_A, 2611694063369306139794446498317402240796898290761098242657700742213257926693, "A"
    )
    b = _fixed(
        SPAKE2_B, 7002393159576182977806091886122272758628412261510164356026361256515836884383, "B"
    )
    msg_a, msg_b = b"A" + a.outbound_message, b"B" + b.outbound_message
    assert msg_a.hex() == "416fc960df73c9cf8ed7198b0c9534e2e96a5984bfc5edc023fd24dacf371f2af9"
    assert msg_b.hex() == "42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309"
    key = "712295de7219c675ddd31942184aa26e0a957cf216bc230d165b215047b520c1"
    assert a.finish(msg_b).hex() == key and b.finish(msg_a).hex() == key


def test_confirmations_agree_only_on_matching_pin_and_certificates():
    # quic/pake.rs `spake2_pairing_agrees_only_on_matching_pin_and_certs`.
    def run(pin_a, pin_b, host_fp_a):
        client, host = (
            Pake(True, pin_a, CLIENT_FP, host_fp_a),
            Pake(False, pin_b, CLIENT_FP, HOST_FP),
        )
        return client.finish(host.message), host.finish(client.message)

    a, b = run("4321", "4321", HOST_FP)
    assert a == b
    # The MAC is HMAC-SHA256(key, label | client_fp | host_fp).
    assert len(a.host) == 32 and a.host != a.client
    a, b = run("0000", "4321", HOST_FP)
    assert a.client != b.client and a.host != b.host
    a, b = run("4321", "4321", bytes([0x33]) * 32)  # split host certificates: a MITM
    assert a.client != b.client


def test_confirmation_mac_definition():
    client, host = Pake(True, "1", CLIENT_FP, HOST_FP), Pake(False, "1", CLIENT_FP, HOST_FP)
    key = client._spake.finish(host.message)  # what SPAKE2 agreed on
    mac = hmac.new(key, b"punktfunk-pair-client" + CLIENT_FP + HOST_FP, hashlib.sha256).digest()
    assert host.finish(client.message).client == mac


def test_malformed_spake_messages_are_errors():
    for bad in (b"", b"B", b"A" + bytes(32), b"B" + b"\xff" * 32):
        with pytest.raises(PairingError):
            Pake(True, "1", CLIENT_FP, HOST_FP).finish(bad)


def ceremony(gate: PairingGate, pin: str, now: float = 0.0):
    client = ClientPairing(pin, "probe", CLIENT_FP)
    host = HostPairing(gate, HOST_FP)
    reply = host.on_request(client.request(HOST_FP), CLIENT_FP, now)
    if isinstance(reply, Refused):
        return reply, None
    try:
        proof = client.on_challenge(reply)
    except PairingError:
        host.abandon(now)  # a client that detects a wrong PIN just disconnects
        return None, None
    return host.on_proof(proof, now)


def test_a_right_pin_pairs_and_consumes_the_window():
    gate = PairingGate(pin="4321")
    result, paired = ceremony(gate, "4321")
    assert result.ok and paired.fingerprint == CLIENT_FP and paired.name == "probe"
    assert gate.state(0.0) is Lockout.NOT_ARMED  # single use, as punktfunk's window


def test_three_wrong_pins_lock_pairing_for_the_cool_down():
    gate = PairingGate(pin="4321", cooldown_s=30.0)
    for i in range(3):
        assert ceremony(gate, "0000", now=float(i)) == (None, None)
    assert gate.state(3.0) is Lockout.LOCKED
    refused, _ = ceremony(gate, "4321", now=3.0)  # even the right PIN is refused now
    assert refused.code == CloseCode.PAIR_RATE_LIMITED
    assert gate.state(2.0 + 30.0) is Lockout.OPEN  # the lock runs from the third failure
    result, paired = ceremony(gate, "4321", now=33.0)
    assert result.ok and paired is not None


def test_a_wrong_proof_counts_and_a_success_resets_the_count():
    gate = PairingGate(pin="1111", single_use=False)
    host = HostPairing(gate, HOST_FP)
    client = ClientPairing("1111", "x", CLIENT_FP)
    challenge = host.on_request(client.request(HOST_FP), CLIENT_FP, 0.0)
    assert isinstance(challenge, PairChallenge)
    result, paired = host.on_proof(PairProof(bytes(32)), 0.0)  # a forged proof
    assert not result.ok and paired is None and gate.failures == 1
    assert ceremony(gate, "1111")[0].ok and gate.failures == 0


def test_gate_refusals():
    assert ceremony(PairingGate(), "1")[0].code == CloseCode.PAIR_NOT_ARMED
    gate = PairingGate(pin="1")
    host = HostPairing(gate, HOST_FP)
    assert isinstance(host.on_request(PairRequest(spake_a=b"junk"), None, 0.0), Refused)
    first = HostPairing(gate, HOST_FP)
    assert isinstance(
        first.on_request(ClientPairing("1", "a", CLIENT_FP).request(HOST_FP), CLIENT_FP, 0.0),
        PairChallenge,
    )
    busy, _ = ceremony(gate, "1")  # one ceremony at a time
    assert busy.code == CloseCode.PAIR_RATE_LIMITED
    # Garbage that never reaches a challenge does not cost a guess.
    junk = HostPairing(PairingGate(pin="1"), HOST_FP).on_request(
        PairRequest(spake_a=b"junk"), CLIENT_FP, 0.0
    )
    assert isinstance(junk, Refused)
