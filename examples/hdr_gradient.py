"""An HDR test card in float16: a horizontal ramp from black to 800 cd/m2 (scRGB 10.0).

    python examples/hdr_gradient.py --pin 1234      # launch "HDR Gradient" with HDR on

Frames are HxWx4 float16 RGBA in scRGB (1.0 = SDR white, 80 cd/m2), the layout the HDR ring
carries as is; the app is registered with hdr=True so HDR clients get HDR. A client that
streams SDR gets the card clipped at SDR white, rendered as uint8 for it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import punktfunk

PEAK = 10.0  # scRGB: 800 cd/m2


def gradient(mode: punktfunk.Mode) -> np.ndarray:
    """The test card at `mode`: float16 RGBA, a neutral ramp over the top half and the three
    primaries at full peak below it."""
    w, h = mode.width, mode.height
    frame = np.zeros((h, w, 4), np.float16)
    ramp = np.linspace(0.0, PEAK, w, dtype=np.float32).astype(np.float16)
    frame[: h // 2, :, :3] = ramp[None, :, None]
    third = w // 3
    for i in range(3):
        frame[h // 2 :, i * third : (i + 1) * third, i] = PEAK
    frame[..., 3] = 1.0
    return frame


def sdr(card: np.ndarray) -> np.ndarray:
    """The card for an SDR stream: clipped at SDR white, as HxWx3 uint8 RGB (rendering for the
    session's range spares the host a conversion per frame)."""
    return (np.clip(card[..., :3].astype(np.float32), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


class Card:
    """Caches the card per mode (the callback is asked for every frame)."""

    def __init__(self) -> None:
        self._cache: dict[punktfunk.Mode, np.ndarray] = {}

    def __call__(self, mode: punktfunk.Mode) -> np.ndarray:
        if mode not in self._cache:
            card = gradient(mode)
            self._cache = {mode: card if mode.hdr else sdr(card)}
        return self._cache[mode]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", default=None, help="preset pairing PIN")
    parser.add_argument("--seconds", type=float, default=0, help="stop after S s (0: never)")
    args = parser.parse_args()
    with punktfunk.Host(name="hdr-gradient", pin=args.pin, hdr="auto") as host:
        host.app("HDR Gradient", source=Card(), hdr=True)
        deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
        try:
            while time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
