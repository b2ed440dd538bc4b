"""The viewer window: decoded frames on screen, local input to the host, a stats overlay.

Three threads. The network thread runs `NativeReceiver.run` (QUIC, media, FEC, feedback) and
is the only one touching the connection; input reaches it through `receiver.send_input`. The
receiver's decode thread calls `_on_picture`, which converts (and scales, with swscale) each
picture to RGB at the size it will be drawn and leaves it in a one-picture slot. The main
thread owns SDL: events, drawing and the pads; it is woken when a picture arrives.

Keys F11 and Alt+Enter toggle fullscreen, F10 the overlay, Ctrl+Alt+Shift+Q (or closing the
window) ends the session; those are never sent to the host. Everything else is: keys as
US-positional VKs (`keys.py`), the pointer as an absolute position on the stream surface,
buttons, the wheel, and each SDL game controller as a punktfunk/2 pad. Rumble from the host
drives the local controller.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np
import pygame
from pygame._sdl2 import controller as sdl_controller

from ..native.client.dial import ProbeError
from ..native.client.probe import client_hello
from ..native.client.reassembly import AccessUnit
from ..native.client.receiver import NativeReceiver, infer_fec_percent
from ..native.wire.dgram import InputEvent
from ..native.wire.messages import Mode
from ..native.wire.quic import ClientIdentity
from ..native.wire.registry import Codec
from ..proto.control import MIN_HEIGHT, MIN_WIDTH
from .connect import ConnectArgs
from .keys import (
    PadSnapshot,
    Viewport,
    arrival_event,
    button_event,
    buttons_mask,
    key_event,
    move_abs_event,
    pad_kind,
    removal_event,
    scancode_vk,
    snapshot_event,
    wheel_events,
)

MAX_PADS = 16  # the wire's pad indices 0..15
HISTORY = 600  # samples kept per statistic
PAD_RESEND_S = 0.1  # pad state rides unreliable datagrams: repeat it while a pad is open
OVERLAY_PERIOD_S = 0.5
RESIZE_SETTLE_S = 0.5  # a window being dragged larger asks the host once, when it settles
MIN_MODE = (MIN_WIDTH, MIN_HEIGHT)  # the smallest monitor a host creates
RUMBLE_MS = 10_000  # XInput rumble lasts until changed; the host re-sends every change
_QUIT_MODS = (pygame.KMOD_CTRL, pygame.KMOD_ALT, pygame.KMOD_SHIFT)  # all three held


class _Pad:
    def __init__(self, index: int, pad: sdl_controller.Controller) -> None:
        self.index = index
        self.controller = pad
        self.pressed: set[int] = set()
        self.axes = [0, 0, 0, 0, 0, 0]
        self.seq = 0
        self.dirty = True
        self.sent_at = 0.0

    def snapshot(self) -> PadSnapshot:
        lx, ly, rx, ry, lt, rt = self.axes  # indexed by SDL axis number
        return PadSnapshot(buttons_mask(self.pressed), (lx, ly, rx, ry, lt, rt))


class Overlay:
    """fps, Mbit/s, host and one-way latency, loss and FEC, from the receiver's counters."""

    def __init__(self, receiver: NativeReceiver) -> None:
        self._rx = receiver
        self._font = pygame.font.Font(None, 22)
        self._last = (time.monotonic(), 0, 0, 0)
        self.lines: list[str] = ["waiting for the stream..."]
        self._box = self._render()

    def update(self, shown: int) -> None:
        """`shown`: pictures the window has drawn so far."""
        rx, now = self._rx, time.monotonic()
        st = rx.stats
        t0, decoded0, bytes0, shown0 = self._last
        dt = max(now - t0, 1e-6)
        self._last = (now, st.frames_decoded, st.media_bytes, shown)

        def median(samples: list[float]) -> str:
            recent = samples[-60:]
            return f"{statistics.median(recent):.1f} ms" if recent else "-"

        loss = rx.loss_ppm_sent[-1] / 10_000 if rx.loss_ppm_sent else 0.0
        fec = infer_fec_percent(list(st.blocks))
        asm = rx.assembler.stats
        self.lines = [
            f"{(st.frames_decoded - decoded0) / dt:5.1f} fps decoded, "
            f"{(shown - shown0) / dt:5.1f} shown",
            f"{(st.media_bytes - bytes0) * 8 / dt / 1e6:6.2f} Mbit/s",
            f"host {median(st.host_latency_ms)}, one-way {median(st.one_way_latency_ms)}",
            f"loss {loss:.2f} %, FEC {fec if fec is not None else '-'} %",
            f"frames lost {asm.frames_lost}, FEC-repaired {asm.frames_recovered_by_fec}",
        ]
        self._box = self._render()

    def _render(self) -> pygame.Surface:
        rendered = [self._font.render(line, True, (255, 255, 255)) for line in self.lines]
        width = max(s.get_width() for s in rendered) + 16
        height = sum(s.get_height() for s in rendered) + 12
        box = pygame.Surface((width, height), pygame.SRCALPHA)
        box.fill((0, 0, 0, 170))
        y = 6
        for surface in rendered:
            box.blit(surface, (8, y))
            y += surface.get_height()
        return box

    def draw(self, screen: pygame.Surface) -> None:
        # Top-right: the top-left corner is where the pattern display's frame stamp is.
        screen.blit(self._box, (screen.get_width() - self._box.get_width() - 8, 8))


class Viewer:
    def __init__(
        self, args: ConnectArgs, identity: ClientIdentity, host_fp: bytes, mode: Mode
    ) -> None:
        self.args = args
        self.mode = mode
        hello = client_hello(mode, args.name, args.codec, args.suite, args.bitrate_kbps)
        self.receiver = NativeReceiver(
            (args.host, args.port), identity, host_fp, hello,
            on_picture=self._on_picture, on_rumble=self._on_rumble, history=HISTORY,
            close_reason="viewer closed",
        )  # fmt: skip
        self.error: str | None = None
        self._slot_lock = threading.Lock()
        self._slot: tuple[np.ndarray, tuple[int, int]] | None = None
        self._new_picture = threading.Event()
        self._target = (mode.width, mode.height)  # the size pictures are converted to
        self._rumbles: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self._stream = (mode.width, mode.height)
        self._fullscreen = args.fullscreen
        self._windowed = (mode.width, mode.height)
        self._viewport = Viewport(0, 0, mode.width, mode.height)
        self._picture: pygame.Surface | None = None
        self._picture_pixels: np.ndarray | None = None  # the buffer `_picture` borrows
        self._pending_motion: tuple[int, int] | None = None
        self._held_keys: set[int] = set()
        self._held_buttons: set[int] = set()
        self._swallowed: set[int] = set()  # scancodes of our hotkeys: their KEYUP stays here
        self._pads: dict[int, _Pad] = {}  # SDL instance id -> pad
        self._running = True
        self._resize_due: float | None = None  # when a settled window size goes to the host
        self._show_overlay = False
        self.overlay: Overlay | None = None
        self.shown = 0  # pictures drawn
        self.convert_errors = 0

    # --- the decode thread ------------------------------------------------------------------

    def _on_picture(self, frame: object, unit: AccessUnit) -> None:
        import av

        assert isinstance(frame, av.VideoFrame)
        width, height = self._target
        try:
            rgb = frame.reformat(width, height, "rgb24", interpolation="BILINEAR")
            pixels = np.ascontiguousarray(rgb.to_ndarray())
        except (av.FFmpegError, ValueError):
            self.convert_errors += 1  # one picture lost; the decode thread carries on
            return
        with self._slot_lock:
            self._slot = (pixels, (frame.width, frame.height))
        self._new_picture.set()

    def _on_rumble(self, pad: int, low: int, high: int) -> None:  # the network thread
        self._rumbles.put((pad, low, high))

    # --- the network thread -----------------------------------------------------------------

    def _network(self) -> None:
        try:
            self.receiver.run(math.inf)
        except ProbeError as exc:
            self.error = str(exc)
        except Exception as exc:  # the window must still close and say why
            self.error = f"the connection failed: {exc!r}"
        finally:
            self._new_picture.set()

    # --- the window -------------------------------------------------------------------------

    def run(self) -> int:
        pygame.display.init()
        pygame.font.init()
        self.overlay = Overlay(self.receiver)
        pygame.joystick.init()
        sdl_controller.init()
        net = threading.Thread(target=self._network, name="viewer-net", daemon=True)
        try:
            self._open_window()
            pygame.key.stop_text_input()  # keys go as VKs; SDL text events would double them
            net.start()
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._loop(net)
        except KeyboardInterrupt:
            pass  # Ctrl+C in the terminal: leave like closing the window
        finally:
            self._release_all()
            self.receiver.stop()
            if net.is_alive():
                net.join(timeout=10)
            if self.args.screenshot is not None:
                self._save_screenshot(self.args.screenshot)
            pygame.quit()
        return self._verdict()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._running = False

    def _open_window(self) -> None:
        desktop = pygame.display.get_desktop_sizes()[0]
        room = Viewport.fit(self._windowed, (max(desktop[0], 1), max(desktop[1], 1)))
        if room.width < self._windowed[0]:  # a stream larger than the screen: fit it
            self._windowed = (room.width, room.height)
        self._set_mode()
        pygame.display.set_caption(f"punktfunk - connecting to {self.args.host}:{self.args.port}")

    def _set_mode(self) -> None:
        if self._fullscreen:
            self.screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
        else:
            self.screen = pygame.display.set_mode(self._windowed, pygame.RESIZABLE)
        self._relayout()

    def _relayout(self) -> None:
        self.screen = pygame.display.get_surface()
        self._viewport = Viewport.fit(self._stream, self.screen.get_size())
        self._target = (self._viewport.width, self._viewport.height)
        self.screen.fill((0, 0, 0))
        self._draw(flip=True)

    def _loop(self, net: threading.Thread) -> None:
        started: float | None = None
        next_overlay = 0.0
        while self._running:
            self._new_picture.wait(0.005)
            for ev in pygame.event.get():
                self._handle(ev)
            now = time.monotonic()
            self._flush_motion()
            self._pads_tick(now)
            self._apply_rumble()
            sh = self.receiver.server_hello
            if sh is not None and started is None:
                started = now
                self._on_session(sh.mode)
            if self._resize_due is not None and now >= self._resize_due:
                self._resize_due = None
                self._ask_for_window_mode()
            if self._new_picture.is_set():
                self._new_picture.clear()
                if self._take_picture():
                    self._draw(flip=True)
            if self._show_overlay and now >= next_overlay:
                next_overlay = now + OVERLAY_PERIOD_S
                self._update_overlay()
                self._draw(flip=True)
            if not net.is_alive():
                self._running = False
            limit = self.args.seconds
            if limit is not None and started is not None and now - started >= limit:
                self._running = False

    def _ask_for_window_mode(self) -> None:
        """The user resized the window: ask the host for a monitor of that size (Reconfigure),
        so the desktop fills the window 1:1 instead of being scaled. Same connection; the
        pictures change size when the host's new epoch starts."""
        width, height = self.screen.get_size()
        size = (max(MIN_MODE[0], width & ~1), max(MIN_MODE[1], height & ~1))
        if size == self._stream or self.receiver.server_hello is None:
            return
        self._windowed = size
        self.receiver.request_mode(Mode(*size, self.mode.refresh_hz))

    def _on_session(self, mode: Mode) -> None:
        sh = self.receiver.server_hello
        codec = Codec(sh.codec).name.lower() if sh is not None else "?"
        pygame.display.set_caption(
            f"punktfunk - {self.args.host}:{self.args.port} - "
            f"{mode.width}x{mode.height}@{mode.refresh_hz} {codec}"
        )
        if (mode.width, mode.height) != self._stream:
            self._stream = (mode.width, mode.height)
            self._relayout()

    def _take_picture(self) -> bool:
        with self._slot_lock:
            slot, self._slot = self._slot, None
        if slot is None:
            return False
        pixels, size = slot
        if size != self._stream:  # the host's mode changed under us
            self._stream = size
            self._relayout()
        height, width = pixels.shape[:2]
        self._picture = pygame.image.frombuffer(pixels, (width, height), "RGB")
        self._picture_pixels = pixels
        self.shown += 1
        return True

    def _update_overlay(self) -> None:
        if self.overlay is not None:
            self.overlay.update(self.shown)

    def _draw(self, flip: bool) -> None:
        screen, vp = self.screen, self._viewport
        picture = self._picture
        if picture is None:
            font = pygame.font.Font(None, 32)
            text = font.render(f"connecting to {self.args.host}...", True, (200, 200, 200))
            screen.fill((0, 0, 0))
            screen.blit(text, text.get_rect(center=screen.get_rect().center))
        else:
            if picture.get_size() != (vp.width, vp.height):  # until a picture of the new size
                picture = pygame.transform.scale(picture, (vp.width, vp.height))
            screen.blit(picture, (vp.x, vp.y))
        if self._show_overlay and self.overlay is not None:
            self.overlay.draw(screen)
        if flip:
            pygame.display.flip()

    # --- events -----------------------------------------------------------------------------

    def _handle(self, ev: pygame.event.Event) -> None:
        kind = ev.type
        if kind == pygame.QUIT:
            self._running = False
        elif kind == pygame.KEYDOWN:
            self._key_down(ev)
        elif kind == pygame.KEYUP:
            if ev.scancode in self._swallowed:
                self._swallowed.discard(ev.scancode)
                return
            vk = scancode_vk(ev.scancode, ev.mod)
            if vk is not None and vk in self._held_keys:
                self._held_keys.discard(vk)
                self._send(key_event(vk, False, ev.mod))
        elif kind == pygame.MOUSEMOTION:
            self._pending_motion = ev.pos
        elif kind in (pygame.MOUSEBUTTONDOWN, pygame.MOUSEBUTTONUP):
            down = kind == pygame.MOUSEBUTTONDOWN
            button = button_event(ev.button, down)
            if button is not None:
                self._pending_motion = ev.pos
                self._flush_motion()  # the click lands where the pointer is
                (self._held_buttons.add if down else self._held_buttons.discard)(ev.button)
                self._send(button)
        elif kind == pygame.MOUSEWHEEL:
            dx, dy = getattr(ev, "precise_x", ev.x), getattr(ev, "precise_y", ev.y)
            if getattr(ev, "flipped", False):
                dx, dy = -dx, -dy
            for wheel in wheel_events(dx, dy):
                self._send(wheel)
        elif kind in (pygame.VIDEORESIZE, pygame.WINDOWSIZECHANGED):
            self._relayout()
            if not self._fullscreen:
                self._resize_due = time.monotonic() + RESIZE_SETTLE_S
        elif kind == pygame.WINDOWEXPOSED:
            self._draw(flip=True)
        elif kind == pygame.WINDOWFOCUSLOST:
            self._release_all()
        elif kind in (pygame.CONTROLLERDEVICEADDED, pygame.CONTROLLERDEVICEREMOVED):
            self._pad_device(ev)
        elif kind in (pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLERBUTTONUP):
            pad = self._pads.get(ev.instance_id)
            if pad is not None:
                (pad.pressed.add if kind == pygame.CONTROLLERBUTTONDOWN else pad.pressed.discard)(
                    ev.button
                )
                pad.dirty = True
        elif kind == pygame.CONTROLLERAXISMOTION:
            pad = self._pads.get(ev.instance_id)
            if pad is not None and 0 <= ev.axis < len(pad.axes):
                pad.axes[ev.axis] = ev.value
                pad.dirty = True

    def _key_down(self, ev: pygame.event.Event) -> None:
        key, mod = ev.key, ev.mod
        if (
            key == pygame.K_q
            and (mod & pygame.KMOD_CTRL and mod & pygame.KMOD_ALT)
            and (mod & pygame.KMOD_SHIFT)
        ):
            self._running = False
            return
        if key == pygame.K_F11 or (
            key in (pygame.K_RETURN, pygame.K_KP_ENTER) and mod & pygame.KMOD_ALT
        ):
            self._swallowed.add(ev.scancode)
            self._fullscreen = not self._fullscreen
            self._set_mode()
            return
        if key == pygame.K_F10:
            self._swallowed.add(ev.scancode)
            self._show_overlay = not self._show_overlay
            self._update_overlay()
            self.screen.fill((0, 0, 0))  # the box may have covered a letterbox bar
            self._draw(flip=True)
            return
        vk = scancode_vk(ev.scancode, mod)
        if vk is not None:
            self._held_keys.add(vk)
            self._send(key_event(vk, True, mod))

    def _send(self, ev: InputEvent) -> None:
        if self.receiver.server_hello is not None:
            self.receiver.send_routed(ev)  # as the Rust client routes it (InputRoute)

    def _flush_motion(self) -> None:
        pos, self._pending_motion = self._pending_motion, None
        if pos is None:
            return
        at = self._viewport.to_stream(pos, self._stream)
        self._send(move_abs_event(at, self._stream))

    def _release_all(self) -> None:
        """Focus lost or leaving: nothing stays pressed on the host."""
        for vk in sorted(self._held_keys):
            self._send(key_event(vk, False, 0))
        self._held_keys.clear()
        for button in sorted(self._held_buttons):
            up = button_event(button, False)
            if up is not None:
                self._send(up)
        self._held_buttons.clear()

    # --- pads -------------------------------------------------------------------------------

    def _pad_device(self, ev: pygame.event.Event) -> None:
        if ev.type == pygame.CONTROLLERDEVICEADDED:
            try:
                pad = sdl_controller.Controller(ev.device_index)
            except pygame.error:
                return
            instance = pad.as_joystick().get_instance_id()
            if instance in self._pads:
                return
            used = {p.index for p in self._pads.values()}
            free = [i for i in range(MAX_PADS) if i not in used]
            if not free:
                pad.quit()
                return
            index = free[0]
            self._pads[instance] = _Pad(index, pad)
            self._send(arrival_event(index, pad_kind(pad.name)))
        else:
            gone = self._pads.pop(ev.instance_id, None)
            if gone is not None:
                self._send(removal_event(gone.index))
                gone.controller.quit()

    def _pads_tick(self, now: float) -> None:
        for pad in self._pads.values():
            if pad.dirty or now - pad.sent_at >= PAD_RESEND_S:
                pad.seq = (pad.seq + 1) & 0xFF
                pad.dirty, pad.sent_at = False, now
                self._send(snapshot_event(pad.index, pad.seq, pad.snapshot()))

    def _apply_rumble(self) -> None:
        while True:
            try:
                index, low, high = self._rumbles.get_nowait()
            except queue.Empty:
                return
            pad = next((p for p in self._pads.values() if p.index == index), None)
            if pad is None:
                continue
            if low == 0 and high == 0:
                pad.controller.stop_rumble()
            else:
                pad.controller.rumble(low / 65535, high / 65535, RUMBLE_MS)

    # --- the end ----------------------------------------------------------------------------

    def _save_screenshot(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pygame.image.save(self.screen, str(path))
        except (pygame.error, OSError) as exc:
            print(f"punktfunk connect: cannot save {path}: {exc}", file=sys.stderr)

    def _verdict(self) -> int:
        rx = self.receiver
        closed = rx.closed
        if self.error is not None:
            print(f"punktfunk connect: {self.error}", file=sys.stderr)
            return 1
        if closed is not None and closed.code != 0:
            what = "ended the session" if rx.server_hello is not None else "refused the session"
            print(
                f"punktfunk connect: {self.args.host}:{self.args.port} {what}: "
                f"code {closed.code:#x}: {closed.reason}",
                file=sys.stderr,
            )
            return 1
        if self.shown == 0:
            print("punktfunk connect: no picture was shown", file=sys.stderr)
            return 1
        print(
            f"punktfunk connect: shown {self.shown} frames, decoded "
            f"{rx.stats.frames_decoded}, sent {rx.inputs_sent} input events",
            file=sys.stderr,
        )
        return 0
