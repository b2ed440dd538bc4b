"""Opus over PyAV's libopus with GameStream's settings: CBR packet sizes, stream shapes, and a
round trip where every channel keeps its own tone, decoded the way a client does with the shape
the encoder advertises."""

from __future__ import annotations

import numpy as np
import pytest

from punktfunk.audio.opus import (
    OpusConfig,
    OpusDecoder,
    OpusEncoder,
    gamestream_config,
)

RATE = 48_000


def _tones(freqs: list[float], samples: int) -> np.ndarray:
    t = np.arange(samples) / RATE
    return np.stack([np.sin(2 * np.pi * f * t) * 8000 for f in freqs], axis=1).astype("<i2")


def _dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(float) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


@pytest.mark.parametrize(
    ("channels", "high_quality", "shape"),
    [
        (2, False, (1, 1, (0, 1))),
        (2, True, (1, 1, (0, 1))),
        (6, False, (4, 2, (0, 1, 4, 5, 2, 3))),
        (6, True, (6, 0, (0, 1, 2, 3, 4, 5))),
        (8, False, (5, 3, (0, 1, 6, 7, 4, 5, 2, 3))),
        (8, True, (8, 0, tuple(range(8)))),
    ],
)
def test_round_trip_keeps_every_channel(
    channels: int, high_quality: bool, shape: tuple[int, int, tuple[int, ...]]
) -> None:
    config = gamestream_config(channels, high_quality)
    encoder = OpusEncoder(config)
    assert (encoder.streams, encoder.coupled, encoder.mapping) == shape
    freqs = [300.0 + 200 * i for i in range(channels)]
    pcm = _tones(freqs, RATE // 2)
    step = encoder.frame_samples
    packets = [encoder.encode(pcm[i : i + step].tobytes()) for i in range(0, len(pcm), step)]
    assert {len(p) for p in packets} == {config.bitrate * 5 // 8000}, "CBR: one size"
    decoder = OpusDecoder(channels, (encoder.streams, encoder.coupled, encoder.mapping))
    out = np.frombuffer(b"".join(decoder.decode(p) for p in packets), "<i2")
    out = out.reshape(-1, channels)
    for ch, freq in enumerate(freqs):
        assert abs(_dominant_hz(out[4800:, ch]) - freq) < 5, f"channel {ch}"


def test_ten_ms_frames_and_mono() -> None:
    encoder = OpusEncoder(OpusConfig(1, 64_000, frame_ms=10.0))
    assert encoder.frame_samples == 480
    pcm = _tones([700.0], RATE // 2)
    packets = [encoder.encode(pcm[i : i + 480].tobytes()) for i in range(0, len(pcm), 480)]
    assert {len(p) for p in packets} == {80}
    decoder = OpusDecoder(1)
    out = np.frombuffer(b"".join(decoder.decode(p) for p in packets), "<i2")
    assert abs(_dominant_hz(out[4800:]) - 700) < 5


def test_bad_input_is_refused() -> None:
    encoder = OpusEncoder(gamestream_config(2, False))
    with pytest.raises(ValueError, match="960 bytes"):
        encoder.encode(bytes(100))
    with pytest.raises(ValueError, match="channel count"):
        OpusEncoder(OpusConfig(4, 96_000))
    with pytest.raises(ValueError, match="surround decoder"):
        OpusDecoder(6)
