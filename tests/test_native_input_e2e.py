"""End to end: `punktfunk serve` (native, its own Xvfb monitor per session) driven by a client
that sends as the Rust client does with the capabilities our ServerHello grants.

The client is the in-process NativeReceiver; `InputRoute(server_hello)` decides, as the Rust
client's input task (`client/pump/input_task.rs`) does, what leaves how: key edges on the
control stream (HOST_CAP2_INPUT_EDGES), pad button/axis events folded into seq-stamped
snapshots (HOST_CAP_GAMEPAD_STATE), normalized scroll unchanged (HOST_CAP2_SCROLL). An X client
on the session's display observes what lands; a consumer process reads the pad's shared memory.
Each capability bit the host sets is exercised here.
"""

from __future__ import annotations

import re
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from punktfunk.native.client.client import InputRoute
from punktfunk.native.wire.dgram import InputEvent, InputKind
from punktfunk.native.wire.messages import Mode
from punktfunk.native.wire.registry import Feature, HostCap, HostCap2
from punktfunk.native.wire.scroll import ScrollAccumulator, ScrollPhase, ScrollSource
from punktfunk.vdisplay.base import DisplayBackend
from test_native_stream import PIN, PUNKTFUNK, _env, free_udp_port
from test_vdisplay_support import require_backend


class XvfbNativeHost:
    """`punktfunk serve --display xvfb` on a private state dir, native port only in use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port, self.log = tmp, free_udp_port(), tmp / "host.log"
        self.proc = subprocess.Popen(
            [
                str(PUNKTFUNK), "serve", "--display", "xvfb", "--pin", PIN,
                "--native-port", str(self.port), "--bind-address", "127.0.0.1",
                "--monitor-linger-ms", "0",
            ],
            env=_env(tmp), stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        _until("host.ready", lambda: "host.ready" in self.text() or self.proc.poll() is not None,
               90, self.text)  # fmt: skip
        assert self.proc.poll() is None, self.text()[-3000:]

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _until(what: str, ok: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s:\n{why()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XvfbNativeHost]:
    require_backend(DisplayBackend.XVFB)
    h = XvfbNativeHost(tmp_path_factory.mktemp("native-input"))
    yield h
    h.proc.terminate()
    h.proc.wait(timeout=30)


class Session:
    """One streaming in-process client and, once the host opened it, the session's display."""

    def __init__(self, host: XvfbNativeHost, name: str, features: int = 0) -> None:
        from punktfunk.native.client.dial import pair
        from punktfunk.native.client.probe import ClientStore, client_hello
        from punktfunk.native.client.receiver import NativeReceiver
        from punktfunk.native.wire.features import FeatureSet

        self.host, self.before = host, len(host.text())
        self.store = ClientStore(host.tmp / f"{name}-client")
        addr = ("127.0.0.1", host.port)
        host_fp = pair(addr, self.store.identity, PIN, name)
        hello = replace(client_hello(Mode(1280, 720, 30), name, bitrate_kbps=2000),
                        features=FeatureSet(features))  # fmt: skip
        self.receiver = NativeReceiver(addr, self.store.identity, host_fp, hello)
        self.runner = threading.Thread(target=self.receiver.run, args=(60.0,), daemon=True)
        self.runner.start()
        _until("the ServerHello", lambda: self.receiver.server_hello is not None, 60, host.text)
        self.route = InputRoute(self.receiver.server_hello)  # type: ignore[arg-type]

    def send(self, *events: InputEvent) -> list[tuple[InputEvent, bool]]:
        """What the Rust client would put on the wire for these events, sent."""
        routed = self.route.route(list(events))
        for ev, reliable in routed:
            self.receiver.send_input(ev, reliable)
        return routed

    def display(self) -> str:
        pattern = r"vdisplay\.lease_monitor .*?display=(:\d+)"
        _until("the session's monitor", lambda: re.search(pattern, self.log()), 60, self.log)
        match = re.search(pattern, self.log())
        assert match is not None
        return match.group(1)

    def log(self) -> str:
        return self.host.text()[self.before :]

    def close(self) -> None:
        self.receiver.stop()
        self.runner.join(timeout=30)


def test_server_hello_grants_what_this_host_implements_and_x_input_lands(
    host: XvfbNativeHost,
) -> None:
    from Xlib import XK, X
    from Xlib.display import Display

    from punktfunk.vdisplay import xauth

    s = Session(host, "x-input")
    try:
        hello = s.receiver.server_hello
        assert hello is not None
        assert hello.host_caps == HostCap.GAMEPAD_STATE | HostCap.TEXT_INPUT, hex(hello.host_caps)
        assert hello.host_caps2 == HostCap2.INPUT_EDGES | HostCap2.SCROLL | HostCap2.EXT
        assert not hello.features.has(Feature.STREAM_CONFIG)  # echoed only when asked for
        xauth.use_state_dir(host.tmp / "state")  # the session display's cookie, as its apps
        xauth.install_xlib_auth()
        x = Display(s.display())
        screen = x.screen()
        window = screen.root.create_window(
            0, 0, 1280, 720, 0, screen.root_depth, event_mask=X.KeyPressMask | X.ButtonPressMask
        )
        window.map()
        x.sync()
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        x.sync()
        keys: list[int] = []  # keysyms
        buttons: list[int] = []

        def collect() -> None:
            while x.pending_events():
                ev = x.next_event()
                if ev.type == X.MappingNotify:  # the text binds a spare keycode
                    x.refresh_keyboard_mapping(ev)
                elif ev.type == X.KeyPress:
                    keys.append(x.keycode_to_keysym(ev.detail, 0))
                elif ev.type == X.ButtonPress:
                    buttons.append(ev.detail)

        # An absolute move from a 2560x1440 surface (flags = width << 16 | height) lands at the
        # matching pixel of the 1280x720 monitor.
        surface = 2560 << 16 | 1440
        for (sx, sy), want in (((1280, 720), (640, 360)), ((2559, 1439), (1279, 719))):
            s.send(InputEvent(InputKind.MOUSE_MOVE_ABS, 0, sx, sy, surface))

            def landed(want: tuple[int, int] = want) -> bool:
                p = screen.root.query_pointer()
                return (p.root_x, p.root_y) == want

            _until(f"the pointer at {want}", landed, 15, s.log)

        # A key edge rides the control stream (INPUT_EDGES) and types on the display.
        routed = s.send(InputEvent(InputKind.KEY_DOWN, 0x48), InputEvent(InputKind.KEY_UP, 0x48))
        assert [reliable for _, reliable in routed] == [True, True]
        _until("the key", lambda: (collect(), keys)[1], 15, lambda: f"keys={keys}\n{s.log()}")
        # Committed text (TEXT_INPUT): a character no US key types.
        s.send(InputEvent(InputKind.TEXT_INPUT, ord("ß")))
        _until("the text", lambda: (collect(), len(keys) >= 2)[1], 15,
               lambda: f"keys={keys}\n{s.log()}")  # fmt: skip
        assert keys == [XK.string_to_keysym("h"), XK.string_to_keysym("ssharp")], keys

        # Wheel scroll is vertical: one detent up as the normalized event (SCROLL), one detent
        # down as an older client's MOUSE_SCROLL (code = axis 0), then one to the right.
        up = ScrollAccumulator().event(ScrollSource.WHEEL, ScrollPhase.NONE, 0, 120.0)
        assert up is not None
        assert s.send(up) == [(up, False)]  # unchanged toward HOST_CAP2_SCROLL
        _until("wheel up", lambda: (collect(), buttons)[1], 15, s.log)
        s.send(InputEvent(InputKind.MOUSE_SCROLL, 0, -120))
        _until("wheel down", lambda: (collect(), len(buttons) >= 2)[1], 15, s.log)
        s.send(InputEvent(InputKind.MOUSE_SCROLL, 1, 120))
        _until("wheel right", lambda: (collect(), len(buttons) >= 3)[1], 15, s.log)
        assert buttons == [4, 5, 7], buttons
        x.close()
    finally:
        s.close()


def test_folded_pad_events_reach_the_pad_backend_as_one_snapshot(host: XvfbNativeHost) -> None:
    import pad_consumer
    from punktfunk.input.base import PadKind
    from punktfunk.input.padroute import native_pref
    from punktfunk.input.pads import SHM_DIR
    from punktfunk.native.wire.quic import fingerprint

    s = Session(host, "pad-fold")
    try:
        assert s.route.snapshots  # the host granted HOST_CAP_GAMEPAD_STATE
        arrival = InputEvent(InputKind.GAMEPAD_ARRIVAL, native_pref(PadKind.XBOX360), flags=0)
        # What an embedder hands the Rust client: one event per button and axis.
        pad = [
            InputEvent(InputKind.GAMEPAD_BUTTON, 0x1000, 1),  # A
            InputEvent(InputKind.GAMEPAD_BUTTON, 0x0200, 1),  # RB
            InputEvent(InputKind.GAMEPAD_AXIS, 0, -12000),  # left stick left
            InputEvent(InputKind.GAMEPAD_AXIS, 1, 30000),  # and up (+y up on the wire)
            InputEvent(InputKind.GAMEPAD_AXIS, 5, 200),  # right trigger
        ]
        routed = s.send(arrival, *pad)
        kinds = [ev.kind for ev, _ in routed]
        assert kinds == [InputKind.GAMEPAD_ARRIVAL, InputKind.GAMEPAD_STATE], kinds
        # XusbShm's XInput state at offset 8: buttons u16, lt, rt, lx, ly, rx, ry.
        want = struct.pack("<HBBhhhh", 0x1200, 0, 200, -12000, 30000, 0, 0)
        name = f"pf2-pad-fold-{fingerprint(s.store.identity.cert).hex()[:8]}"
        consumer = pad_consumer.start(SHM_DIR, name, 0, want)
        while consumer.poll() is None:  # the Rust client refreshes snapshots every 100 ms
            time.sleep(0.1)
            s.send(*pad)
        assert pad_consumer.finish(consumer)[8:20] == want
    finally:
        s.close()


def test_stream_config_is_echoed_and_epoch_zero_is_described(host: XvfbNativeHost) -> None:
    """FEATURE_STREAM_CONFIG, which the Rust client sets: the host echoes it and sends epoch 0's
    StreamConfig before its first packet (the Rust client holds an epoch it has no config for)."""
    s = Session(host, "stream-config", features=1 << Feature.STREAM_CONFIG)
    try:
        hello = s.receiver.server_hello
        assert hello is not None and hello.features.has(Feature.STREAM_CONFIG)
        _until("epoch 0's StreamConfig", lambda: s.receiver.stream_configs, 15, s.log)
        config = s.receiver.stream_configs[0]
        assert (config.epoch, config.mode, config.codec) == (0, hello.mode, hello.codec)
        assert (config.bit_depth, config.color) == (hello.bit_depth, hello.color)
    finally:
        s.close()
