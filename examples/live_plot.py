"""A live matplotlib plot streamed to any client (works the same from a Jupyter kernel).

    python examples/live_plot.py --pin 1234         # then launch "Live Plot" in Moonlight

The plot is redrawn ~10 times a second at the client's resolution and pushed; the stream
keeps its own rate (the encoder repeats the newest frame). Scroll or the up/down keys zoom.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import matplotlib

matplotlib.use("Agg")  # off-screen

import matplotlib.pyplot as plt
import numpy as np

import punktfunk


class LivePlot:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.zoom = 1.0
        self.figure = None
        self.size = (0, 0)

    def on_input(self, ev: punktfunk.InputEvent) -> None:
        if isinstance(ev, punktfunk.Scroll) and ev.vertical:
            self.zoom *= 1.25 if ev.vertical > 0 else 0.8
        elif isinstance(ev, punktfunk.KeyEvent) and ev.down and ev.key in ("up", "down"):
            self.zoom *= 1.25 if ev.key == "up" else 0.8

    def render(self, width: int, height: int) -> np.ndarray:
        """The plot now, as HxWx3 uint8 RGB."""
        if self.figure is None or self.size != (width, height):
            if self.figure is not None:
                plt.close(self.figure)
            self.figure = plt.figure(figsize=(width / 100, height / 100), dpi=100)
            self.size = (width, height)
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot()
        t = time.monotonic() - self.t0
        x = np.linspace(0, 10 / self.zoom, 500)
        ax.plot(x, np.sin(2 * x + t), x, 0.5 * np.cos(3 * x - t))
        ax.set_title(f"t = {t:5.1f} s")
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
        return rgba[..., :3]  # RGB (a 4-channel uint8 frame would be read as BGRA)


def run(host: punktfunk.Host, plot: LivePlot, seconds: float) -> None:
    frames = host.app("Live Plot")
    assert isinstance(frames, punktfunk.PushSource)
    host.on_session(start=lambda s: s.on_input(plot.on_input))
    deadline = time.monotonic() + seconds if seconds else float("inf")
    while time.monotonic() < deadline:
        mode = frames.mode
        if mode is None:
            frames.wait_session(timeout=0.5)
            continue
        frames.push(plot.render(mode.width, mode.height))
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", default=None, help="preset pairing PIN")
    parser.add_argument("--seconds", type=float, default=0, help="stop after S s (0: never)")
    args = parser.parse_args()
    with (
        punktfunk.Host(name="live-plot", pin=args.pin) as host,
        contextlib.suppress(KeyboardInterrupt),
    ):
        run(host, LivePlot(), args.seconds)


if __name__ == "__main__":
    main()
