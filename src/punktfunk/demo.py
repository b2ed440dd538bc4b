"""`punktfunk demo`: the whole stream path on one machine, with nothing to install or pair.

A native punktfunk/2 host on the built-in pattern display (its own virtual monitor at the
asked mode) and a loopback client in the same process: pairing with a one-off PIN, capture,
encode, FEC, sealing, pacing, the socket, reassembly, decode. One line of live statistics per
second until Ctrl-C (or `--seconds`). Everything lives in a temporary state dir, so a running
`punktfunk serve` and its paired clients are never touched.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import HostConfig
from .identity import load_or_create
from .native.client.dial import ProbeError, pair
from .native.client.probe import ClientStore, client_hello, parse_mode
from .native.client.receiver import NativeReceiver
from .native.host.service import NativeHost
from .session.services import HostServices

HISTORY = 600  # latency samples kept for the live percentiles (~10 s at 60 fps)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _p50(samples: list[float]) -> float:
    recent = sorted(samples[-120:])
    return recent[len(recent) // 2] if recent else 0.0


class LiveLine:
    """Rates since the previous line, latencies over the last ~2 s."""

    def __init__(self, receiver: NativeReceiver) -> None:
        self._rx = receiver
        self._last = (time.monotonic(), 0, 0, 0, 0)

    def line(self) -> str:
        st, asm = self._rx.stats, self._rx.assembler.stats
        now = time.monotonic()
        then, decoded0, bytes0, sent0, fec0 = self._last
        sent = asm.frames + asm.frames_lost
        self._last = (now, st.frames_decoded, st.media_bytes, sent, asm.frames_recovered_by_fec)
        elapsed = max(1e-6, now - then)
        fraction = (st.frames_decoded - decoded0) / (sent - sent0) if sent > sent0 else 0.0
        return (
            f"demo: {(st.frames_decoded - decoded0) / elapsed:5.1f} fps"
            f" | {(st.media_bytes - bytes0) * 8 / elapsed / 1e6:5.1f} Mbit/s"
            f" | host latency {_p50(st.host_latency_ms):4.1f} ms"
            f" | one-way {_p50(st.one_way_latency_ms):4.1f} ms"
            f" | decoded {100 * fraction:5.1f}%"
            f" | FEC-repaired frames {asm.frames_recovered_by_fec - fec0}"
        )


def run_demo(config: HostConfig, mode_text: str, seconds: float) -> int:
    try:
        mode = parse_mode(mode_text)
    except ValueError as exc:
        print(f"punktfunk demo: {exc}", file=sys.stderr)
        return 2
    state = Path(tempfile.mkdtemp(prefix="punktfunk-demo-"))
    pin = f"{secrets.randbelow(10**6):06d}"
    config = dataclasses.replace(
        config,
        display="pattern",
        state_dir=state,
        bind_address="127.0.0.1",
        native_port=_free_udp_port(),
        pair_pin=pin,
    )
    services = HostServices(config)
    host = NativeHost(
        load_or_create(state / "identity"),
        state,
        services,
        pin=pin,
        bind="127.0.0.1",
        port=config.native_port,
        opus_factory=services.opus_encoder,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        host.start()
        store = ClientStore(state / "client")
        addr = ("127.0.0.1", host.port)
        print(
            f"punktfunk demo: host on 127.0.0.1:{host.port}, pattern display "
            f"{mode.width}x{mode.height}@{mode.refresh_hz}; pairing with PIN {pin}",
            flush=True,
        )
        host_fp = pair(addr, store.identity, pin, "punktfunk-demo")
        hello = client_hello(mode, "punktfunk-demo")
        receiver = NativeReceiver(
            addr, store.identity, host_fp, hello, history=HISTORY, close_reason="demo done"
        )
        runner = threading.Thread(target=receiver.run, args=(math.inf,), daemon=True)
        runner.start()
        live = LiveLine(receiver)
        started = time.monotonic()
        print("punktfunk demo: streaming; Ctrl-C stops", flush=True)
        while not stop.wait(1.0) and runner.is_alive():
            print(live.line(), flush=True)
            if seconds and time.monotonic() - started >= seconds:
                break
        receiver.stop()
        runner.join(timeout=10)
        report = receiver.report(time.monotonic() - started)
    except ProbeError as exc:
        print(f"punktfunk demo: the stream failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
        host.close()
        services.close()
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"punktfunk demo: done: {report['frames_decoded']} frames decoded of "
        f"{report['frames_sent']} sent ({100 * float(report['decoded_fraction']):.1f}%), "
        f"{report['fps']} fps, host latency p50 "
        f"{dict(report['host_latency_ms']).get('p50', '-')} ms",
        flush=True,
    )
    return 0 if report["ok"] else 1
