"""Host core against client core in memory: QUIC + TLS 1.3 through aioquic, no sockets."""

from dataclasses import dataclass, field

import pytest

from punktfunk.identity import load_or_create
from punktfunk.native.client.client import ClientConnection
from punktfunk.native.host.host import HostConnection, HostState
from punktfunk.native.host.router import HostRouter
from punktfunk.native.wire import dgram
from punktfunk.native.wire.core import (
    ClockSynced,
    Closed,
    Connected,
    DatagramReceived,
    HelloReceived,
    MessageReceived,
    PairingFinished,
    PairingRequested,
    ReadyReceived,
    SessionStarted,
)
from punktfunk.native.wire.hello import ClientHello, ServerHello
from punktfunk.native.wire.messages import ClockProbe, Mode, Reconfigure, Reconfigured
from punktfunk.native.wire.packet import MediaHeader
from punktfunk.native.wire.pake import PairingGate
from punktfunk.native.wire.quic import ClientIdentity, fingerprint
from punktfunk.native.wire.registry import (
    CLOSE_ABORT,
    CLOSE_OK,
    CloseCode,
    MediaStream,
    MediaSuite,
    MsgType,
)
from punktfunk.native.wire.seal import MediaOpener, MediaSealer, Role
from punktfunk.native.wire.tlv import encode_varint

HOST_ADDR = ("192.0.2.1", 9777)
SKEW_NS = 5_000_000  # the host's wall clock runs 5 ms ahead of the client's
HELLO = ClientHello(mode=Mode(1280, 720, 60), suites=(MediaSuite.AES_128_GCM,), name="probe")


@pytest.fixture(scope="module")
def host_identity(tmp_path_factory):
    return load_or_create(tmp_path_factory.mktemp("host"))


@pytest.fixture(scope="module")
def client_identity():
    return ClientIdentity.generate()


@dataclass
class Net:
    """A lossless zero-latency network and a simulated clock shared by every endpoint."""

    router: HostRouter
    now: float = 1000.0
    clients: dict[tuple[str, int], ClientConnection] = field(default_factory=dict)
    host_events: list = field(default_factory=list)

    def wall_ns(self) -> int:
        return int(self.now * 1e9)

    def dial(self, client: ClientConnection) -> ClientConnection:
        addr = ("198.51.100.7", 40000 + len(self.clients))
        self.clients[addr] = client
        client.connect(HOST_ADDR, self.now)
        return client

    def run(self, seconds: float = 1.0) -> None:
        end = self.now + seconds
        while True:
            moved = False
            for addr, client in self.clients.items():
                for data, _ in client.datagrams_to_send(self.now):
                    self.router.receive_datagram(data, addr, self.now)
                    moved = True
            for data, addr in self.router.datagrams_to_send(self.now):
                self.clients[addr].receive_datagram(data, HOST_ADDR, self.now)
                moved = True
            self.host_events += list(self.router.events())
            if moved:
                continue
            timers = [c.get_timer() for c in self.clients.values()] + [self.router.get_timer()]
            pending = [t for t in timers if t is not None]
            if not pending or min(pending) > end:
                self.now = end
                return
            due = min(pending)
            self.now = max(self.now, due)
            for client in self.clients.values():
                timer = client.get_timer()
                if timer is not None and timer <= self.now:
                    client.handle_timer(self.now)
            self.router.handle_timer(self.now)

    def host(self, kind):
        return [(c, e) for c, e in self.host_events if isinstance(e, kind)]


def drain(client: ClientConnection) -> list:
    out = []
    while (ev := client.next_event()) is not None:
        out.append(ev)
    return out


def make_net(host_identity, gate=None, paired=()):
    known = set(paired)
    net = Net(HostRouter(host_identity, gate or PairingGate(), known.__contains__))
    net.router._wall_ns = lambda: net.wall_ns() + SKEW_NS
    return net


def session(net, host_identity, identity, hello=HELLO, host_fp=None):
    client = ClientConnection(
        identity, now=net.now, hello=hello, host_fp=host_fp or fingerprint(host_identity.cert),
        wall_ns=net.wall_ns,
    )  # fmt: skip
    return net.dial(client)


def test_hello_server_hello_ready_and_media_keys(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    (conn, hello_ev), = net.host(HelloReceived)  # fmt: skip
    assert hello_ev.hello == HELLO and hello_ev.fingerprint == client_identity.fingerprint
    assert [e.fingerprint for _, e in net.host(Connected)] == [client_identity.fingerprint]
    keys = conn.accept(ServerHello(mode=HELLO.mode, suite=MediaSuite.AES_128_GCM))
    net.run()
    events = drain(client)
    assert events[0] == Connected(fingerprint(host_identity.cert))
    started = next(e for e in events if isinstance(e, SessionStarted))
    assert started.hello == conn.server_hello and started.keys == keys is not None
    assert conn.server_hello.session_id != bytes(16)
    assert not conn.streaming
    client.ready()
    net.run()
    assert len(net.host(ReadyReceived)) == 1 and conn.streaming
    assert conn.peer_address == next(iter(net.clients))  # where media goes
    # Media sealed with the host's keys opens with the client's, through the TLS exporter.
    header = MediaHeader(MediaStream.VIDEO, 0, 0, 0x8000, 1, 0, 0, 0, 0, 1, 0, 0)
    wire = MediaSealer(keys, Role.HOST).seal(header, b"frame")
    assert MediaOpener(client.keys, Role.CLIENT).open(wire)[2] == b"frame"


def test_control_traffic_datagrams_and_clock_sync(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    (conn, _), = net.host(HelloReceived)  # fmt: skip
    conn.accept(ServerHello(mode=HELLO.mode))
    net.run()
    client.ready()
    client.send(Reconfigure(Mode(1920, 1080, 60)))
    client.send_datagram(dgram.Feedback(window=1, loss_ppm=20_000).encode())
    client.send_datagram(dgram.encode_clock_probe(ClockProbe(net.wall_ns())))
    client.send_datagram(b"\x3f\x00")  # an unknown kind: dropped and counted
    client.sync_clock()
    net.run()
    got = [e.message for _, e in net.host(MessageReceived)]
    assert got == [Reconfigure(Mode(1920, 1080, 60))]
    assert [e.datagram for _, e in net.host(DatagramReceived)] == [dgram.Feedback(1, 20_000)]
    assert conn.dropped_datagrams == 1
    conn.send(Reconfigured(True, Mode(1920, 1080, 60)))
    net.run()
    events = drain(client)
    (synced,) = [e for e in events if isinstance(e, ClockSynced)]
    assert (synced.skew.offset_ns, synced.skew.rtt_ns, synced.skew.rounds) == (SKEW_NS, 0, 8)
    echoes = [e.datagram for e in events if isinstance(e, DatagramReceived)]
    assert echoes[0].t2_ns - echoes[0].t1_ns == SKEW_NS  # the host answered the datagram
    assert MessageReceived(Reconfigured(True, Mode(1920, 1080, 60))) in events
    assert client.closed is None and conn.closed is None


def test_pairing_with_the_right_pin(host_identity, client_identity):
    gate = PairingGate(pin="4321")
    net = make_net(host_identity, gate)
    client = net.dial(ClientConnection.pairing(client_identity, "4321", "couch", now=net.now))
    net.run()
    (_, requested), = net.host(PairingRequested)  # fmt: skip
    assert requested == PairingRequested("couch", client_identity.fingerprint)
    (_, done), = net.host(PairingFinished)  # fmt: skip
    assert done == PairingFinished(True, "couch", client_identity.fingerprint)
    events = drain(client)
    assert PairingFinished(True, "", fingerprint(host_identity.cert)) in events
    assert Closed(CLOSE_OK, "pair done", by_peer=False) in events
    assert [e for _, e in net.host(Closed)] == [Closed(CLOSE_OK, "pair done", by_peer=True)]


def test_three_wrong_pins_lock_pairing(host_identity, client_identity):
    gate = PairingGate(pin="4321", cooldown_s=120.0)
    net = make_net(host_identity, gate)
    for _ in range(3):
        client = net.dial(ClientConnection.pairing(client_identity, "0000", "x", now=net.now))
        net.run()
        events = drain(client)
        assert PairingFinished(False, "", fingerprint(host_identity.cert)) in events
        assert events[-1].code == CLOSE_ABORT  # the client saw the wrong PIN and hung up
    assert not net.host(PairingFinished) and gate.failures == 0 and gate.locked_until > net.now
    right = net.dial(ClientConnection.pairing(client_identity, "4321", "x", now=net.now))
    net.run()
    closed = drain(right)[-1]
    assert closed == Closed(
        CloseCode.PAIR_RATE_LIMITED,
        "pairing is locked after repeated wrong PINs; retry after the cool-down",
        by_peer=True,
    )
    net.run(seconds=120.0)
    again = net.dial(ClientConnection.pairing(client_identity, "4321", "x", now=net.now))
    net.run()
    assert PairingFinished(True, "", fingerprint(host_identity.cert)) in drain(again)


def test_unpaired_and_other_key_clients_are_refused_before_any_key(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    stranger = session(net, host_identity, ClientIdentity.generate())
    net.run()
    events = drain(stranger)
    assert events[-1] == Closed(
        CloseCode.PAIR_DENIED, "this device is not paired; pair it with the host's PIN", True
    )
    assert not any(isinstance(e, SessionStarted) for e in events) and stranger.keys is None
    assert not net.host(HelloReceived)
    (conn,) = {c for c, _ in net.host_events}
    assert conn.state is HostState.DONE and conn.keys is None and not conn.streaming


def test_a_client_without_a_certificate_is_refused(host_identity):
    net = make_net(host_identity)
    client = session(net, host_identity, None)
    net.run()
    assert drain(client)[-1].code == CloseCode.PAIR_NO_IDENTITY
    assert not net.host(HelloReceived)


def test_a_host_with_another_certificate_is_refused_by_the_client(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity, host_fp=bytes(32))
    net.run()
    events = drain(client)
    assert events == [
        Closed(CLOSE_ABORT, "host certificate does not match the pinned fingerprint", False)
    ]
    assert not net.host(HelloReceived)
    # Closed before the handshake is confirmed, so QUIC carries it as APPLICATION_ERROR.
    assert [e.by_peer for _, e in net.host(Closed)] == [True]


def test_malformed_and_missing_control_messages_close_the_connection(
    host_identity, client_identity
):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    # A Ready frame declaring 257 bytes: over READY's bound, refused on its header alone.
    client.send_frame(encode_varint(MsgType.READY) + encode_varint(257))
    net.run()
    (_, closed), = net.host(Closed)  # fmt: skip
    assert closed.code == CLOSE_ABORT and closed.reason.startswith("oversize_body")
    # A client that sends nothing after the handshake is dropped after HANDSHAKE_TIMEOUT_S.
    silent = net.dial(ClientConnection(client_identity, now=net.now, wall_ns=net.wall_ns))
    net.run(seconds=11.0)
    assert drain(silent)[-1] == Closed(CLOSE_ABORT, "timed out in state await-first", True)


def test_a_session_never_made_ready_is_closed_after_the_handshake_deadline(
    host_identity, client_identity
):
    """The host opened a monitor for this hello; a client that then stays silent (QUIC kept
    alive, no Ready) must not hold it forever."""
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    (conn, _), = net.host(HelloReceived)  # fmt: skip
    conn.accept(ServerHello(mode=HELLO.mode, suite=MediaSuite.AES_128_GCM))
    net.run(seconds=9.0)
    assert conn.closed is None and not net.host(Closed)
    net.run(seconds=2.0)
    (_, closed), = net.host(Closed)  # fmt: skip
    assert closed == Closed(CLOSE_ABORT, "timed out in state await-ready", False)
    assert drain(client)[-1] == Closed(CLOSE_ABORT, "timed out in state await-ready", True)


def test_ready_in_time_lifts_the_deadline(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    (conn, _), = net.host(HelloReceived)  # fmt: skip
    conn.accept(ServerHello(mode=HELLO.mode, suite=MediaSuite.AES_128_GCM))
    net.run()
    client.ready()
    net.run(seconds=30.0)
    assert conn.streaming and not net.host(Closed)


def test_router_forgets_terminated_connections(host_identity, client_identity):
    net = make_net(host_identity, paired=[client_identity.fingerprint])
    client = session(net, host_identity, client_identity)
    net.run()
    (conn, _), = net.host(HelloReceived)  # fmt: skip
    assert isinstance(conn, HostConnection) and len(net.router.connections) == 1
    client.close(CloseCode.QUIT, "bye")
    net.run(seconds=5.0)
    assert net.router.connections == [] and conn.closed == Closed(CloseCode.QUIT, "bye", True)
