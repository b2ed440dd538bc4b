"""Opus encode/decode over PyAV's libopus with GameStream's settings.

48 kHz, CBR, restricted-lowdelay, 5 ms (or 10 ms) packets. Stereo is one coupled stream;
surround is Opus multistream. FFmpeg's libopus wrapper picks the stream layout itself: its
default (mapping family 1 in the header, classic multistream API) gives exactly GameStream's
normal-quality shapes (5.1: 4 streams, 2 coupled; 7.1: 5 streams, 3 coupled), and mapping
family 255 gives the high-quality shapes (one uncoupled stream per channel). The encoder
reports the shape it used (`streams`, `coupled`, `mapping`) so the SDP can advertise it.

`mapping` is in GameStream/libopus terms: output channel i, in the capture order
FL FR FC LFE BL BR SL SR, is coded channel mapping[i] (what a client passes to
opus_multistream_decoder_create).
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from .base import SAMPLE_RATE

# FFmpeg's channel orders equal our capture channel maps (mono: microphones).
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# Vorbis (mapping family 1) order of each FFmpeg channel, per channel count.
_VORBIS_POS = {
    2: (0, 1),
    6: (0, 2, 1, 5, 3, 4),  # FL FR FC LFE BL BR -> positions in FL FC FR BL BR LFE
    8: (0, 2, 1, 7, 5, 6, 3, 4),  # ... in FL FC FR SL SR BL BR LFE
}


@dataclass(frozen=True)
class OpusConfig:
    channels: int
    bitrate: int
    high_quality: bool = False
    frame_ms: float = 5.0


# GameStream's audio configurations (normal / high quality), as the original hosts use them.
GAMESTREAM_CONFIGS = {
    (2, False): OpusConfig(2, 96_000),
    (2, True): OpusConfig(2, 512_000, True),
    (6, False): OpusConfig(6, 256_000),
    (6, True): OpusConfig(6, 1_536_000, True),
    (8, False): OpusConfig(8, 450_000),
    (8, True): OpusConfig(8, 2_048_000, True),
}


def gamestream_config(channels: int, high_quality: bool, frame_ms: float = 5.0) -> OpusConfig:
    base = GAMESTREAM_CONFIGS[(channels, high_quality)]
    return OpusConfig(base.channels, base.bitrate, base.high_quality, frame_ms)


class OpusEncoder:
    """Interleaved s16 PCM frames in, one raw Opus packet out per `frame_ms` of audio."""

    def __init__(self, config: OpusConfig) -> None:
        if config.channels not in LAYOUTS:
            raise ValueError(f"unsupported channel count {config.channels} (1, 2, 6 or 8)")
        if config.frame_ms not in (2.5, 5.0, 10.0, 20.0):
            raise ValueError(f"unsupported Opus frame duration {config.frame_ms} ms")
        self.config = config
        self.layout = LAYOUTS[config.channels]
        self.frame_samples = int(SAMPLE_RATE * config.frame_ms / 1000)
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = self.layout
        ctx.format = "s16"
        ctx.bit_rate = config.bitrate
        options = {
            "application": "lowdelay",  # OPUS_APPLICATION_RESTRICTED_LOWDELAY
            "frame_duration": f"{config.frame_ms:g}",
            "vbr": "off",
        }
        if config.channels > 2 and config.high_quality:
            options["mapping_family"] = "255"
        ctx.options = options
        ctx.open()
        self._ctx = ctx
        self._pts = 0
        self.streams, self.coupled, self.mapping = _shape(bytes(ctx.extradata or b""), config)

    def encode(self, pcm: bytes) -> bytes:
        """One frame of interleaved s16 PCM (exactly `frame_samples` per channel) -> a packet."""
        expected = self.frame_samples * self.config.channels * 2
        if len(pcm) != expected:
            raise ValueError(f"need {expected} bytes of PCM per frame, got {len(pcm)}")
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=self.layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += self.frame_samples
        packets = self._ctx.encode(frame)
        return b"".join(bytes(p) for p in packets)


def _shape(head: bytes, config: OpusConfig) -> tuple[int, int, tuple[int, ...]]:
    """(streams, coupled, mapping in capture order) from an OpusHead."""
    if len(head) < 19 or head[:8] != b"OpusHead":
        raise ValueError("libopus encoder produced no OpusHead")
    family = head[18]
    if family == 0:
        return 1, config.channels - 1, tuple(range(config.channels))
    streams, coupled = head[19], head[20]
    table = head[21 : 21 + config.channels]
    if family == 1:  # the table is in Vorbis order: put it in our capture order
        return streams, coupled, tuple(table[pos] for pos in _VORBIS_POS[config.channels])
    return streams, coupled, tuple(table)


def _decoder_head(channels: int, streams: int, coupled: int, mapping: tuple[int, ...]) -> bytes:
    """An OpusHead that makes FFmpeg's decoder use `mapping` with libopus semantics.

    FFmpeg reads a surround table in Vorbis order and reorders it into its own channel order,
    so the table is written in Vorbis order: the decoder then does exactly what a GameStream
    client's opus_multistream_decoder_create(streams, coupled, mapping) does.
    """
    table = [0] * channels
    for ch, pos in enumerate(_VORBIS_POS[channels]):
        table[pos] = mapping[ch]
    head = b"OpusHead" + bytes([1, channels]) + (0).to_bytes(2, "little")
    head += SAMPLE_RATE.to_bytes(4, "little") + bytes(2)
    return head + bytes([1, streams, coupled, *table])


class OpusDecoder:
    """Raw Opus packets in, interleaved s16 PCM out in capture order.

    Mono and stereo need nothing else; surround needs the stream shape the encoder advertised
    (`OpusEncoder.streams`, `.coupled`, `.mapping`).
    """

    def __init__(
        self, channels: int = 2, shape: tuple[int, int, tuple[int, ...]] | None = None
    ) -> None:
        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = LAYOUTS[channels]
        if channels > 2:
            if shape is None:
                raise ValueError("a surround decoder needs (streams, coupled, mapping)")
            ctx.extradata = _decoder_head(channels, *shape)
        ctx.open()
        self._ctx = ctx
        self.channels = channels

    def decode(self, packet: bytes) -> bytes:
        """One packet -> interleaved s16 PCM (empty if the decoder produced nothing)."""
        out = []
        for frame in self._ctx.decode(av.Packet(packet)):
            array = frame.to_ndarray()
            if frame.format.is_planar:
                array = array.T
            if array.dtype != np.int16:  # libopus decodes to float unless asked otherwise
                array = np.clip(np.rint(array * 32768.0), -32768, 32767).astype(np.int16)
            out.append(np.ascontiguousarray(array).astype("<i2").tobytes())
        return b"".join(out)
