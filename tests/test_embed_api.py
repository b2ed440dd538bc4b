"""The embedding API without a client: frames into a real ring, typed input, the examples'
rendering, `import punktfunk` staying light, a Host inside a running asyncio loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import punktfunk
from gs_host import BASE_PORT
from punktfunk.embed.frames import write_into
from punktfunk.embed.session import Session
from punktfunk.input.base import PadFeedback, PadKind, PadState
from punktfunk.proto.frame import PixelFormat, shm_name
from punktfunk.vdisplay.ring import FrameRing, RingReader
from test_native_stream import free_udp_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
MODE = punktfunk.Mode(320, 192, 60, False)
_gen = iter(range(1, 1000))


def _session(mode: punktfunk.Mode = MODE) -> tuple[Session, RingReader, FrameRing]:
    """A session whose ring is attached as the host's capturer attaches it."""
    session = Session("T", mode, "test", lambda s: None)
    fmt = PixelFormat.FP16_RGBA if mode.hdr else PixelFormat.BGRA8
    ring = FrameRing.create(shm_name(0x7777, next(_gen)), mode.width, mode.height, fmt, 1)
    session.feed.attach(FrameRing.open(ring.name), None)
    return session, RingReader(ring), ring


def test_import_punktfunk_is_fast_and_loads_nothing_heavy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import punktfunk; "
        "print(time.perf_counter() - t); print(sorted(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, modules = out.stdout.splitlines()
    assert float(seconds) < 0.3
    loaded = set(eval(modules))  # our own subprocess's sorted list
    heavy = {"numpy", "av", "aioquic", "Xlib", "pygame", "cryptography", "punktfunk.embed"}
    assert not heavy & loaded, heavy & loaded
    assert punktfunk.Host.__module__ == "punktfunk.embed.host"  # and it loads on first use


def test_push_lands_in_the_ring_converted_and_a_wrong_frame_says_what_was_expected() -> None:
    source = punktfunk.PushSource()
    session, reader, ring = _session()
    try:
        source._attach(session)
        rgb = np.zeros((192, 320, 3), np.uint8)
        rgb[..., 0] = 200  # red
        source.push(rgb)
        taken = reader.take_latest()
        assert taken is not None
        assert tuple(taken.pixels[5, 5]) == (0, 0, 200, 255)  # BGRA
        reader.release(taken)
        with pytest.raises(ValueError, match=r"320x192: expected 192x320x3 uint8 RGB"):
            source.push(np.zeros((720, 1280, 3), np.uint8))
        with pytest.raises(ValueError, match="float16 RGBA; got shape"):
            source.push(np.zeros((192, 320, 4), np.float32))
        with pytest.raises(ValueError, match="not str"):
            source.push("frame")
        bgra = np.full((192, 320, 4), 7, np.uint8)
        source.push(bgra)  # the session streams on after the refusals
        taken = reader.take_latest()
        assert taken is not None and int(taken.pixels[0, 0, 0]) == 7
    finally:
        session.end()
        ring.close()


def test_dlpack_and_pyav_frames_are_read() -> None:
    av = pytest.importorskip("av")
    session, reader, ring = _session()
    try:

        class Dl:  # a CPU DLPack producer that is not a numpy array
            def __init__(self, a: np.ndarray) -> None:
                self.a = a

            def __dlpack__(self, **kw: object) -> object:
                return self.a.__dlpack__(**kw)

            def __dlpack_device__(self) -> tuple[int, int]:
                return self.a.__dlpack_device__()

        assert session.push(Dl(np.full((192, 320, 4), 9, np.uint8)))
        taken = reader.take_latest()
        assert taken is not None and int(taken.pixels[1, 1, 2]) == 9
        reader.release(taken)

        class Gpu:  # a device array: copied to host memory through its own method
            __cuda_array_interface__: ClassVar[dict] = {"shape": (192, 320, 4), "typestr": "|u1"}

            def get(self) -> np.ndarray:
                return np.full((192, 320, 4), 11, np.uint8)

        assert session.push(Gpu())
        taken = reader.take_latest()
        assert taken is not None and int(taken.pixels[1, 1, 0]) == 11
        reader.release(taken)

        class Stuck:
            __cuda_array_interface__: ClassVar[dict] = {"shape": (192, 320, 4), "typestr": "|u1"}

        with pytest.raises(ValueError, match="offers no copy to host memory"):
            session.push(Stuck())
        frame = av.VideoFrame.from_ndarray(np.full((192, 320, 3), 50, np.uint8), format="rgb24")
        assert session.push(frame)
        taken = reader.take_latest()
        assert taken is not None and tuple(taken.pixels[1, 1]) == (50, 50, 50, 255)
    finally:
        session.end()
        ring.close()


def test_hdr_example_fills_an_hdr_ring_as_is_and_an_sdr_one_clipped() -> None:
    from hdr_gradient import PEAK, Card

    card = Card()
    hdr = card(punktfunk.Mode(1280, 720, 60, True))
    assert hdr.dtype == np.float16 and hdr.shape == (720, 1280, 4)
    assert float(hdr[0, -1, 0]) == PEAK and float(hdr[0, 0, 0]) == 0.0
    slot = np.zeros((720, 1280, 4), np.float16)
    write_into(hdr, slot)
    assert np.array_equal(slot, hdr)
    sdr = np.zeros((720, 1280, 4), np.uint8)
    write_into(hdr, sdr)
    assert tuple(sdr[0, -1]) == (255, 255, 255, 255)  # above SDR white: clipped
    assert tuple(sdr[-1, 10]) == (0, 0, 255, 255)  # the red primary, as BGRA
    sdr_card = card(punktfunk.Mode(1280, 720, 60, False))  # what the example renders for SDR
    assert sdr_card.dtype == np.uint8 and tuple(sdr_card[-1, 10]) == (255, 0, 0)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 2] = 255  # blue
    into_hdr = np.zeros((4, 4, 4), np.float16)
    write_into(rgb, into_hdr)
    assert tuple(float(v) for v in into_hdr[0, 0]) == (0.0, 0.0, 1.0, 1.0)


def test_input_becomes_typed_events_in_program_pixels_and_rumble_goes_back() -> None:
    mode = punktfunk.Mode(1280, 720, 60, False)
    session = Session("T", mode, "test", lambda s: None)
    session.injector.key(0x41, True, 0x01)  # shift+A
    session.injector.mouse_move_abs(1280, 720, 2560, 1440)
    session.injector.mouse_button(3, True)
    session.injector.scroll(-240, 0)
    session.injector.text("ß")
    session.pads.arrive(1, PadKind.XBOX360)
    session.pads.update(1, PadState(0x1000 | 0x0001, 0, 255, 32767, -32767, 0, 0))
    session.pads.touch(1, 0, True, 0.25, 0.5)
    events = session.poll()
    key, move, button, scroll, text, _, pad, touch = events
    assert key == punktfunk.KeyEvent("a", 30, "A", True, frozenset({"shift"}), 0x41)
    assert (move.x, move.y) == (640, 360) and (button.button, button.x) == ("right", 640)
    assert scroll.vertical == -2.0 and text == punktfunk.Text("ß")
    assert pad.buttons == {"a", "dpad_up"} and pad.axes["right_trigger"] == 1.0
    assert pad.axes["left_x"] == 1.0 and pad.axes["left_y"] == -1.0
    assert touch == punktfunk.Touch(1, 0, True, 0.25, 0.5)
    sent: list[PadFeedback] = []
    session.pads.on_feedback(sent.append)
    assert session.rumble(1, 1.0, 0.25, 50)
    deadline = time.monotonic() + 5
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [PadFeedback(1, 65535, 16384), PadFeedback(1, 0, 0)]  # on, then off
    assert session.led(1, 255, 64, 300)  # clamped; rides with the pad's current rumble
    assert sent[-1] == PadFeedback(1, 0, 0, led_rgb=(255, 64, 255))
    session.end()
    assert list(session.events()) == []  # ended: the iterator finishes


def test_example_games_render_at_the_client_mode() -> None:
    from live_plot import LivePlot
    from pygame_pad import PadGame

    mode = punktfunk.Mode(320, 192, 60, False)
    game = PadGame()
    session = Session("Pad Game", mode, "test", lambda s: None)
    rumbles: list[PadFeedback] = []
    session.pads.on_feedback(rumbles.append)
    first = game.step(0.0, mode).copy()
    assert first.shape == (192, 320, 4) and first.dtype == np.uint8
    pad = punktfunk.GamepadState(0, frozenset({"a"}), {"left_x": 1.0, "left_y": 0.0})
    game.on_input(session, pad)
    moved = game.step(0.5, mode)
    assert not np.array_equal(first, moved) and rumbles[0].rumble_high > 0
    plot = LivePlot()
    frame = plot.render(320, 192)
    assert frame.shape == (192, 320, 3) and frame.dtype == np.uint8
    plot.on_input(punktfunk.Scroll(1.0, 0.0))
    assert plot.zoom > 1.0
    session.end()


def test_host_runs_inside_a_running_asyncio_loop_and_push_never_blocks(tmp_path: Path) -> None:
    (tmp_path / "none.env").write_text("")
    os.environ["PUNKTFUNK_CONFIG"] = str(tmp_path / "none.env")

    async def main() -> dict[str, float]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        port = free_udp_port()
        with punktfunk.Host(gamestream=False, state_dir=tmp_path / "state", mdns=False,
                            native_port=port, bind_address="127.0.0.1") as host:  # fmt: skip
            frames = host.app("Push")
            assert isinstance(frames, punktfunk.PushSource)
            frame = np.zeros((720, 1280, 4), np.uint8)
            costs = []
            for _ in range(500):
                t = time.perf_counter_ns()
                frames.push(frame)
                costs.append(time.perf_counter_ns() - t)
            await asyncio.sleep(0.2)
            port = host.native_port or 0
        task.cancel()
        costs.sort()
        return {"ticks": ticks, "p99_us": costs[494] / 1000, "port": port}

    try:
        got = asyncio.run(main())
    finally:
        del os.environ["PUNKTFUNK_CONFIG"]
    assert got["port"] > 0
    assert got["ticks"] >= 5, got  # the caller's loop kept running
    # No client: push only checks the frame (microseconds; generous bound for a loaded box).
    assert got["p99_us"] < 2000, json.dumps(got)


def test_every_example_runs_headless_as_a_plain_script(tmp_path: Path) -> None:
    """Each example, as a user starts it, brings its host up, serves and stops cleanly
    (settings from the environment, as for `punktfunk serve`); run side by side."""
    from gs_host import BASE_PORT

    (tmp_path / "none.env").write_text("")
    procs = {}
    for i, name in enumerate(("bouncing_balls", "pygame_pad", "live_plot", "hdr_gradient")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
        env.update(
            PUNKTFUNK_CONFIG=str(tmp_path / "none.env"), PUNKTFUNK_STATE_DIR=str(tmp_path / name),
            PUNKTFUNK_GAMESTREAM_PORT=str(BASE_PORT + 100 + 40 * i),
            PUNKTFUNK_NATIVE_PORT=str(free_udp_port()), PUNKTFUNK_MDNS="false",
            PUNKTFUNK_BIND_ADDRESS="127.0.0.1", SDL_VIDEODRIVER="dummy",
        )  # fmt: skip
        script = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), "--seconds", "1.5", "--pin", "1234"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}:\n{out[-3000:]}"
        log = (tmp_path / name / "logs" / "punktfunk.log").read_text()
        assert "embed.host_ready" in log and "host.ready" in log, f"{name}:\n{log[-3000:]}"


def test_settings_are_the_registry_s_and_a_taken_port_says_so(tmp_path: Path) -> None:
    from punktfunk.serve import StartError

    (tmp_path / "none.env").write_text("")
    os.environ["PUNKTFUNK_CONFIG"] = str(tmp_path / "none.env")
    try:
        with pytest.raises(TypeError, match=r"unknown setting.*bitrate_maximum"):
            punktfunk.Host(bitrate_maximum=5)
        with pytest.raises(ValueError, match="names a folder"):
            punktfunk.Host(name="../elsewhere")
        port = free_udp_port()
        common = {"gamestream": False, "mdns": False, "bind_address": "127.0.0.1"}
        first = punktfunk.Host(state_dir=tmp_path / "a", native_port=port, codec="h264", **common)
        assert first.config.codec == "h264" and first.config.state_dir == tmp_path / "a"
        with first:
            second = punktfunk.Host(state_dir=tmp_path / "b", native_port=port, **common)
            with pytest.raises(StartError, match=f"cannot open UDP port {port}"):
                second.start()
            assert first.native_port == port  # the first host is untouched
    finally:
        del os.environ["PUNKTFUNK_CONFIG"]


def test_a_closed_host_gives_every_port_back(tmp_path: Path) -> None:
    # A program that closes its host and opens another (a notebook re-running a cell) must
    # find the ports free: GameStream's ENet socket went only at a later GC pass before.
    (tmp_path / "none.env").write_text("")
    os.environ["PUNKTFUNK_CONFIG"] = str(tmp_path / "none.env")
    base = BASE_PORT
    settings = {"mdns": False, "bind_address": "127.0.0.1", "native_port": free_udp_port()}
    names = {"first": {"name": "sim-lab"}, "again": {"host_name": "Living room"}}
    try:
        for run, naming in names.items():
            with punktfunk.Host(state_dir=tmp_path / run, gamestream_port=base, **naming,
                                **settings):  # fmt: skip
                # Moonlight lists the host by its name: the program's, unless set apart.
                url = f"http://127.0.0.1:{base}/serverinfo?uniqueid=0123456789ABCDEF"
                with urllib.request.urlopen(url, timeout=10) as reply:
                    xml = reply.read().decode()
                want = naming.get("host_name") or naming["name"]
                assert f"<hostname>{want}</hostname>" in xml, xml
    finally:
        del os.environ["PUNKTFUNK_CONFIG"]


def test_an_audio_callback_is_pulled_at_the_stream_pace_and_a_failing_one_goes_silent() -> None:
    session = Session("T", punktfunk.Mode(640, 480, 30, False), "test", lambda s: None)
    asked: list[int] = []

    def tone(frames: int) -> np.ndarray:
        asked.append(frames)
        t = (np.arange(frames) + 240 * (len(asked) - 1)) / 48_000
        return (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)

    session.on_audio(tone)
    audio = session.open_audio(2)  # what the protocol session does when the client opens audio
    start = time.monotonic()
    chunks = [audio.read(1.0) for _ in range(40)]  # 200 ms of stream
    elapsed = time.monotonic() - start
    assert all(c is not None and len(c.pcm) == 240 * 2 * 2 for c in chunks)
    assert asked == [240] * 40 and elapsed >= 0.15  # paced, not as fast as the thread runs
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks if c is not None), np.int16)
    assert abs(int(pcm.max()) - 16383) < 200  # the tone, in both channels

    def broken(frames: int) -> np.ndarray:
        raise RuntimeError("the program's bug")

    session.on_audio(broken)
    audio = session.open_audio(2)
    assert audio.read(0.05) is None and audio.read(0.05) is None  # silence; nothing raised
    session.end()
