"""Requests a Rust client makes that our host answered with silence before (issue 12, item 4).

In memory (host core against client core, the `test_native_core` network): an access check
closes with 0x72, a management or transfer stream is stopped with the registry's code while
the control stream goes on, a registered message we do not act on is counted, not fatal.
End to end (`punktfunk serve`, pattern display, an in-process client): a speed-test request
is answered with filler and its ProbeResult, a client without VIDEO_CAP_PROBE_SEQ is declined,
a probe-only dial opens no monitor, an access check closes with 0x72.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from punktfunk.native.client.client import ClientConnection
from punktfunk.native.client.dial import client_socket, flush, pair, pump
from punktfunk.native.client.probe import ClientStore, client_hello
from punktfunk.native.wire.core import Closed, HelloReceived, MessageReceived, SessionStarted
from punktfunk.native.wire.hello import ClientHello, ServerHello
from punktfunk.native.wire.messages import Mode, ProbeRequest, ProbeResult
from punktfunk.native.wire.registry import (
    CloseCode,
    MediaStream,
    MsgType,
    StreamType,
    UserFlag,
    VideoCap,
)
from punktfunk.native.wire.seal import MediaOpener, Role
from punktfunk.native.wire.tlv import encode_varint, frame
from test_native_core import HELLO, client_identity, drain, host_identity, make_net, session
from test_native_stream import PIN, NativeHost

__all__ = ["client_identity", "host_identity"]  # the fixtures this module borrows


def test_an_access_check_closes_with_access_granted_and_opens_no_session(
    host_identity, client_identity
):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity, hello=replace(HELLO, access_only=True))
    net.run()
    assert net.host(HelloReceived) == []  # no session, so no monitor
    closed = [e for e in drain(client) if isinstance(e, Closed)]
    assert [c.code for c in closed] == [CloseCode.ACCESS_GRANTED], closed


def test_an_access_check_from_an_unpaired_device_is_denied(host_identity, client_identity):
    net = make_net(host_identity)
    client = session(net, host_identity, client_identity, hello=replace(HELLO, access_only=True))
    net.run()
    closed = [e for e in drain(client) if isinstance(e, Closed)]
    assert [c.code for c in closed] == [CloseCode.PAIR_DENIED]


class _ManagementFirst(ClientConnection):
    """A client that opens a management stream (type 3) before its control stream."""

    def _on_handshake(self, now: float) -> None:
        sid = self.quic.get_next_available_stream_id()
        self.quic.send_stream_data(sid, encode_varint(StreamType.MANAGEMENT) + b"GET /")
        super()._on_handshake(now)


def test_a_management_stream_is_stopped_and_the_session_still_opens(host_identity, client_identity):
    from punktfunk.native.wire.quic import fingerprint

    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = net.dial(
        _ManagementFirst(client_identity, now=net.now, hello=HELLO,
                         host_fp=fingerprint(host_identity.cert), wall_ns=net.wall_ns)
    )  # fmt: skip
    net.run()
    ((conn, hello_ev),) = net.host(HelloReceived)
    assert hello_ev.hello == HELLO
    assert conn.stopped_streams == {StreamType.MANAGEMENT: 1}
    assert conn.closed is None and client.closed is None


def test_a_transfer_stream_is_cancelled_and_unmodeled_messages_are_counted(
    host_identity, client_identity
):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    ((conn, _),) = net.host(HelloReceived)
    conn.accept(ServerHello(mode=HELLO.mode))
    net.run()
    client.ready()
    sid = client.quic.get_next_available_stream_id()
    client.quic.send_stream_data(sid, encode_varint(StreamType.TRANSFER) + b"\x43\x00")
    # A pad's identity and a clipboard offer: registered, not granted, not acted on.
    client.send_frame(frame(MsgType.PAD_IDENTITY, b""))
    client.send_frame(frame(MsgType.CLIP_OFFER, b""))
    client.send_frame(frame(MsgType.PAD_IDENTITY, b""))
    net.run()
    assert conn.stopped_streams == {StreamType.TRANSFER: 1}
    assert conn.unhandled == {MsgType.PAD_IDENTITY: 2, MsgType.CLIP_OFFER: 1}
    assert conn.closed is None and client.closed is None and conn.streaming


# --- end to end: `punktfunk serve` (pattern display) and an in-process client ---------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHost]:
    h = NativeHost(tmp_path_factory.mktemp("requests"))
    yield h
    if h.proc.poll() is None:
        assert h.stop() == 0


@dataclass
class Dialled:
    server_hello: ServerHello | None = None
    results: list[ProbeResult] = field(default_factory=list)
    closed: Closed | None = None
    probe_bytes: int = 0  # filler bytes of probe-space packets that opened
    probe_frames: set[int] = field(default_factory=set)
    video_packets: int = 0


def _dial(host: NativeHost, hello: ClientHello, probes: list[ProbeRequest], name: str) -> Dialled:
    """Pair (once per name), dial with `hello`, send `probes` after Ready and wait for as many
    ProbeResults (or the close)."""
    store = ClientStore(host.tmp / f"{name}-client")
    addr = ("127.0.0.1", host.port)
    host_fp = pair(addr, store.identity, PIN, name)
    conn = ClientConnection(store.identity, now=time.monotonic(), hello=hello, host_fp=host_fp)
    sock = client_socket()
    out = Dialled()
    opener: list[MediaOpener] = []

    def on_media(data: bytes) -> None:
        opened = opener[0].open(data) if opener else None
        if opened is None:
            return
        header, _, shard = opened
        if header.stream == MediaStream.PROBE and header.flags & UserFlag.PROBE:
            out.probe_bytes += len(shard) - (header.pad if header.last_block else 0)
            out.probe_frames.add(header.frame)
        else:
            out.video_packets += 1

    def until() -> bool:
        while (ev := conn.next_event()) is not None:
            match ev:
                case SessionStarted():
                    out.server_hello = ev.hello
                    opener.append(MediaOpener(ev.keys, Role.CLIENT))
                    conn.ready()
                    for req in probes:
                        conn.send(req)
                case MessageReceived(message=ProbeResult() as result):
                    out.results.append(result)
                case Closed():
                    out.closed = ev
        return out.closed is not None or (bool(probes) and len(out.results) == len(probes))

    try:
        conn.connect(addr, time.monotonic())
        pump(conn, sock, addr, until, time.monotonic() + 60, on_media)
        if out.closed is None:
            conn.close(0, "probe done")
            flush(conn, sock)
    finally:
        sock.close()
    return out


def test_a_probe_request_is_answered_with_filler_at_the_asked_rate(served: NativeHost) -> None:
    hello = replace(client_hello(Mode(640, 480, 30), "prober"), video_caps=VideoCap.PROBE_SEQ)
    got = _dial(served, hello, [ProbeRequest(target_kbps=10_000, duration_ms=600)], "prober")
    assert got.closed is None, got.closed
    (result,) = got.results
    # 10 Mbit/s for 0.6 s is 750 kB, in ~240 AUs a second of 5.2 kB (stream.rs sizing).
    assert 600_000 <= result.bytes_sent <= 800_000, result
    assert result.duration_ms >= 550 and 100 <= result.packets_sent <= 160, result
    assert result.wire_packets_sent + result.send_dropped > result.packets_sent
    # Sealed under the session key in the probe index space; a small loopback receive buffer
    # may drop some of it, so only most of it is asked for.
    assert len(got.probe_frames) >= 0.5 * result.packets_sent, (got.probe_frames, result)
    assert got.probe_bytes >= 0.5 * result.bytes_sent, (got.probe_bytes, result)
    assert got.video_packets > 0  # the stream flowed beside the burst
    sh = got.server_hello
    assert sh is not None and sh.audio_frame_us == 0  # Opus: 0, as handshake.rs announces it
    assert sh.fec_percent == 50  # the most parity we will ever send (an IDR at the band's top)
    assert "session.probe " in served.text()


def test_a_client_without_probe_seq_gets_a_decline(served: NativeHost) -> None:
    hello = client_hello(Mode(640, 480, 30), "old-prober")  # no VIDEO_CAP_PROBE_SEQ
    got = _dial(served, hello, [ProbeRequest(target_kbps=40_000, duration_ms=300)], "old-prober")
    assert got.results == [ProbeResult()] and got.probe_bytes == 0


def test_a_probe_only_dial_measures_the_link_and_opens_no_monitor(served: NativeHost) -> None:
    before = len(served.text())
    hello = replace(
        client_hello(Mode(1280, 720, 60), "diagnostic"),
        video_caps=VideoCap.PROBE_SEQ,
        probe_only=True,
    )
    probes = [ProbeRequest(target_kbps=20_000, duration_ms=300)] * 2
    got = _dial(served, hello, probes, "diagnostic")
    assert got.server_hello is not None and got.closed is None
    assert [r.bytes_sent > 0 for r in got.results] == [True, True], got.results
    assert got.video_packets == 0 and got.probe_bytes > 0
    deadline = time.monotonic() + 10
    while "probe done" not in served.text()[before:] and time.monotonic() < deadline:
        time.sleep(0.1)
    log = served.text()[before:]
    assert "session.probe_only" in log and "probe done" in log
    assert "session.plan" not in log and "lease_monitor" not in log, log


def test_an_access_check_against_a_real_host_closes_with_0x72(served: NativeHost) -> None:
    before = len(served.text())
    hello = replace(client_hello(Mode(640, 480, 30), "checker"), access_only=True)
    got = _dial(served, hello, [], "checker")
    assert got.server_hello is None and got.closed is not None
    assert got.closed.code == CloseCode.ACCESS_GRANTED, got.closed
    assert "native.access_checked" in served.text()[before:]
    assert "lease_monitor" not in served.text()[before:]


def test_burst_pacing_clamps_and_shapes_as_stream_rs() -> None:
    from punktfunk.native.host.probeburst import MAX_PROBE_KBPS, BurstPlan, run_burst

    assert BurstPlan.begin(ProbeRequest(target_kbps=1000, duration_ms=100), False) is None
    assert BurstPlan.begin(ProbeRequest(target_kbps=0, duration_ms=100), True) is None
    huge = BurstPlan.begin(ProbeRequest(target_kbps=2**32 - 1, duration_ms=60_000), True)
    assert huge is not None and (huge.target_kbps, huge.duration_s) == (MAX_PROBE_KBPS, 5.0)
    assert huge.chunk == 16 * 1024
    smooth = BurstPlan.begin(ProbeRequest(target_kbps=8000, duration_ms=1000), True)
    assert smooth is not None and smooth.chunk == 4166
    assert smooth.allowed_bytes(0.5) == 500_000 and smooth.allowed_bytes(9) == 1_000_000
    # Shaped at 10 Hz: each period's 100 kB is owed as the period starts.
    shaped = BurstPlan.begin(ProbeRequest(target_kbps=8000, duration_ms=1000, burst_hz=10), True)
    assert shaped is not None
    assert [shaped.allowed_bytes(t) for t in (0.0, 0.05, 0.1, 0.95)] == [
        100_000, 100_000, 200_000, 1_000_000
    ]  # fmt: skip
    # A simulated clock: the whole budget leaves, and the result reports what happened.
    now = [0.0]
    sent: list[int] = []

    def send(data: bytes) -> tuple[int, int]:
        sent.append(len(data))
        return 4, 1

    def clock() -> float:
        now[0] += 0.0005  # each look at the clock costs simulated time
        return now[0]

    result = run_burst(smooth, send, threading.Event(), clock=clock)
    assert result.bytes_sent == sum(sent) and result.packets_sent == len(sent)
    assert 1_000_000 <= result.bytes_sent <= 1_000_000 + smooth.chunk
    assert (result.wire_packets_sent, result.send_dropped) == (3 * len(sent), len(sent))


def test_hdr_needs_both_capability_bits_and_the_ask_counter_wraps() -> None:
    from punktfunk.encode.base import Codec as EncCodec
    from punktfunk.native.host.negotiate import hdr_granted, newer_ask
    from punktfunk.native.wire.hello import HdrMeta

    hdr_codecs = frozenset({EncCodec.HEVC})
    both = VideoCap.HDR | VideoCap.TEN_BIT
    volume = HdrMeta.__new__(HdrMeta)  # the display's HDR volume alone grants nothing
    assert not hdr_granted(replace(HELLO, display_hdr=volume), EncCodec.HEVC, hdr_codecs)
    assert not hdr_granted(replace(HELLO, video_caps=VideoCap.HDR), EncCodec.HEVC, hdr_codecs)
    assert not hdr_granted(replace(HELLO, video_caps=both), EncCodec.H264, hdr_codecs)
    assert hdr_granted(replace(HELLO, video_caps=both), EncCodec.HEVC, hdr_codecs)
    assert newer_ask(1, 0) and newer_ask(2, 1) and not newer_ask(1, 1) and not newer_ask(0, 5)
    assert newer_ask(3, 0xFFFE) and not newer_ask(0xFFFE, 3)  # across the 16-bit wrap


def test_host_timing_stamps_the_frames_wire_timestamp_in_whole_microseconds() -> None:
    from punktfunk.native.host.negotiate import timing_pts_ns

    wall, mono, capture = 1_700_000_000_123_456_789, 5_000_000_000, 5_016_667_891
    wire_us = (capture - mono) // 1000  # what the media header's pts_us carries
    assert wire_us == 16_667
    assert timing_pts_ns(wall, mono, capture) == wall + wire_us * 1000
