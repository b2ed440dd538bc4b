"""End to end: `punktfunk.Host` in this test process streams the bouncing-balls example to a
real Moonlight client (moonlight-python) and to the native client.

The program draws a frame stamp (counter + capture time) at the client's 1280x720; the client
reading the stamps back is the pixel check that it decoded the program's own frames. Keys,
a click and a gamepad press sent by the client reach the program as typed events; the pad's
A button makes the program rumble, which the Moonlight client hears.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import punktfunk
from gs_host import BASE_PORT, finish_drive, start_drive
from test_native_stream import free_udp_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from bouncing_balls import BACKGROUND, Balls, serve
from hdr_gradient import Card

PIN = "1234"


def _play_tone(session: punktfunk.Session, hz: float = 440.0) -> None:
    """The program's audio: a sine in 10 ms blocks at the real-time rate, while it streams."""

    def run() -> None:
        n, t0 = 0, time.monotonic()
        while session.active:
            t = (np.arange(480) + n * 480) / 48_000
            session.play((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32))
            n += 1
            time.sleep(max(0.0, t0 + n * 0.01 - time.monotonic()))

    threading.Thread(target=run, daemon=True).start()


def _until(what: str, ok: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.05)


@contextlib.contextmanager
def _balls_host(
    tmp: Path, tone_hz: float = 440.0, **settings: object
) -> Iterator[tuple[punktfunk.Host, Balls]]:
    """The bouncing-balls example served by a host of its own, with a tone per session."""
    (tmp / "none.env").write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PUNKTFUNK_CONFIG", str(tmp / "none.env"))
        balls = Balls()
        balls.add(300, 300)
        with punktfunk.Host(
            pin=PIN, state_dir=tmp / "state", native_port=free_udp_port(),
            bind_address="127.0.0.1", mdns=False, monitor_linger_ms=0, **settings,
        ) as h:  # fmt: skip
            serve(h, balls)
            h.on_session(start=lambda session: _play_tone(session, tone_hz))
            yield h, balls


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[punktfunk.Host, Balls]]:
    # codec_fit off: HDR needs HEVC offered at any mode
    with _balls_host(tmp_path_factory.mktemp("embed"), name="test", gamestream_port=BASE_PORT,
                     codec_fit=False) as (h, balls):  # fmt: skip
        h.app("HDR Gradient", source=Card(), hdr=True)
        yield h, balls


def test_with_media_workers_moonlight_hears_the_program_not_the_sound_server(
    tmp_path: Path,
) -> None:
    """session_workers=on: video is captured and sent by a worker, but the program plays into
    its own process, so its audio stays in the host. 660 Hz here, not the 440 Hz tone a worker
    would capture from the sound server's side (or its fallback)."""
    port = BASE_PORT + 300
    with _balls_host(tmp_path, tone_hz=660.0, session_workers="on", gamestream_port=port,
                     codec_fit=False):  # fmt: skip
        client = start_drive(tmp_path, "--port", str(port), "--pin", PIN, "--app", "Balls",
                             "--mode", "640x480x30", "--seconds", "4")  # fmt: skip
        _until("the session's media worker", _workers, 60)
        result = finish_drive(client)
        assert result["decoded"] > 0, result
        assert result["audio_chunks"] > 50 and abs(result["tone_hz"] - 660) < 5, result["tone_hz"]


def test_moonlight_streams_the_program_and_its_input_comes_back_typed(
    host: tuple[punktfunk.Host, Balls], tmp_path: Path
) -> None:
    h, balls = host
    go = tmp_path / "input-now"
    client = start_drive(
        tmp_path, "--pin", PIN, "--app", "Balls", "--mode", "1280x720x60", "--seconds", "6",
        "--input-after-file", str(go), "--keys", "ab", "--click", "640,360",
        "--gamepad", "0x1000,0,0,0,0,0,0", "--save-frame", str(tmp_path / "last.npy"),
    )  # fmt: skip
    _until("the session", lambda: h.sessions, 60)
    session = h.sessions[0]
    assert session.mode == punktfunk.Mode(1280, 720, 60, False)
    time.sleep(1.5)  # the stream is flowing
    go.write_text("")
    result = finish_drive(client)
    assert result["shape"] == [720, 1280, 3], result
    # The client read back the stamps the program drew: its own frames, at the client's mode.
    assert len(result["counters"]) >= 30, result
    assert all(0 < c <= balls.frames for c in result["counters"])
    picture = np.load(tmp_path / "last.npy")  # RGB, as the client decoded it
    median = np.median(picture[200:].reshape(-1, 3), axis=0)  # below the stamp: background
    assert np.abs(median - BACKGROUND).max() <= 8, median
    kinds = {type(ev).__name__ for ev in balls.events}
    keys = [ev for ev in balls.events if isinstance(ev, punktfunk.KeyEvent) and ev.down]
    assert [(k.key, k.text, k.scancode) for k in keys[:2]] == [("a", "a", 30), ("b", "b", 48)]
    clicks = [ev for ev in balls.events if isinstance(ev, punktfunk.Button) and ev.down]
    assert clicks and (clicks[0].button, clicks[0].x, clicks[0].y) == ("left", 640, 360), kinds
    pads = [ev for ev in balls.events if isinstance(ev, punktfunk.GamepadState) and ev.buttons]
    assert pads and pads[0].pressed("a"), kinds
    assert [0, 32768, 65535] in result["rumble"], result["rumble"]
    # The program's audio, played with session.play, is what the client hears.
    assert result["audio_chunks"] > 50 and abs(result["tone_hz"] - 440) < 5, result["tone_hz"]
    _until("the session's end", lambda: not h.sessions, 30)


@pytest.fixture(scope="module", params=["in-process", "worker"])
def native_host(
    request: pytest.FixtureRequest, host: tuple[punktfunk.Host, Balls],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[punktfunk.Host, Balls]]:  # fmt: skip
    """The GameStream host's own native side, and a host whose native sessions run their
    capture and encode in media workers (the program still plays the driver's part)."""
    if request.param == "in-process":
        yield host
        return
    with _balls_host(tmp_path_factory.mktemp("embed-workers"), name="test-workers",
                     gamestream=False, session_workers="on") as pair:  # fmt: skip
        yield pair


def _workers() -> list[int]:
    """This process's media workers (`python -m punktfunk.session.worker`)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"punktfunk.session.worker" in cmdline:
            found.append(int(entry.name))
    return found


def test_native_client_streams_the_program(
    native_host: tuple[punktfunk.Host, Balls], tmp_path: Path
) -> None:
    from punktfunk.native.client.client import InputRoute
    from punktfunk.native.client.dial import pair
    from punktfunk.native.client.probe import ClientStore, client_hello
    from punktfunk.native.client.receiver import NativeReceiver
    from punktfunk.native.wire.dgram import InputEvent, InputKind
    from punktfunk.native.wire.messages import Mode
    from punktfunk.session.workerproc import workers_enabled

    h, _ = native_host
    workers = workers_enabled(h.config.session_workers)
    store = ClientStore(tmp_path / "client")
    addr = ("127.0.0.1", h.native_port)
    host_fp = pair(addr, store.identity, PIN, "embed-test")
    hello = replace(client_hello(Mode(1280, 720, 30), "embed-test", bitrate_kbps=4000),
                    launch="Balls")  # fmt: skip
    rumbles: list[tuple[int, int, int]] = []
    receiver = NativeReceiver(addr, store.identity, host_fp, hello,
                              on_rumble=lambda *r: rumbles.append(r))  # fmt: skip
    runner = threading.Thread(target=receiver.run, args=(5.0,), daemon=True)
    runner.start()
    _until("the session", lambda: h.sessions and receiver.server_hello is not None, 60)
    session = h.sessions[0]
    assert session.mode == punktfunk.Mode(1280, 720, 30, False)
    got: list[punktfunk.InputEvent] = []
    session.on_input(got.append)
    ended: list[punktfunk.Session] = []
    h.on_session(end=ended.append)
    _until("a decoded frame", lambda: receiver.stats.frames_decoded, 30)
    assert bool(_workers()) == workers  # the capture and encode ran where they were set to
    route = InputRoute(receiver.server_hello)  # type: ignore[arg-type]
    for ev, reliable in route.route([InputEvent(InputKind.KEY_DOWN, 0x48),
                                     InputEvent(InputKind.KEY_UP, 0x48)]):  # fmt: skip
        receiver.send_input(ev, reliable)
    _until("the key", lambda: any(isinstance(e, punktfunk.KeyEvent) for e in got), 15)
    key = next(e for e in got if isinstance(e, punktfunk.KeyEvent))
    assert (key.key, key.text, key.down) == ("h", "h", True)
    # A wrong frame is refused with what was expected; the stream goes on.
    with pytest.raises(ValueError, match=r"streams 1280x720: expected 720x1280x3 uint8 RGB"):
        session.push(np.zeros((480, 640, 3), np.uint8))
    decoded = receiver.stats.frames_decoded
    _until("frames after the refusal", lambda: receiver.stats.frames_decoded > decoded + 10, 15)
    assert session.rumble(0, 1.0, 0.5, 100)
    _until("the rumble", lambda: rumbles, 15)
    assert rumbles[0][1:] == (65535, 32768), rumbles
    # The client's window changes size: the same program, asked for frames at the new size.
    receiver.request_mode(Mode(960, 540, 30))
    _until("the new StreamConfig", lambda: receiver.stream_configs, 30)
    _until("the program at 960x540", lambda: h.sessions and h.sessions[0].mode.width == 960, 30)
    resized = h.sessions[0]  # the same app as a new session at the new size (docs/embedding.md)
    assert resized.app == session.app and resized.mode == punktfunk.Mode(960, 540, 30, False)
    _until("the old session's end hook", lambda: ended == [session], 15)
    decoded = receiver.stats.frames_decoded
    _until("frames at the new size", lambda: receiver.stats.frames_decoded > decoded + 10, 15)
    stats = session.stats  # the protocol session's numbers, per embedded session
    assert stats["session"] and stats["frames"] > 0 and stats["fps"] > 0, stats  # type: ignore[operator]
    assert stats["host_latency_ms"]["p99"] > 0, stats  # type: ignore[index]
    runner.join(timeout=60)
    _until("the end hook", lambda: ended == [session, resized], 30)
    assert not resized.active and h.sessions == []
    assert receiver.stats.frames_decoded >= 20, receiver.stats
    assert receiver.stats.stamps, "no stamp of the program's frames read back"
    assert receiver.stats.audio_packets > 50, receiver.stats


def test_moonlight_asking_for_hdr_gets_the_float16_card_and_sdr_apps_stay_sdr(
    host: tuple[punktfunk.Host, Balls], tmp_path: Path
) -> None:
    h, _ = host
    modes: list[punktfunk.Mode] = []
    h.on_session(start=lambda s: modes.append(s.mode))
    result = finish_drive(start_drive(
        tmp_path, "--pin", PIN, "--app", "HDR Gradient", "--mode", "640x480x30", "--seconds", "3",
        "--codec", "hevc10",
    ))  # fmt: skip
    assert modes == [punktfunk.Mode(640, 480, 30, True)]
    assert result["shape"] == [480, 640, 3] and result["decoded"] >= 10, result
    assert result["hdr_mode"] == [True], result
    # An app registered without hdr=True renders SDR: the same HDR request streams it SDR.
    result = finish_drive(start_drive(
        tmp_path, "--pin", PIN, "--app", "Balls", "--mode", "640x480x30", "--seconds", "1.5",
        "--codec", "hevc10",
    ))  # fmt: skip
    assert modes[1:] == [punktfunk.Mode(640, 480, 30, False)]
    assert result["decoded"] >= 5 and result["hdr_mode"] == [False], result


def test_punktfunk_probe_launches_the_program_by_name(
    host: tuple[punktfunk.Host, Balls], tmp_path: Path
) -> None:
    from test_native_stream import PUNKTFUNK

    h, balls = host
    before = balls.frames
    (tmp_path / "none.env").write_text("")
    env = {**os.environ, "PUNKTFUNK_CONFIG": str(tmp_path / "none.env")}
    out = subprocess.run(
        [str(PUNKTFUNK), "probe", "127.0.0.1", "--port", str(h.native_port), "--pin", PIN,
         "--launch", "Balls", "--mode", "1280x720@30", "--seconds", "3", "--json",
         "--client-dir", str(tmp_path / "probe")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.stdout.strip(), out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["sizes"] == {"1280x720": report["frames_decoded"]}, report
    assert report["frames_decoded"] >= 20 and report["stamps_read"] >= 20, report
    assert report["counters_in_order"], {k: report[k] for k in ("stamps_read", "stamps_repeated")}
    assert balls.frames > before, (before, balls.frames)
