"""A bitrate change on an open libx264 encoder (issue 13): applied live, no IDR, and the output
follows within about a second, VBV included (each frame sized for the new rate, not the old
ceiling). libx265 cannot re-target live through FFmpeg and still re-opens (one IDR; see
test_encode_roundtrip.py).

Frames are encoded as fast as the machine goes; "a second" is `FPS` frames of stream time.
The content is fresh noise every frame, so the encoder spends whatever rate it is given.
"""

from __future__ import annotations

import numpy as np

from punktfunk.capture.base import CapturedFrame
from punktfunk.encode.backends import spec_for
from punktfunk.encode.base import Codec, EncodedFrame, EncoderBackend, FrameType
from punktfunk.encode.pyav import EncoderParams, PyAVEncoder
from punktfunk.proto.frame import PixelFormat

FPS = 30
W, H = 640, 360


def _run(codec: Codec, steps: list[tuple[int, int]]) -> list[EncodedFrame]:
    """Encode `frames` frames at each `kbps` in turn; all output, in order."""
    enc = PyAVEncoder(
        spec_for(EncoderBackend.SOFTWARE, codec),
        EncoderParams(bitrate_kbps=steps[0][0], fps=FPS, threads=2),
    )
    rng = np.random.default_rng(7)
    out: list[EncodedFrame] = []
    index = 0
    try:
        for kbps, frames in steps:
            enc.set_bitrate(kbps)
            for _ in range(frames):
                pixels = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
                enc.submit(CapturedFrame(pixels, PixelFormat.BGRA8, index, index, False))
                index += 1
                out.extend(enc.poll())
        out.extend(enc.flush())
    finally:
        enc.close()
    return out


def _kbps(frames: list[EncodedFrame]) -> float:
    return sum(len(f.data) for f in frames) * 8 / 1000 / (len(frames) / FPS)


def test_x264_follows_a_bitrate_change_live_without_an_idr() -> None:
    down_at, up_at = 2 * FPS, 4 * FPS
    out = _run(Codec.H264, [(3000, down_at), (800, up_at - down_at), (2400, 2 * FPS)])
    assert len(out) == 6 * FPS
    idrs = [f.frame_index for f in out if f.frame_type is FrameType.IDR]
    assert idrs == [0], f"a bitrate change cost an IDR: IDRs at {idrs}"
    before = _kbps(out[FPS:down_at])
    after_down = out[down_at : down_at + FPS]  # the second after the change
    after_up = out[up_at : up_at + FPS]
    assert before > 2000, before  # the content fills the rate it is given
    assert _kbps(after_down) < 1.25 * 800, _kbps(after_down)
    assert _kbps(after_up) > 0.7 * 2400, _kbps(after_up)
    # The VBV moved too: no frame after the first two bursts towards the old rate's size.
    budget = 800_000 / 8 / FPS
    assert max(len(f.data) for f in after_down[2:]) < 1.25 * budget, [
        len(f.data) for f in after_down
    ]
