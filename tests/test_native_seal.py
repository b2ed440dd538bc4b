"""Media header, key schedule, sealing and the replay window (packet/v2.rs, crypto.rs,
session/seal.rs, session/replay.rs, quic/endpoint.rs)."""

import contextlib
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from punktfunk.native.wire.packet import MediaHeader, expand_seq, is_media
from punktfunk.native.wire.registry import (
    MEDIA_EXPORTER_LABEL,
    MEDIA_KEY_PACKETS,
    REPLAY_WINDOW,
    MediaStream,
    MediaSuite,
)
from punktfunk.native.wire.replay import ReplayWindow
from punktfunk.native.wire.seal import (
    MediaKeys,
    MediaOpener,
    MediaSealer,
    Role,
    media_exporter,
    media_nonce,
    packet_key,
    tls_exporter,
)

HEADER = MediaHeader(MediaStream.VIDEO, 0, 3, 0x8000 | 0x20, 9, 42_000, 1, 8, 2, 4, 2, 100)


def test_media_header_layout():
    # packet/v2.rs: tag u8 | seq u32 | epoch u8 | flags u16 | frame u32 | pts_us u32 |
    # block u16 | base u32 | shard u16 | k u16 | m u16 | pad u16, little-endian, 30 bytes.
    assert HEADER.pack(5).hex() == (
        "00" "05000000" "03" "2080" "09000000" "10a40000" "0100" "08000000" "0200" "0400"
        "0200" "6400"
    )  # fmt: skip
    assert MediaHeader.unpack(HEADER.pack()) == HEADER
    assert HEADER.last_block


def test_first_byte_demux_and_reserved_bits():
    probe = HEADER.pack()
    assert is_media(probe) and is_media(bytes([0x01]) + probe[1:])
    # QUIC long (11xxxxxx) and short (01xxxxxx) headers are not media; neither is 10xxxxxx.
    assert not any(is_media(bytes([b]) + probe[1:]) for b in (0xC0, 0x40, 0x80, 0xFF))
    assert not is_media(b"")
    # packet/v2.rs `probe_rides_its_own_stream_and_bad_tags_are_refused`.
    for tag in (0x02, 0x10, 0x40, 0xC0):
        assert MediaHeader.unpack(bytes([tag]) + probe[1:]) is None
    assert MediaHeader.unpack(probe[:29]) is None


def test_packet_numbers_expand_around_the_reference():
    # packet/v2.rs `packet_numbers_expand_around_the_reference`.
    assert expand_seq(0, 5) == 5
    assert expand_seq(0xFFFF_FFF0, 3) == 0x1_0000_0003
    assert expand_seq(0x1_0000_0003, 0xFFFF_FFF0) == 0xFFFF_FFF0
    assert expand_seq(3, 0xFFFF_FFF0) == 0xFFFF_FFF0


def _openssl_handshake(suite: bytes) -> tuple[str, bytes, object]:
    """An in-memory TLS 1.3 handshake: (cipher, EXPORTER_SECRET from the key log, client)."""
    ssl = pytest.importorskip("OpenSSL.SSL")
    from punktfunk.native.wire.quic import ClientIdentity

    ident = ClientIdentity.generate("exporter-test")
    log: list[bytes] = []
    contexts = []
    for server in (True, False):
        ctx = ssl.Context(ssl.TLS_METHOD)
        ctx.set_min_proto_version(ssl.TLS1_3_VERSION)
        ctx.set_tls13_ciphersuites(suite)
        ctx.set_keylog_callback(lambda _conn, line: log.append(line))
        if server:
            ctx.use_certificate(ident.cert)
            ctx.use_privatekey(ident.key)
        contexts.append(ctx)
    srv, cli = ssl.Connection(contexts[0]), ssl.Connection(contexts[1])
    srv.set_accept_state()
    cli.set_connect_state()
    for _ in range(6):
        for a, b in ((cli, srv), (srv, cli)):
            with contextlib.suppress(ssl.WantReadError):
                a.do_handshake()
            with contextlib.suppress(ssl.WantReadError):
                b.bio_write(a.bio_read(1 << 16))
    secret = next(x for x in log if x.startswith(b"EXPORTER_SECRET")).split()[2]
    return cli.get_cipher_name(), bytes.fromhex(secret.decode()), cli


@pytest.mark.parametrize(
    ("suite", "hash_name"),
    [(b"TLS_AES_128_GCM_SHA256", "sha256"), (b"TLS_AES_256_GCM_SHA384", "sha384")],
)
def test_tls_exporter_matches_openssl(suite, hash_name):
    # RFC 8446 §7.5 against OpenSSL's SSL_export_keying_material, fed OpenSSL's own
    # exporter master secret from its key log.
    cipher, secret, cli = _openssl_handshake(suite)
    assert cipher == suite.decode()
    session_id = bytes(range(16))
    ours = tls_exporter(secret, hash_name, MEDIA_EXPORTER_LABEL, session_id, 32)
    assert ours == cli.export_keying_material(MEDIA_EXPORTER_LABEL, 32, session_id)


def test_key_schedule_golden():
    # quic/endpoint.rs `media_keys`: 32 exporter bytes, label EXPORTER-punktfunk/2 media,
    # context = the session id. Fixed exporter master secret (SHA-384 suite) for the golden.
    exporter = media_exporter(bytes(range(48)), "sha384", bytes(range(16)))
    assert exporter.hex() == "3182ac600578e471a4778bb9a98e037aff1545908aa8a07a0e8faa65ee373d65"
    assert media_exporter(bytes(range(32)), "sha256", bytes(16)).hex() == (
        "1cf07cb166bd5353ebd2a656dafafec33fd633d8afb90d477e8664d5fcd66baf"
    )
    # crypto.rs `MediaKeys::derive`: HMAC-SHA256(exporter, "pf2 media h2c" | 0x01).
    keys = MediaKeys.derive(exporter, MediaSuite.AES_128_GCM)
    assert keys.host_to_client.hex() == (
        "ea949f54d5c48043aa92ecdbfb6a7e47d3ff4000f8864a35ca9c989cd2df0287"
    )
    assert keys.client_to_host.hex() == (
        "a9e596883e32e7f629cf24c374bfd0949e578ec993f11b3014c8240a57513e07"
    )
    assert keys.host_to_client == hmac.digest(exporter, b"pf2 media h2c\x01", "sha256")
    # crypto.rs `MediaDir::key`: key = expand(secret, "pf2 key" | index BE u64)[..16 or 32],
    # iv = expand(secret, "pf2 iv" | index BE u64)[..12].
    key0, iv0 = packet_key(keys.host_to_client, MediaSuite.AES_128_GCM, 0)
    assert key0.hex() == "4d81709432348b762eddb7c3d94b34a5"
    assert iv0.hex() == "3ea20d3f534b221303103a1c"
    key1, iv1 = packet_key(keys.host_to_client, MediaSuite.AES_128_GCM, 1)
    assert key1.hex() == "6973fbb9e40a5e4476556074ea8bc114"
    assert iv1.hex() == "dccd73d488b2ef72bebb8fbb"
    idx1 = (1).to_bytes(8, "big")
    assert iv1 == hmac.digest(keys.host_to_client, b"pf2 iv" + idx1 + b"\x01", "sha256")[:12]
    chacha, _ = packet_key(keys.host_to_client, MediaSuite.CHACHA20_POLY1305, 0)
    assert len(chacha) == 32 and chacha[:16] == key0
    # crypto.rs `media_nonce`: iv XOR (0u32 | seq BE u64).
    assert media_nonce(iv0, 0).hex() == "3ea20d3f534b221303103a1c"
    assert media_nonce(iv0, 1).hex() == "3ea20d3f534b221303103a1d"
    assert media_nonce(iv0, 0x0102030405060708).hex() == "3ea20d3f5249211706163d14"


def test_sealed_packet_golden_and_layout():
    keys = MediaKeys.derive(bytes(32), MediaSuite.AES_128_GCM)
    sealer = MediaSealer(keys, Role.HOST)
    wire = sealer.seal(HEADER, b"shard")
    # Clear prefix (tag, seq 0) is the AAD; the rest of the header and the shard are sealed.
    key, iv = packet_key(keys.host_to_client, MediaSuite.AES_128_GCM, 0)
    plain = HEADER.pack(0)
    expect = plain[:5] + AESGCM(key).encrypt(media_nonce(iv, 0), plain[5:] + b"shard", plain[:5])
    assert wire == expect and len(wire) == 30 + 5 + 16
    assert sealer.next_seq == 1


@pytest.mark.parametrize("suite", list(MediaSuite))
def test_directions_tamper_replay_and_key_change(suite):
    keys = MediaKeys.derive(hashlib.sha256(b"x").digest(), suite)
    assert keys.host_to_client != keys.client_to_host
    sealer = MediaSealer(keys, Role.HOST, first_seq=MEDIA_KEY_PACKETS - 2)
    client, host_rx = MediaOpener(keys, Role.CLIENT), MediaOpener(keys, Role.HOST)
    wires = [sealer.seal(HEADER, bytes([i]) * 64) for i in range(4)]  # straddles index 0 -> 1
    assert host_rx.open(wires[0]) is None  # a host never opens its own direction
    tampered = bytearray(wires[1])
    tampered[0] = MediaStream.PROBE
    assert client.open(bytes(tampered)) is None
    for i, w in enumerate(wires):
        header, seq, shard = client.open(w)
        assert (seq, shard, header.frame) == (MEDIA_KEY_PACKETS - 2 + i, bytes([i]) * 64, 9)
    assert client.open(wires[2]) is None  # replayed
    assert (client.stats.opened, client.stats.forged, client.stats.replayed) == (4, 1, 1)


def test_stale_and_far_future_packets_are_dropped_before_decryption():
    keys = MediaKeys.derive(bytes(32), MediaSuite.AES_128_GCM)
    client = MediaOpener(keys, Role.CLIENT)
    sealer = MediaSealer(keys, Role.HOST, first_seq=2 * MEDIA_KEY_PACKETS + 5)
    assert client.open(sealer.seal(HEADER, b"x")) is None  # two key indices ahead of 0
    assert client.stats.stale == 1


# session/replay.rs @ 38d3248 tests.
def test_replay_accepts_in_order_and_rejects_duplicates():
    w = ReplayWindow()
    assert all(w.accept(s) for s in range(1000))
    assert not any(w.accept(s) for s in range(1000))


def test_replay_reorder_within_window_once():
    w = ReplayWindow()
    assert w.accept(100) and w.accept(80)
    assert not w.accept(80)
    assert w.accept(99) and not w.accept(100)


def test_replay_rejects_older_than_window():
    w = ReplayWindow()
    assert w.accept(REPLAY_WINDOW * 2)
    assert not w.accept(REPLAY_WINDOW) and not w.accept(0)
    assert w.accept(REPLAY_WINDOW * 2 - (REPLAY_WINDOW - 1))


def test_replay_large_forward_jump_wipes_stale_bits():
    w = ReplayWindow()
    assert w.accept(5)
    far = 10 * REPLAY_WINDOW + 5
    assert w.accept(far) and not w.accept(5)
    assert w.accept(far - REPLAY_WINDOW + 1)


def test_replay_in_window_jump_clears_only_slid_in_slots():
    w = ReplayWindow()
    for s in (0, 1, 63, 64, 100, 4000):
        assert w.accept(s)
    hi = REPLAY_WINDOW - 1
    assert w.accept(hi) and w.accept(50_000) and not w.accept(50_000)
    assert not any(w.accept(s) for s in (1, 63, 64, 100, 4000))
    assert not w.accept(hi)
    # Sliding forward frees the slots the previous lap used (0, 1, 63, 64... sat there).
    assert w.accept(REPLAY_WINDOW + 7) and w.accept(REPLAY_WINDOW + 49_999)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3 * REPLAY_WINDOW), min_size=1, max_size=60))
def test_replay_window_matches_a_plain_model(seqs):
    w, seen, highest = ReplayWindow(), set(), None
    for s in seqs:
        fresh = highest is None or (s not in seen and highest - s < REPLAY_WINDOW)
        assert w.accept(s) == fresh, s
        if fresh:
            seen.add(s)
            highest = s if highest is None else max(highest, s)


def test_replay_first_seq_need_not_be_zero_and_plausibility():
    w = ReplayWindow()
    assert w.reference() == 0 and w.plausible(MEDIA_KEY_PACKETS + 9)
    assert not w.plausible(2 * MEDIA_KEY_PACKETS)
    assert w.accept(42) and not w.accept(42) and w.accept(43)
    assert w.reference() == 43
