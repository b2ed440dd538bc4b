"""A pygame-ce game rendered off-screen and played with a gamepad over the stream.

    python examples/pygame_pad.py --pin 1234        # then launch "Pad Game" in Moonlight

The game runs its own loop and pushes each frame (`PushSource.push`: never blocks, the newest
frame wins). It renders at the client's resolution once one connects. The left stick or the
d-pad moves the square, A changes its colour and rumbles the pad. No window, no X server:
SDL's dummy video driver. (pygame-ce is LGPL: used by this example, never by punktfunk.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import numpy as np
import pygame

import punktfunk

COLOURS = [(230, 60, 60), (60, 200, 90), (70, 120, 240), (240, 200, 40)]


class PadGame:
    def __init__(self) -> None:
        pygame.init()
        self.size = (640, 360)
        self.surface = pygame.Surface(self.size)
        self.x, self.y = 0.5, 0.5
        self.colour = 0
        self.stick = (0.0, 0.0)
        self.was_a = False

    def on_input(self, session: punktfunk.Session, ev: punktfunk.InputEvent) -> None:
        if not isinstance(ev, punktfunk.GamepadState):
            return
        dx = ev.axes.get("left_x", 0.0) + ev.pressed("dpad_right") - ev.pressed("dpad_left")
        dy = -ev.axes.get("left_y", 0.0) + ev.pressed("dpad_down") - ev.pressed("dpad_up")
        self.stick = (dx, dy)
        if ev.pressed("a") and not self.was_a:
            self.colour = (self.colour + 1) % len(COLOURS)
            session.rumble(ev.pad, 0.3, 0.6, 200)
        self.was_a = ev.pressed("a")

    def step(self, dt: float, mode: punktfunk.Mode | None) -> np.ndarray:
        """Advance the game and render one frame: HxWx4 uint8 BGRA at the client's size."""
        if mode is not None and self.size != (mode.width, mode.height):
            self.size = (mode.width, mode.height)
            self.surface = pygame.Surface(self.size)
        self.x = min(1.0, max(0.0, self.x + self.stick[0] * dt * 0.5))
        self.y = min(1.0, max(0.0, self.y + self.stick[1] * dt * 0.5))
        w, h = self.size
        self.surface.fill((20, 20, 30))
        side = h // 6
        rect = pygame.Rect(int(self.x * (w - side)), int(self.y * (h - side)), side, side)
        pygame.draw.rect(self.surface, COLOURS[self.colour], rect)
        data = pygame.image.tobytes(self.surface, "BGRA")
        return np.frombuffer(data, np.uint8).reshape(h, w, 4)


def run(host: punktfunk.Host, game: PadGame, seconds: float) -> None:
    frames = host.app("Pad Game")
    assert isinstance(frames, punktfunk.PushSource)
    host.on_session(start=lambda s: s.on_input(lambda ev: game.on_input(s, ev)))
    deadline = time.monotonic() + seconds if seconds else float("inf")
    last = time.monotonic()
    while time.monotonic() < deadline:
        now = time.monotonic()
        frames.push(game.step(now - last, frames.mode))
        last = now
        time.sleep(max(0.0, 1 / 60 - (time.monotonic() - now)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", default=None, help="preset pairing PIN")
    parser.add_argument("--seconds", type=float, default=0, help="stop after S s (0: never)")
    args = parser.parse_args()
    with (
        punktfunk.Host(name="pad-game", pin=args.pin) as host,
        contextlib.suppress(KeyboardInterrupt),
    ):
        run(host, PadGame(), args.seconds)


if __name__ == "__main__":
    main()
