"""A numpy physics toy that streams itself: balls bouncing at the client's own resolution.

    python examples/bouncing_balls.py --pin 1234        # then launch "Balls" in Moonlight

Keyboard: space adds a ball, arrows push every ball, c clears. Mouse: a click drops a ball
where you clicked. Gamepad: A adds a ball (and rumbles), the left stick pushes. The top-left
corner carries a frame stamp (counter + time) a test client can read back.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

import punktfunk
from punktfunk.vdisplay.stamp import draw_stamp

BACKGROUND = (32, 96, 160)  # RGB
BALL = (250, 200, 40)


class Balls:
    def __init__(self, seed: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.pos = np.zeros((0, 2))
        self.vel = np.zeros((0, 2))
        self.frames = 0
        self.events: list[punktfunk.InputEvent] = []
        self.push = np.zeros(2)

    def add(self, x: float, y: float) -> None:
        with self.lock:
            self.pos = np.vstack([self.pos, [x, y]])
            self.vel = np.vstack([self.vel, self.rng.uniform(-300, 300, 2)])

    def on_input(self, session: punktfunk.Session, ev: punktfunk.InputEvent) -> None:
        self.events.append(ev)
        w, h = session.mode.width, session.mode.height
        if isinstance(ev, punktfunk.KeyEvent) and ev.down:
            if ev.key == "space":
                self.add(w / 2, h / 2)
            elif ev.key == "c":
                with self.lock:
                    self.pos, self.vel = np.zeros((0, 2)), np.zeros((0, 2))
            arrows = {"left": (-200, 0), "right": (200, 0), "up": (0, -200), "down": (0, 200)}
            if ev.key in arrows:
                with self.lock:
                    self.vel += arrows[ev.key]
        elif isinstance(ev, punktfunk.Button) and ev.down and ev.button == "left":
            self.add(ev.x, ev.y)
        elif isinstance(ev, punktfunk.GamepadState):
            if ev.pressed("a"):
                self.add(w / 2, h / 2)
                session.rumble(ev.pad, 0.5, 1.0, 300)
            self.push = np.array([ev.axes.get("left_x", 0.0), -ev.axes.get("left_y", 0.0)])

    def render(self, mode: punktfunk.Mode) -> np.ndarray:
        """One frame at the client's mode: HxWx3 uint8 RGB."""
        dt = 1.0 / mode.fps
        frame = np.empty((mode.height, mode.width, 3), np.uint8)
        frame[...] = BACKGROUND
        r = max(8, mode.height // 40)
        with self.lock:
            self.vel += self.push * 600 * dt
            self.vel[:, 1] += 400 * dt  # gravity
            self.pos += self.vel * dt
            for axis, limit in ((0, mode.width), (1, mode.height)):
                low, high = self.pos[:, axis] < r, self.pos[:, axis] > limit - r
                self.vel[low | high, axis] *= -0.9
                self.pos[:, axis] = np.clip(self.pos[:, axis], r, limit - r)
            centres = self.pos.astype(int)
        for x, y in centres:
            frame[max(0, y - r) : y + r, max(0, x - r) : x + r] = BALL
        self.frames += 1
        stamp = np.zeros((128, 256, 4), np.uint8)
        draw_stamp(stamp, self.frames, time.monotonic_ns(), 255)
        frame[:128, :256] = stamp[..., :3]
        return frame


def serve(host: punktfunk.Host, balls: Balls) -> None:
    host.app("Balls", source=balls.render)
    host.on_session(start=lambda s: s.on_input(lambda ev: balls.on_input(s, ev)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", default=None, help="preset pairing PIN")
    parser.add_argument("--seconds", type=float, default=0, help="stop after S s (0: never)")
    args = parser.parse_args()
    balls = Balls()
    for i in range(5):
        balls.add(100 + 150 * i, 100)
    with punktfunk.Host(name="balls", pin=args.pin) as host:
        serve(host, balls)
        print("launch 'Balls' in Moonlight or `punktfunk probe`; Ctrl-C ends", flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
        try:
            while time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
