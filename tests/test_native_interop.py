"""The rest of issue 12's requests, against a real `punktfunk serve` (pattern display) bound to
the wildcard address on a machine with two loopback addresses, and a real PulseAudio.

A client that dials 127.0.0.2 must see every QUIC and media datagram come from 127.0.0.2
(IP_PKTINFO; without it the kernel answers from 127.0.0.1, which a punktfunk client drops as
foreign). A clipboard toggle is answered ClipState(off, backend unavailable) as the Rust host
answers one it cannot serve; a decoded message the host does not act on is counted and logged.
Feedback tags 8-17 are kept and counted; asks that wrap past 0xFFFF are each acted on once.
Opus 0xCB datagrams come out of the session's virtual microphone, recorded with parec.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.audio.opus import OpusConfig, OpusEncoder
from punktfunk.audio.pulse import PulseServer
from punktfunk.native.client.client import ClientConnection
from punktfunk.native.client.dial import flush, pair, pump
from punktfunk.native.client.probe import ClientStore, client_hello
from punktfunk.native.host.mic import decode_mic, encode_mic
from punktfunk.native.host.negotiate import newer_ask
from punktfunk.native.wire import dgram
from punktfunk.native.wire.core import Closed, MessageReceived, SessionStarted
from punktfunk.native.wire.dgram import Feedback
from punktfunk.native.wire.messages import ClipControl, ClipState, CursorRenderMode, Mode
from punktfunk.native.wire.packet import is_media
from punktfunk.native.wire.registry import ClipReason, Codec, DgramKind
from punktfunk.native.wire.tlv import Fields
from test_audio_pulse import RATE, _dominant_hz, _tones, pulse
from test_native_stream import PIN, PUNKTFUNK, _env, free_udp_port

__all__ = ["pulse"]  # the fixture this module borrows


# --- pure parts -------------------------------------------------------------------------------


def test_the_ask_counter_wraps_at_16_bits() -> None:
    assert newer_ask(1, 0) and newer_ask(2, 1)
    assert newer_ask(0, 0xFFFF) is False  # 0 asks nothing, even right after 0xFFFF
    assert newer_ask(1, 0xFFFF) and newer_ask(0x10, 0xFFF0)  # past the wrap: newer
    assert not newer_ask(0xFFFF, 1)  # before the wrap, seen after it: older
    assert not newer_ask(5, 5)  # a repeat is acted on once
    assert newer_ask(0x7FFF + 5, 5) and not newer_ask(0x8000 + 5, 5)  # half the circle


def test_feedback_tags_8_to_17_are_kept_by_tag() -> None:
    fb = Feedback(window=3, loss_ppm=10, packets_received=99, ext=((8, 250_000), (12, 40)))
    assert dgram.decode(fb.encode()) == fb
    # Widths 1/2/8 read as integers, another width skipped, an unknown tag (18) skipped.
    body = (
        Fields().u32(1, 4).u8(9, 7).u16(10, 513).raw(11, b"\x01\x02\x03").u64(17, 2**40)
        .u32(18, 1).body()
    )  # fmt: skip
    got = dgram.decode(dgram.encode(DgramKind.FEEDBACK, body))
    assert isinstance(got, Feedback) and got.window == 4
    assert got.ext == ((9, 7), (10, 513), (17, 2**40))
    repeated = Fields().u32(8, 1).u32(8, 2).body()
    assert dgram.decode(dgram.encode(DgramKind.FEEDBACK, repeated)) is None


def test_mic_payload_layout() -> None:
    payload = encode_mic(2**32 + 5, 123, b"opus")
    assert payload[0] == 0xCB and decode_mic(payload) == (5, 123, b"opus")
    assert decode_mic(payload[:13]) is None  # a header with no Opus
    assert dgram.wrap(payload) == dgram.encode(DgramKind.AUDIO, payload)


# --- end to end -------------------------------------------------------------------------------


def _second_loopback() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


class WildcardHost:
    """`punktfunk serve --display pattern` bound to 0.0.0.0, sound to the test's PulseAudio."""

    def __init__(self, tmp: Path, pulse: PulseServer) -> None:
        self.tmp, self.port, self.log = tmp, free_udp_port(), tmp / "host.log"
        env = {**_env(tmp), "PULSE_SERVER": pulse.address}
        self.proc = subprocess.Popen(
            [
                str(PUNKTFUNK), "serve", "--display", "pattern", "--pin", PIN, "--no-mdns",
                "--native-port", str(self.port), "--bind-address", "0.0.0.0",
                "--monitor-linger-ms", "0",
            ],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait(lambda: "host.ready" in self.text() or self.proc.poll() is not None, 90)
        assert self.proc.poll() is None, self.text()[-3000:]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait(ok: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, pulse: PulseServer) -> Iterator[WildcardHost]:
    if not _second_loopback():
        pytest.skip("127.0.0.2 is not a local address here")
    h = WildcardHost(tmp_path_factory.mktemp("interop"), pulse)
    yield h
    h.proc.terminate()
    h.proc.wait(timeout=30)


class RecordingSocket(socket.socket):
    """The client's socket, noting which address each QUIC and media datagram came from."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.sources: Counter[tuple[str, str]] = Counter()
        self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # the forger shares the port
        self.bind(("0.0.0.0", 0))
        self.setblocking(False)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[str, int]]:  # type: ignore[override]
        data, src = super().recvfrom(bufsize, flags)
        self.sources[(src[0], "media" if is_media(data) else "quic")] += 1
        return data, src


Script = Callable[[ClientConnection, RecordingSocket, float], bool]  # (.., s since Ready) -> done


def _session(
    host: WildcardHost, ip: str, name: str, script: Script
) -> tuple[RecordingSocket, list[object]]:
    """Pair, dial `ip`, send Ready, then run `script` each turn until it is done; the messages
    the host sent."""
    store = ClientStore(host.tmp / f"{name}-client")
    addr = (ip, host.port)
    host_fp = pair(addr, store.identity, PIN, name)
    hello = client_hello(Mode(640, 480, 30), name)
    conn = ClientConnection(store.identity, now=time.monotonic(), hello=hello, host_fp=host_fp)
    sock = RecordingSocket()
    got: list[object] = []
    ready_at: list[float] = []

    def until() -> bool:
        while (ev := conn.next_event()) is not None:
            match ev:
                case SessionStarted():
                    conn.ready()
                    ready_at.append(time.monotonic())
                case MessageReceived():
                    got.append(ev.message)
                case Closed():
                    got.append(ev)
        if any(isinstance(m, Closed) for m in got):
            return True
        return bool(ready_at) and script(conn, sock, time.monotonic() - ready_at[0])

    try:
        conn.connect(addr, time.monotonic())
        pump(conn, sock, addr, until, time.monotonic() + 60)
        conn.close(0, "done")
        flush(conn, sock)
    finally:
        sock.close()
    assert ready_at, f"no session: {got}"
    return sock, got


def _forge_initial(host: WildcardHost, port: int) -> None:
    """Someone else sends a valid Initial from the live client's own address and port to the
    host's other address (anyone can: Initial keys come from the packet itself)."""
    store = ClientStore(host.tmp / "forger")
    forger = ClientConnection(store.identity, now=time.monotonic(), hello=client_hello(
        Mode(640, 480, 30), "forger"), host_fp=bytes(32))  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", port))
        addr = ("127.0.0.1", host.port)
        forger.connect(addr, time.monotonic())
        for data, _ in forger.datagrams_to_send(time.monotonic()):
            s.sendto(data, addr)


def _session_end(host: WildcardHost, name: str) -> str:
    pattern = rf"session\.end session=pf2-{name}-\S+.*"
    _wait(lambda: re.search(pattern, host.text()), 20)
    found = re.search(pattern, host.text())
    assert found, host.text()[-3000:]
    return found.group(0)


def test_replies_leave_from_the_dialled_address_and_requests_are_answered(
    host: WildcardHost,
) -> None:
    sent: list[str] = []

    def script(conn: ClientConnection, sock: RecordingSocket, t: float) -> bool:
        if t > 0.5 and len(sent) == 1:
            _forge_initial(host, sock.getsockname()[1])
            sent.append("forged")
        if not sent:
            conn.send(ClipControl(enabled=True, flags=1))
            conn.send(CursorRenderMode(True))  # host -> client only: counted, not fatal
            # Asks across the 16-bit wrap (each new one acted on once) and link figures.
            for ask in (0x7000, 0xE000, 0xFFFF, 1, 1, 0xFFFF):
                conn.send_datagram(Feedback(ask=ask, invalidate=(1, 1)).encode())
            conn.send_datagram(Feedback(window=1, ext=((8, 90_000), (14, 7))).encode())
            sent.append("all")
        return t > 2.5

    sock, got = _session(host, "127.0.0.2", "dialled", script)
    assert sent == ["all", "forged"]
    assert sock.sources[("127.0.0.2", "media")] > 100, sock.sources
    assert sock.sources[("127.0.0.2", "quic")] > 0, sock.sources
    # Only the forger's handshake answers may come from 127.0.0.1 (it dialled that address).
    foreign = {k: n for k, n in sock.sources.items() if k[0] != "127.0.0.2" and k[1] == "media"}
    assert not foreign, f"media from an address the client did not dial: {foreign}"
    assert ClipState(False, 0, ClipReason.BACKEND_UNAVAILABLE) in got, got
    assert not any(isinstance(m, Closed) for m in got), got
    end = _session_end(host, "dialled")
    assert " asks=4 " in end and " link_figures=1 " in end, end
    assert re.search(r"native\.message_unhandled .*type=CURSOR_RENDER", host.text())


@pytest.mark.skipif(not shutil.which("parec"), reason="parec is not installed")
def test_mic_datagrams_reach_the_virtual_microphone(
    host: WildcardHost, pulse: PulseServer, tmp_path: Path
) -> None:
    encoder = OpusEncoder(OpusConfig(1, 64_000))
    tone = _tones([700.0], 4.0)
    packets = [encoder.encode(tone[i * 240 : (i + 1) * 240].tobytes()) for i in range(800)]
    out = (tmp_path / "rec.raw").open("wb")
    recorder: list[subprocess.Popen[bytes]] = []
    seq = [0]

    def script(conn: ClientConnection, sock: RecordingSocket, t: float) -> bool:
        due = min(len(packets), int(t / 0.005) + 1)  # paced like a client: one per 5 ms
        while seq[0] < due:
            payload = encode_mic(seq[0], time.time_ns(), packets[seq[0]])
            conn.send_datagram(dgram.encode(DgramKind.AUDIO, payload))
            seq[0] += 1
        source = re.search(r"native\.mic_open .*source=(\S+)", host.text())
        if source and not recorder:  # the source exists once the first packet arrived
            recorder.append(subprocess.Popen(
                ["parec", f"--server={pulse.address}", f"--device={source.group(1)}", "--raw",
                 "--format=s16le", f"--rate={RATE}", "--channels=1", "--latency-msec=20"],
                stdout=out,
            ))  # fmt: skip
        return seq[0] >= len(packets) and t > 4.3

    try:
        _session(host, "127.0.0.1", "talker", script)
    finally:
        for proc in recorder:
            proc.terminate()
            proc.wait()
        out.close()
    assert recorder, f"no microphone source was opened:\n{host.text()[-3000:]}"
    end = _session_end(host, "talker")
    packets_in = int(re.search(r" mic_packets=(\d+)", end).group(1))  # type: ignore[union-attr]
    assert packets_in >= 0.8 * len(packets), end
    recorded = np.frombuffer((tmp_path / "rec.raw").read_bytes(), "<i2")
    loud = np.flatnonzero(np.abs(recorded) > 2000)
    assert len(loud) > RATE * 1.0, "the virtual microphone recorded (almost) nothing"
    start = int(loud[0]) + 4800
    assert abs(_dominant_hz(recorded[start : start + RATE // 2]) - 700) < 5


def test_connect_takes_a_codec_list(tmp_path: Path) -> None:
    """`punktfunk connect --video-codec hevc,h264` is a valid ask (preferred first); only an
    unknown codec is a usage error. Nothing listens at the port: it fails at pairing (1)."""
    from punktfunk.viewer.connect import ConnectArgs, run_connect

    closed = free_udp_port()
    ask = ConnectArgs(host="127.0.0.1", port=closed, client_dir=tmp_path, codec="hevc,h264")
    assert run_connect(ask) == 1
    bad = ConnectArgs(host="127.0.0.1", port=closed, client_dir=tmp_path, codec="hevc,vp9")
    assert run_connect(bad) == 2
    hello = client_hello(Mode(640, 480, 60), "c", "hevc,h264")
    assert hello.preferred_codec == Codec.HEVC
    assert hello.video_codecs == Codec.HEVC | Codec.H264


def test_a_routed_removal_follows_the_callers_own_snapshots() -> None:
    """The viewer stamps its own GAMEPAD_STATE seqs; `InputRoute` (which the receiver now
    routes every viewer event through) must stamp a removal after them, or the host would
    read it as older than the last snapshot and keep the pad plugged."""
    from punktfunk.native.client.client import InputRoute
    from punktfunk.native.wire.dgram import InputEvent, InputKind
    from punktfunk.native.wire.hello import ServerHello
    from punktfunk.native.wire.registry import HostCap, HostCap2

    route = InputRoute(
        ServerHello(host_caps=HostCap.GAMEPAD_STATE, host_caps2=HostCap2.INPUT_EDGES)
    )
    snap = InputEvent(InputKind.GAMEPAD_STATE, 0x1000, 0, 0, 77 << 24 | 2)
    out = route.route([snap, InputEvent(InputKind.GAMEPAD_REMOVE, flags=2)])
    assert out[0] == (snap, False)
    removal, edge = out[1]
    assert removal.flags == 78 << 24 | 2 and edge is False
    key = InputEvent(InputKind.KEY_DOWN, 0x41)
    click = InputEvent(InputKind.MOUSE_BUTTON_DOWN, 1)
    assert route.route([key, click]) == [(key, True), (click, False)]  # as input_task.rs
