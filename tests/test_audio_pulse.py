"""Session audio against a real PulseAudio started by this module (no mocks).

Sound is played into the session sink with pacat and must come out of the capturer at the
right frequency on the right channel; client Opus packets written to the mic must be
recordable from the virtual source with parec.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from punktfunk.audio import pulse as pulse_module
from punktfunk.audio.base import AudioCapturer, AudioChunk, VirtualMic
from punktfunk.audio.mic import PulseMic
from punktfunk.audio.opus import OpusConfig, OpusEncoder
from punktfunk.audio.pulse import (
    CHANNEL_MAPS,
    PulseCapturer,
    PulseServer,
    open_capturer,
    session_env,
)
from punktfunk.audio.tone import TONE_HZ, ToneCapturer

RATE = 48_000


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """A private PulseAudio (as root: --system=false, -n, only the native protocol)."""
    assert shutil.which("pulseaudio"), "pulseaudio is not installed (scripts/setup.sh does it)"
    runtime = tmp_path_factory.mktemp("pulse")
    env = {**os.environ, "HOME": str(runtime), "PULSE_RUNTIME_PATH": str(runtime),
           "XDG_RUNTIME_DIR": str(runtime)}  # fmt: skip
    socket = runtime / "native"
    argv = ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n",
            "--disallow-exit", "--use-pid-file=false", "--log-target=stderr",
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}"]  # fmt: skip
    log = (runtime / "pulse.log").open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    server = None
    deadline = time.monotonic() + 20
    while server is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            server = PulseServer.connect(f"unix:{socket}")
        except OSError:
            time.sleep(0.1)
    assert server is not None, f"pulseaudio did not start: {(runtime / 'pulse.log').read_text()}"
    yield server
    proc.terminate()
    proc.wait(10)
    log.close()


def _tones(freqs: list[float], seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.stack([np.sin(2 * np.pi * f * t) * 12000 for f in freqs], axis=1).astype("<i2")


def _play(server: PulseServer, sink: str, pcm: np.ndarray, path: Path) -> subprocess.Popen[bytes]:
    channels = pcm.shape[1]
    path.write_bytes(pcm.tobytes())
    argv = ["pacat", "--playback", f"--server={server.address}", f"--device={sink}", "--raw",
            "--format=s16le", f"--rate={RATE}", f"--channels={channels}",
            f"--channel-map={CHANNEL_MAPS[channels]}", str(path)]  # fmt: skip
    return subprocess.Popen(argv)


def _capture(capturer: PulseCapturer, seconds: float) -> np.ndarray:
    chunks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        chunk = capturer.read(0.5)
        assert chunk is not None, "no audio chunk within 0.5 s"
        assert chunk.frames == 240 and chunk.channels == capturer.channels
        chunks.append(np.frombuffer(chunk.pcm, "<i2").reshape(-1, chunk.channels))
    return np.concatenate(chunks)


def _dominant_hz(signal: np.ndarray) -> float:
    x = signal.astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def _modules_named(server: PulseServer, text: str) -> list[int]:
    return [index for index, _, args in server.modules() if text in args]


SURROUND = {n: [300.0 + 150 * i for i in range(n)] for n in (6, 8)}


@pytest.mark.parametrize("freqs", [[1000.0, 1500.0], SURROUND[6], SURROUND[8]],
                         ids=["stereo", "5.1", "7.1"])  # fmt: skip
def test_played_audio_comes_out_of_the_capturer(
    pulse: PulseServer, tmp_path: Path, freqs: list[float]
) -> None:
    capturer = PulseCapturer(pulse, f"cap{len(freqs)}", channels=len(freqs))
    assert isinstance(capturer, AudioCapturer)
    try:
        assert capturer.sink_name == f"punktfunk-cap{len(freqs)}"
        player = _play(pulse, capturer.sink_name, _tones(freqs, 3.0), tmp_path / "tone.raw")
        time.sleep(0.5)  # let the tone reach the sink
        captured = _capture(capturer, 1.0)
        player.kill()
        player.wait()
    finally:
        capturer.close()
    assert captured.shape[0] >= RATE * 0.9
    for channel, freq in enumerate(freqs):
        got = _dominant_hz(captured[:, channel])
        assert abs(got - freq) < 5, f"channel {channel}: {got:.1f} Hz, played {freq} Hz"


def test_backlog_is_bounded_when_nobody_reads(pulse: PulseServer) -> None:
    capturer = PulseCapturer(pulse, "idle", channels=2)
    try:
        time.sleep(0.6)  # a slow consumer: 120 chunks arrive, at most 40 (200 ms) are kept
        chunk = capturer.read(0.5)
        assert chunk is not None
        assert capturer.dropped > 50
        age = time.monotonic_ns() - chunk.capture_ns
        assert age < (pulse_module.MAX_LATENCY_MS + 50) * 1_000_000, "stale audio was kept"
    finally:
        capturer.close()


def test_sink_is_unloaded_on_close_and_on_garbage_collection(pulse: PulseServer) -> None:
    capturer = PulseCapturer(pulse, "env", channels=2)
    env = session_env(capturer)
    assert env == {"PULSE_SERVER": pulse.address, "PULSE_SINK": "punktfunk-env"}
    assert _modules_named(pulse, "sink_name=punktfunk-env ")
    capturer.close()
    assert not _modules_named(pulse, "sink_name=punktfunk-env ")
    assert "punktfunk-env" not in pulse.sinks()

    dropped = PulseCapturer(pulse, "dropped", channels=2)  # its owner "dies" without close()
    assert _modules_named(pulse, "sink_name=punktfunk-dropped ")
    del dropped
    gc.collect()
    assert not _modules_named(pulse, "sink_name=punktfunk-dropped ")


def test_sweep_unloads_modules_of_dead_processes(pulse: PulseServer) -> None:
    code = (
        "import os, sys\n"
        "from punktfunk.audio.pulse import PulseCapturer, PulseServer\n"
        "c = PulseCapturer(PulseServer.connect(sys.argv[1]), 'crashed', 2)\n"
        "os._exit(0)\n"  # no close, no finalizers: a crash
    )
    subprocess.run([sys.executable, "-c", code, pulse.address], check=True, timeout=60)
    assert _modules_named(pulse, "sink_name=punktfunk-crashed ")
    assert pulse.sweep() == 1
    assert not _modules_named(pulse, "sink_name=punktfunk-crashed ")


def test_mic_audio_reaches_the_virtual_source(pulse: PulseServer, tmp_path: Path) -> None:
    mic = PulseMic(pulse, "mic1", channels=1)
    assert isinstance(mic, VirtualMic)
    out = (tmp_path / "rec.raw").open("wb")
    recorder = subprocess.Popen(
        ["parec", f"--server={pulse.address}", f"--device={mic.source_name}", "--raw",
         "--format=s16le", f"--rate={RATE}", "--channels=1", "--latency-msec=20"],
        stdout=out,
    )  # fmt: skip
    try:
        assert mic.source_name == "punktfunk-mic1-mic"
        assert session_env(ToneCapturer(), mic)["PULSE_SOURCE"] == "punktfunk-mic1-mic"
        encoder = OpusEncoder(OpusConfig(1, 64_000))
        mic.write_opus(b"\xff\xfe\x00 not opus")  # a bad client packet is dropped, counted
        assert mic.bad_packets == 1
        tone = _tones([700.0], 1.5)
        start = time.monotonic()
        for i in range(len(tone) // 240):  # paced like a client: one 5 ms packet per 5 ms
            mic.write_opus(encoder.encode(tone[i * 240 : (i + 1) * 240].tobytes()))
            time.sleep(max(0.0, start + (i + 1) * 0.005 - time.monotonic()))
        mic.write(AudioChunk(bytes(480 * 10), 1, 0))  # raw PCM takes the same path
        time.sleep(0.3)
    finally:
        recorder.terminate()
        recorder.wait()
        out.close()
        mic.close()
    recorded = np.frombuffer((tmp_path / "rec.raw").read_bytes(), "<i2")
    loud = recorded[np.abs(recorded) > 2000]
    assert len(loud) > RATE * 0.5, "the source recorded (almost) nothing"
    start = int(np.argmax(np.abs(recorded) > 2000))
    assert abs(_dominant_hz(recorded[start + 4800 : start + 4800 + RATE // 2]) - 700) < 5
    assert not _modules_named(pulse, "punktfunk-mic1-mic")


def test_no_sound_server_falls_back_to_the_tone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="punktfunk")
    monkeypatch.setattr(pulse_module, "_fallback_logged", False)
    nowhere = f"unix:{tmp_path}/nothing-here"
    open_capturer("lonely", 2, server=nowhere).close()
    capturer = open_capturer("lonely", 2, server=nowhere)
    assert caplog.text.count("audio.fallback_tone") == 1, "the fallback is logged once"
    assert isinstance(capturer, ToneCapturer) and isinstance(capturer, AudioCapturer)
    assert capturer.sink_name == ""
    assert session_env(capturer) == {}
    chunks = [capturer.read(1.0) for _ in range(40)]
    capturer.close()
    pcm = np.concatenate([np.frombuffer(c.pcm, "<i2").reshape(-1, 2) for c in chunks if c])
    assert len(pcm) == 40 * 240
    assert abs(_dominant_hz(pcm[:, 0]) - TONE_HZ) < 5
