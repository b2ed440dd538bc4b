"""End to end over loopback: `punktfunk serve` (native host, pattern display) and `punktfunk probe`.

The host runs as its own process on a private state dir and a free UDP port; each probe is a
process too. The pattern display stamps a frame counter into every frame, so the probe can
prove that frames arrive whole and in order. The fractions asserted are the issue's; a
machine too slow to encode 720p60 shows up as a lower `fps`, not as a lower fraction, because
the fraction is decoded / sent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PUNKTFUNK = Path(sys.executable).parent / "punktfunk"
PIN = "4321"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    (tmp / "none.env").write_text("")
    env.update(PUNKTFUNK_STATE_DIR=str(tmp / "state"), PUNKTFUNK_CONFIG=str(tmp / "none.env"))
    return env


class NativeHost:
    """`punktfunk serve` on the pattern display, native only, on loopback; `extra` adds flags."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.port = free_udp_port()
        self.log = tmp / "host.log"
        self.proc = subprocess.Popen(
            [
                str(PUNKTFUNK), "serve", "--display", "pattern", "--pin", PIN,
                "--native-port", str(self.port), "--bind-address", "127.0.0.1",
                "--monitor-linger-ms", "0", *extra,
            ],
            env=_env(tmp),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while "host.ready" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the host did not start:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start_probe(self, *args: str, client: str = "client") -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(self.port),
                "--client-dir", str(self.tmp / client), "--json", *args,
            ],
            env=_env(self.tmp),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    @staticmethod
    def result(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, dict]:
        out, err = proc.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        assert lines, err[-3000:]
        return proc.returncode, json.loads(lines[-1])

    def probe(self, *args: str, client: str = "client") -> tuple[int, dict]:
        return self.result(self.start_probe(*args, client=client))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHost]:
    h = NativeHost(tmp_path_factory.mktemp("native"))
    yield h
    if h.proc.poll() is None:
        assert h.stop() == 0
    assert "session.end" in h.text()


def _fec_events(log: str) -> list[int]:
    return [int(m) for m in re.findall(r"session\.fec .*? fec_percent=(\d+)", log)]


def test_loopback_stream_decodes_the_pattern_in_order(host: NativeHost) -> None:
    code, result = host.probe("--pin", PIN, "--mode", "1280x720@60", "--seconds", "10")
    print(json.dumps(result))
    assert code == 0, result
    assert result["mode"] == "1280x720@60" and result["codec"] == "h264"
    assert result["suite"] == "AES_128_GCM"
    assert result["decoded_fraction"] >= 0.98, result
    assert result["counters_in_order"] is True
    assert result["stamps_read"] == result["frames_decoded"]
    for key in ("host_latency_ms", "one_way_latency_ms"):
        assert set(result[key]) == {"p50", "p99"} and result[key]["p50"] > 0
    assert result["mbps"] > 0 and result["fps"] > 0 and result["audio_packets"] > 0
    deadline = time.monotonic() + 10
    while 'reason="probe done' not in host.text() and time.monotonic() < deadline:
        time.sleep(0.1)  # the host logs session.end once its teardown thread is done
    assert "session.start" in host.text() and 'reason="probe done' in host.text()
    # The pairing is stored in the state dir and listed over the admin socket.
    listed = subprocess.run(
        [str(PUNKTFUNK), "clients"], env=_env(host.tmp), capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["name"] == "punktfunk-probe"


def test_chacha20_while_another_peer_sends_garbage(host: NativeHost) -> None:
    stop = threading.Event()

    def noise() -> None:  # malformed input from another peer must only cost itself
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.01):
                for junk in (os.urandom(1300), b"\x00" * 80, b"\x41" + os.urandom(40)):
                    sock.sendto(junk, ("127.0.0.1", host.port))

    thread = threading.Thread(target=noise, daemon=True)
    thread.start()
    try:
        code, result = host.probe("--suite", "chacha20", "--seconds", "3")
    finally:
        stop.set()
        thread.join()
    assert code == 0, result
    assert "native.dropped" in host.text()
    assert result["suite"] == "CHACHA20_POLY1305" and result["frames_decoded"] > 0
    assert result["decoded_fraction"] >= 0.98 and result["counters_in_order"] is True


def test_two_clients_stream_at_once_each_on_its_own_monitor(host: NativeHost) -> None:
    before = len(host.text())
    for client in ("client", "client-b"):  # pair one at a time: the gate runs one ceremony
        code, _ = host.probe("--pin", PIN, "--seconds", "0.5", client=client)
        assert code == 0
    args = ("--mode", "640x480@30", "--seconds", "4")
    procs = [host.start_probe(*args), host.start_probe(*args, client="client-b")]
    results = [host.result(p) for p in procs]
    for code, result in results:
        assert code == 0, result
        assert result["mode"] == "640x480@30" and result["decoded_fraction"] >= 0.98, result
        assert result["counters_in_order"] is True
    monitors = re.findall(
        r"lease_monitor id=(\d+) .*?display=(\S+) mode=640x480", host.text()[before:]
    )
    assert len({display for _, display in monitors}) == 2, monitors


def test_five_percent_loss_is_repaired_and_raises_fec(host: NativeHost) -> None:
    before = len(host.text())
    code, result = host.probe("--loss", "5", "--seed", "5", "--seconds", "10")
    print(json.dumps(result))
    assert code == 0, result
    assert result["decoded_fraction"] >= 0.95, result
    assert result["frames_recovered_by_fec"] > 0 and result["counters_in_order"] is True
    time.sleep(0.5)
    fec = _fec_events(host.text()[before:])
    # Lossless windows settle at the 5 % floor; measured loss of ~5 % asks for >= 8 %.
    assert fec and max(fec) >= 8, fec


def test_twenty_percent_loss_survives_without_an_idr_storm(host: NativeHost) -> None:
    before = len(host.text())
    code, result = host.probe("--loss", "20", "--seed", "20", "--seconds", "10")
    print(json.dumps(result))
    assert code == 0 and result["closed"] is None, result
    assert result["frames_decoded"] > 0 and result["counters_in_order"] is True
    assert result["decoded_fraction"] >= 0.3, result
    # One IDR at most per distinct loss the client reported, never one per report/packet.
    assert result["keyframes"] <= result["asks"] + 1, result
    time.sleep(0.5)
    fec = _fec_events(host.text()[before:])
    assert fec and max(fec) >= 25, fec  # ceil(20 x 1.4) + 1 = 29 around 20 % loss
    end = re.findall(r"session\.end .*", host.text()[before:])
    assert end and "idr_requests" in end[-1]


def _in_process_client(host: NativeHost, name: str, mode: str, **kwargs: object):
    """A paired NativeReceiver (the probe's engine) in this process, not yet running."""
    from punktfunk.native.client.dial import pair
    from punktfunk.native.client.probe import ClientStore, client_hello, parse_mode
    from punktfunk.native.client.receiver import NativeReceiver

    store = ClientStore(host.tmp / f"{name}-client")
    addr = ("127.0.0.1", host.port)
    host_fp = pair(addr, store.identity, PIN, name)
    hello = client_hello(parse_mode(mode), name, bitrate_kbps=2000)
    return NativeReceiver(addr, store.identity, host_fp, hello, **kwargs), store


def _wait_decoding(receiver, runner: threading.Thread, size: str, frames: int) -> None:
    deadline = time.monotonic() + 30
    while receiver.stats.sizes.get(size, 0) < frames:
        assert time.monotonic() < deadline and runner.is_alive(), receiver.report(1)
        time.sleep(0.05)


def test_reconfigure_switches_the_mode_mid_session_without_reconnecting(host: NativeHost) -> None:
    from punktfunk.native.wire.messages import Mode

    receiver, _ = _in_process_client(host, "reconfigure", "640x480@30")
    runner = threading.Thread(target=receiver.run, args=(8.0,))
    runner.start()
    _wait_decoding(receiver, runner, "640x480", 10)
    receiver.request_mode(Mode(800, 600, 30))  # the client's window was resized
    runner.join(timeout=60)
    report = receiver.report(8.0)
    assert report["closed"] is None or report["closed"]["code"] == 0, report
    assert report["stream_configs"] == [{"epoch": 1, "mode": "800x600@30"}], report
    assert report["sizes"].get("800x600", 0) >= 20, report["sizes"]
    assert set(report["sizes"]) == {"640x480", "800x600"}
    assert "session.reconfigured" in host.text() and "epoch=1" in host.text()


def test_a_native_gamepad_reaches_shared_memory_and_rumble_comes_back(host: NativeHost) -> None:
    import struct

    import pad_consumer
    from punktfunk.input.base import PadKind
    from punktfunk.input.padroute import native_state
    from punktfunk.input.pads import SHM_DIR
    from punktfunk.native.wire.quic import fingerprint
    from punktfunk.viewer.keys import PadSnapshot, arrival_event, snapshot_event

    rumbles: list[tuple[int, int, int]] = []
    receiver, store = _in_process_client(
        host, "gamepad", "640x480@30", on_rumble=lambda *r: rumbles.append(r)
    )
    runner = threading.Thread(target=receiver.run, args=(10.0,))
    runner.start()
    try:
        _wait_decoding(receiver, runner, "640x480", 3)
        # What the viewer sends for a pad: an arrival edge, then snapshots as datagrams.
        snap = PadSnapshot(buttons=0x1001, axes=(1000, 2000, 32767, -32768, 16384, 32767))
        ev = snapshot_event(0, 1, snap)
        receiver.send_input(arrival_event(0, PadKind.XBOX360), reliable=True)
        receiver.send_input(ev, reliable=False)
        # The XInput state the wire event means (punktfunk's GamepadSnapshot), as XusbShm lays
        # it out at offset 8: what the consumer must find there, byte for byte.
        st = native_state(ev.code, ev.x, ev.y, ev.flags)[2]
        want = struct.pack("<HBBhhhh", st.buttons, st.left_trigger, st.right_trigger,
                           st.thumb_lx, st.thumb_ly, st.thumb_rx, st.thumb_ry)  # fmt: skip
        assert (st.thumb_lx, st.thumb_ly, st.right_trigger) == (1000, -2000, 255)
        name = f"pf2-gamepad-{fingerprint(store.identity.cert).hex()[:8]}"
        seen = pad_consumer.finish(pad_consumer.start(SHM_DIR, name, 0, want))
        assert seen[8:20] == want
        want = (0, pad_consumer.RUMBLE_LARGE * 257, pad_consumer.RUMBLE_SMALL * 257)
        deadline = time.monotonic() + 10
        while want not in rumbles:
            assert time.monotonic() < deadline, rumbles
            time.sleep(0.05)
    finally:
        receiver.stop()
        runner.join(timeout=30)


# Last: this stops the module's host.
def test_host_shutdown_ends_a_live_session(host: NativeHost) -> None:
    before = len(host.text())
    probe = subprocess.Popen(
        [
            str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(host.port),
            "--client-dir", str(host.tmp / "client"), "--json", "--seconds", "20",
        ],
        env=_env(host.tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while "session.start" not in host.text()[before:] and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    assert host.stop() == 0
    out, _ = probe.communicate(timeout=30)
    result = json.loads(out.strip().splitlines()[-1])
    assert probe.returncode == 1 and result["closed"]["code"] == 0x51, result  # QUIT
    assert result["frames_decoded"] > 0
    log = host.text()[before:]
    assert "session.end" in log and 'reason="host shutdown"' in log
    assert "vdisplay.monitor_released" in log


def test_serve_says_so_when_the_native_port_is_taken(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = subprocess.run(
            [str(PUNKTFUNK), "serve", "--display", "pattern", "--native-port", str(port),
             "--bind-address", "127.0.0.1"],
            env=_env(tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1
    assert f"cannot open UDP port {port}" in out.stderr
