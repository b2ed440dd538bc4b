"""GameStream PIN guessing: 3 wrong PINs lock pairing, the cool-down grows, every failure is
logged with the client's address; a preset PIN is disarmed by the first failed attempt.

Before, a preset 4-digit PIN fell to plain guessing in about 35 s (one guess every ~8 ms).
The schedule is checked two ways: the real pairing core with a clock the test moves (an
attacker waiting out every lockout, from a fresh address each guess, gets nowhere near 10,000
guesses in a day), and a real host with a real Moonlight client (lock, refusal of the right
PIN during the cool-down, the log, and pairing again afterwards).

The lockout only limits guessing online: phase 3 hands any client the host's secret, so one
failed attempt lets the PIN be tested offline (a preset PIN fell in well under a second). A
PIN typed per attempt is used once, so that is harmless; a preset PIN is kept, so the first
failure disarms it until `punktfunk pair` re-arms it. Checked with the attack itself: a real
host, a transcript captured over HTTP, the PIN recovered offline, and its use refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gs_client import (
    PairingClient,
    aes_ecb,
    parse_xml,
    pem_signature_value,
    shared_client_identity,
)
from gs_host import BASE_PORT, PUNKTFUNK, Host, drive
from punktfunk.gamestream.pairing import PairingCore
from punktfunk.gamestream.pins import PinBox
from punktfunk.gamestream.trust import TrustStore
from punktfunk.identity import HostIdentity, load_or_create
from punktfunk.pinlock import HOST, PinLock, seconds_for_guesses
from test_gs_pairing import Clock

DAY_S = 24 * 3600.0
PIN = "4321"


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> HostIdentity:
    return load_or_create(tmp_path_factory.mktemp("host"))


def _guess(core: PairingCore, pin: str, unique_id: str, address: str, host_pin: str = PIN) -> bool:
    """One Moonlight-style attempt: phases 1-3, then /unpair if phase 3 shows a wrong PIN
    (the point from which a client can tell its guess), else phase 4. True when paired."""
    client = PairingClient(shared_client_identity(0), pin, unique_id=unique_id)
    reply = core.get_server_cert(unique_id, client.phase1_params(), host_pin, address)
    if reply["paired"] != "1":
        return False
    client.on_phase1(reply)
    client.on_phase2(core.handle(unique_id, client.phase2_params(), address))
    _, pin_ok = client.on_phase3(core.handle(unique_id, client.phase3_params(), address))
    if not pin_ok:
        core.cancel(unique_id, address)
        return False
    return core.handle(unique_id, client.phase4_params(), address) == {"paired": "1"}


Send = Callable[[dict[str, str]], dict[str, str]]


def _core_send(core: PairingCore, host_pin: str, address: str) -> Send:
    """The pairing requests of one client, handed to the core as nvhttp would."""

    def send(params: dict[str, str]) -> dict[str, str]:
        if params.get("phrase") == "getservercert":
            return core.get_server_cert(params["uniqueid"], params, host_pin, address)
        return core.handle(params["uniqueid"], params, address)

    return send


def _failed_attempt(send: Send, cancel: Callable[[str], object]) -> tuple[PairingClient, bytes]:
    """An attacker's one wrong guess, as Moonlight runs it (phases 1-3, then /unpair): what
    it keeps is its own side of the exchange and the phase-2 challengeresponse."""
    client = PairingClient(shared_client_identity(1), "0000", unique_id="attacker")
    client.on_phase1(send(client.phase1_params()))
    reply = send(client.phase2_params())
    client.on_phase2(reply)
    _, pin_ok = client.on_phase3(send(client.phase3_params()))  # hands over the host's secret
    assert not pin_ok
    cancel(client.unique_id)
    return client, bytes.fromhex(reply["challengeresponse"])


def _crack(client: PairingClient, challenge_response: bytes) -> list[str]:
    """Every 4-digit PIN the host's phase-2 reply is consistent with: the host decrypted the
    attacker's challenge with the PIN's key and hashed it with the secret phase 3 revealed."""
    sent = aes_ecb(client.key, client.random_challenge, True)
    host_signature = pem_signature_value(client.server_cert_pem)
    found = []
    for n in range(10_000):
        pin = f"{n:04d}"
        key = hashlib.sha256(client.salt + pin.encode()).digest()[:16]
        challenge = aes_ecb(key, sent, False)
        digest = hashlib.sha256(challenge + host_signature + client.server_secret).digest()
        if aes_ecb(key, challenge_response, False)[:32] == digest:
            found.append(pin)
    return found


def test_one_failed_attempt_gives_a_kept_pin_away_offline(
    identity: HostIdentity, tmp_path: Path
) -> None:
    """Why a preset PIN must not outlive a failure: the lockout cannot stop this search."""
    core = PairingCore(identity, TrustStore(tmp_path / "clients"), clock=Clock())
    send = _core_send(core, "7351", "10.0.0.66")
    client, response = _failed_attempt(send, lambda uid: core.cancel(uid, "10.0.0.66"))
    assert _crack(client, response) == ["7351"]


def test_a_failed_attempt_disarms_the_preset_pin_and_the_attempts_it_opened(
    identity: HostIdentity, tmp_path: Path
) -> None:
    pins = PinBox(PIN)
    core = PairingCore(identity, TrustStore(tmp_path / "clients"), clock=Clock(), pins=pins)
    preset = pins.wait_for_pin("x", "attacker")
    assert preset == PIN
    # The attacker opens a second attempt first, to finish it with the PIN it will recover.
    early = PairingClient(shared_client_identity(0), PIN, unique_id="early")
    early.on_phase1(core.get_server_cert("early", early.phase1_params(), preset, "10.0.0.66"))
    send = _core_send(core, preset, "10.0.0.66")
    client, response = _failed_attempt(send, lambda uid: core.cancel(uid, "10.0.0.66"))
    assert _crack(client, response) == [PIN]
    assert core.handle("early", early.phase2_params(), "10.0.0.66") == {"paired": "0"}
    # Disarmed for everyone, the owner too, until `punktfunk pair` re-arms it (a new PIN).
    assert pins.wait_for_pin("y", "owner") is None
    assert "disarmed" in (core.refusal("owner", "10.0.0.7") or "")
    assert not _guess(core, PIN, "owner", "10.0.0.7")
    assert "kept" in pins.submit("2468")
    assert pins.wait_for_pin("y", "owner") == "2468"
    assert _guess(core, "2468", "owner", "10.0.0.7", host_pin="2468")
    assert _guess(core, "2468", "owner2", "10.0.0.8", host_pin="2468")  # kept, not single-use


def test_a_day_of_guessing_at_the_enforced_rate_is_far_from_10000_guesses(
    identity: HostIdentity, tmp_path: Path
) -> None:
    clock = Clock()
    core = PairingCore(identity, TrustStore(tmp_path / "clients"), clock=clock)
    start, guesses = clock.now, 0
    while clock.now - start < DAY_S:
        address = f"10.0.{guesses // 250}.{guesses % 250}"  # a new address every guess
        wait = core.lock.remaining((HOST, f"ip:{address}"), clock.now)
        if wait > 0:
            clock.now += wait  # the attacker waits out every lockout, and not a second more
            continue
        assert core.refusal(str(guesses), address) is None
        assert not _guess(core, f"{guesses:04d}" if guesses != 4321 else "0000", "x", address)
        guesses += 1
    assert guesses < 100, guesses  # at this rate 10,000 guesses take about 139 days
    assert seconds_for_guesses(core.lock, 10_000) > 100 * DAY_S


def test_three_wrong_pins_lock_the_right_one_out_until_the_cool_down_ends(
    identity: HostIdentity, tmp_path: Path
) -> None:
    clock = Clock()
    core = PairingCore(
        identity, TrustStore(tmp_path / "clients"), clock=clock, lock=PinLock(cooldown_s=30)
    )
    for _ in range(3):
        assert not _guess(core, "0000", "attacker", "10.0.0.66")
    assert not _guess(core, PIN, "owner", "10.0.0.7")  # the host is locked for everyone
    clock.now += 30
    assert _guess(core, PIN, "owner", "10.0.0.7")
    # The owner's success does not reset the attacker's address: its next lock is longer.
    for _ in range(3):
        assert not _guess(core, "0000", "attacker", "10.0.0.66")
    assert core.lock.remaining(("ip:10.0.0.66",), clock.now) == pytest.approx(60)


def test_garbage_before_a_challenge_costs_no_guess(identity: HostIdentity, tmp_path: Path) -> None:
    core = PairingCore(identity, TrustStore(tmp_path / "clients"), clock=Clock())
    for i in range(10):
        assert core.get_server_cert(f"u{i}", {"salt": "zz"}, PIN, "10.0.0.9") == {"paired": "0"}
    assert core.lock.strikes(HOST).failures == 0
    assert _guess(core, PIN, "owner", "10.0.0.9")


def test_cool_down_doubles_up_to_its_cap_and_is_forgiven_after_a_quiet_spell() -> None:
    lock = PinLock(cooldown_s=60, max_cooldown_s=3600)
    assert [lock.cooldown(n) for n in range(8)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    now = 0.0
    for _ in range(6):
        assert lock.fail(("k",), now) == 0 and lock.fail(("k",), now) == 0
        assert lock.fail(("k",), now) > 0
        now += lock.remaining(("k",), now)
    assert lock.strikes("k").lockouts == 6
    now += 3601
    lock.fail(("k",), now)
    assert lock.strikes("k").lockouts == 0  # forgiven: the next lock starts at 60 s again


def test_many_addresses_do_not_grow_the_table_without_bound() -> None:
    lock = PinLock(max_keys=100)
    for i in range(1000):
        lock.fail((HOST, f"ip:{i}"), float(i))
    assert len(lock._strikes) <= 101


# --- a real host and a real Moonlight client --------------------------------------------------

COOLDOWN_S = 20


def _punktfunk_pair(host: Host, pin: str) -> str:
    """`punktfunk pair PIN` as a person runs it next to the host (over its admin socket)."""
    tmp = host.state.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    env.update(PUNKTFUNK_STATE_DIR=str(host.state), PUNKTFUNK_CONFIG=str(tmp / "none.env"))
    out = subprocess.run(
        [str(PUNKTFUNK), "pair", pin], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _http_send(params: dict[str, str]) -> dict[str, str]:
    """One pairing request over the host's plain HTTP port, as Moonlight sends phases 1-4. The
    timeout is the deadline for a refusal: a host that waited for a PIN would miss it."""
    url = f"http://127.0.0.1:{BASE_PORT}/pair?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return parse_xml(reply.read()).fields


def _http_cancel(unique_id: str) -> None:
    url = f"http://127.0.0.1:{BASE_PORT}/unpair?uniqueid={unique_id}"
    with urllib.request.urlopen(url, timeout=30) as reply:
        reply.read()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    """A host without a preset PIN: the PIN is typed for each attempt."""
    h = Host(tmp_path, "--display", "pattern", "--pair-cooldown-s", str(COOLDOWN_S))
    yield h
    h.kill()


def test_moonlight_guessing_locks_pairing_logs_it_and_the_owner_pairs_after_the_cool_down(
    host: Host, tmp_path: Path
) -> None:
    for i in range(3):
        _punktfunk_pair(host, PIN)  # taken by the next client that pairs: the attacker
        result = drive(tmp_path / f"guess{i}", "--pin", f"000{i}", "--pair-only")
        assert result["paired"] is False, result
    locked_at = time.monotonic()
    log = host.log.read_text()
    failures = re.findall(r"pairing\.failed .*address=127\.0\.0\.1.*", log)
    assert len(failures) >= 3, log[-3000:]
    assert re.search(rf"pairing\.locked .*address=127\.0\.0\.1.*cooldown_s={COOLDOWN_S}", log)
    assert "pairing.pin_disarmed" not in log  # nothing kept to disarm: typed PINs are single-use
    # The right PIN during the cool-down is refused at once, with a reason in the log.
    owner = tmp_path / "owner"
    result = drive(owner, "--pin", PIN, "--pair-only")
    assert result["paired"] is False, result
    if time.monotonic() - locked_at < COOLDOWN_S:
        assert "locked after repeated wrong PINs" in host.log.read_text()
    assert host.status()["paired_clients"] == []
    time.sleep(max(0.0, COOLDOWN_S + 1 - (time.monotonic() - locked_at)))
    _punktfunk_pair(host, PIN)
    result = drive(owner, "--pin", PIN, "--pair-only")
    assert result.get("paired") is True, result
    assert "Desktop" in result["apps"]


def test_a_failed_attempt_disarms_the_preset_pin_until_punktfunk_pair_re_arms_it(
    tmp_path: Path,
) -> None:
    host = Host(tmp_path, "--pin", "7351", "--display", "pattern")
    try:
        startup = host.log.read_text()
        assert "pairing.preset_pin" in startup and "disarms the preset PIN" in startup
        # One wrong guess over the wire, and the attacker knows the preset PIN...
        client, response = _failed_attempt(_http_send, _http_cancel)
        assert _crack(client, response) == ["7351"]
        log = host.log.read_text()
        disarmed = re.findall(r"pairing\.pin_disarmed .*address=127\.0\.0\.1.*", log)
        assert len(disarmed) == 1 and "offline guessing" in disarmed[0], log[-3000:]
        # ...which is worth nothing now: phase 1 is refused at once, with the reason logged.
        thief = PairingClient(shared_client_identity(1), "7351", unique_id="thief")
        assert _http_send(thief.phase1_params())["paired"] == "0"
        assert "preset PIN was disarmed" in host.log.read_text()
        # The real Moonlight client with the right PIN is refused just the same.
        owner = tmp_path / "owner"
        assert drive(owner, "--pin", "7351", "--pair-only")["paired"] is False
        assert host.status()["paired_clients"] == []
        assert len(re.findall(r"pairing\.pin_disarmed", host.log.read_text())) == 1
        # Re-armed, with a new PIN (the old one may be known), pairing works again.
        assert "armed" in _punktfunk_pair(host, "2468")
        result = drive(owner, "--pin", "2468", "--pair-only")
        assert result.get("paired") is True, result
        assert "Desktop" in result["apps"]
    finally:
        host.kill()
