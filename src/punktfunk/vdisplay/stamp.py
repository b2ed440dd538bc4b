"""A frame stamp drawn into the pixels: frame counter + capture time, readable after encoding.

128 bits in an 8 x 16 grid of 16x16-pixel blocks at the top-left corner (256 x 128 pixels):
a 16-bit sync word, the 32-bit frame counter, the 64-bit capture time (CLOCK_MONOTONIC ns,
the clock `SlotHeader.capture_ns` uses) and a CRC-16 over counter and time. Blocks are pure
black or white and aligned to 16 pixels, so 4:2:0 chroma subsampling and block-based video
codecs leave their luma intact; the decoder samples each block's centre and thresholds at half
scale. A client compares the time with its own clock for latency (same machine) and the counter
with the previous frame's for drops and duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 16
COLS, ROWS = 16, 8
WIDTH, HEIGHT = COLS * BLOCK, ROWS * BLOCK
SYNC = 0xA5C3


@dataclass(frozen=True)
class Stamp:
    counter: int
    capture_ns: int


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _payload(counter: int, capture_ns: int) -> bytes:
    return (counter & 0xFFFFFFFF).to_bytes(4, "big") + (capture_ns & (2**64 - 1)).to_bytes(8, "big")


def stamp_bits(counter: int, capture_ns: int) -> np.ndarray:
    """The 128 bits (MSB first) as a (ROWS, COLS) bool grid."""
    payload = _payload(counter, capture_ns)
    word = SYNC.to_bytes(2, "big") + payload + crc16(payload).to_bytes(2, "big")
    bits = np.unpackbits(np.frombuffer(word, dtype=np.uint8))
    return bits.astype(bool).reshape(ROWS, COLS)


def draw_stamp(pixels: np.ndarray, counter: int, capture_ns: int, white: float | int) -> None:
    """Write the stamp into the top-left corner of an (H, W, 4) image, alpha untouched.

    `white` is the full-scale value of the image's type (255 for BGRA8, 1.0 for scRGB FP16).
    """
    blocks = pixels[:HEIGHT, :WIDTH, :3].reshape(ROWS, BLOCK, COLS, BLOCK, 3)
    values = stamp_bits(counter, capture_ns).astype(pixels.dtype) * pixels.dtype.type(white)
    blocks[...] = values[:, None, :, None, None]


def decode_stamp(pixels: np.ndarray) -> Stamp | None:
    """Read a stamp from an (H, W, C) image (uint8 or float, any channel order); None if the
    corner holds no valid stamp (wrong sync word or CRC)."""
    if pixels.shape[0] < HEIGHT or pixels.shape[1] < WIDTH:
        return None
    blocks = pixels[:HEIGHT, :WIDTH, :3].reshape(ROWS, BLOCK, COLS, BLOCK, 3)
    q = BLOCK // 4  # the central half of each block: edges are where codecs ring
    centres = blocks[:, q:-q, :, q:-q, :].astype(np.float32).mean(axis=(1, 3, 4))
    full = 255.0 if pixels.dtype == np.uint8 else 1.0
    bits = (centres > full / 2).reshape(-1)
    word = np.packbits(bits).tobytes()
    if int.from_bytes(word[:2], "big") != SYNC:
        return None
    payload = word[2:14]
    if crc16(payload) != int.from_bytes(word[14:16], "big"):
        return None
    return Stamp(int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:], "big"))
