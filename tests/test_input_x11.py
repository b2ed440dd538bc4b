"""XTEST injection against real X servers: a test-owned window must see exactly what we inject.

Xvfb carries the US-layout cases. The non-US case runs on Xorg with the dummy driver, because
Xvfb 21.1 ignores `setxkbmap` (its keymap stays `us`; checked at fixture start, see
`_set_layout`).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from Xlib import XK, X
from Xlib.display import Display

from punktfunk.input.base import InputInjector
from punktfunk.input.x11 import InputError, X11Injector

VK_SHIFT, VK_RETURN, VK_F5, VK_OEM_1 = 0x10, 0x0D, 0x74, 0xBA
VK_A, VK_Y, VK_Z, VK_2, VK_OEM_7, VK_RMENU, VK_Q = 0x41, 0x59, 0x5A, 0x32, 0xDE, 0xA5, 0x51
NON_NORMALIZED = 0x01  # GameStream keyboard flag: the VK names a symbol, not a US position
SCREEN_W, SCREEN_H = 1024, 768
_DISPLAY_FDS: dict[int, int] = {}  # server pid -> read end of its -displayfd pipe

_XORG_CONF = """\
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AllowEmptyInput" "true"
    Option "DontVTSwitch" "true"
EndSection
Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam 65536
EndSection
Section "Monitor"
    Identifier "mon"
    HorizSync 1.0 - 10000.0
    VertRefresh 1.0 - 1000.0
EndSection
Section "Screen"
    Identifier "screen"
    Device "dummy"
    Monitor "mon"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual 1024 768
    EndSubSection
EndSection
"""


def _start_x(argv: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start an X server with -displayfd; return it and its display name once it answers.

    The pipe stays open while the server runs: a server that writes its number again (it
    does on some resets) and finds the pipe closed exits. Several suites start X servers at
    once here, so a server that dies anyway is replaced by another.
    """
    for _ in range(3):
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [*argv, "-displayfd", str(write_fd)],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        _DISPLAY_FDS[proc.pid] = read_fd
        ready, _, _ = select.select([read_fd], [], [], 20)
        number = os.read(read_fd, 32).decode().strip() if ready else ""
        deadline = time.monotonic() + 5
        while number and proc.poll() is None and time.monotonic() < deadline:
            try:
                Display(f":{number}").close()
                return proc, f":{number}"
            except Exception:
                time.sleep(0.1)
        _stop(proc)
    raise RuntimeError(f"X server did not start: {argv[0]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    os.close(_DISPLAY_FDS.pop(proc.pid))


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    assert shutil.which("Xvfb"), "Xvfb is not installed (scripts/setup.sh installs xvfb)"
    proc, name = _start_x(
        ["Xvfb", "-screen", "0", f"{SCREEN_W}x{SCREEN_H}x24", "-nolisten", "tcp", "-noreset"]
    )
    yield name
    _stop(proc)


@pytest.fixture(scope="module")
def xorg_de(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Xorg (dummy driver) switched to the German layout with setxkbmap."""
    xorg = Path("/usr/lib/xorg/Xorg")
    assert xorg.exists(), "Xorg is not installed (scripts/setup.sh installs the dummy driver)"
    work = tmp_path_factory.mktemp("xorg")
    (work / "xorg.conf").write_text(_XORG_CONF)
    argv = [str(xorg), "-config", str(work / "xorg.conf"), "-noreset", "-nolisten", "tcp"]
    argv += ["-logfile", str(work / "xorg.log"), "-novtswitch", "-sharevts"]
    proc, name = _start_x(argv)
    try:
        _set_layout(name, "de")
        yield name
    finally:
        _stop(proc)


def _set_layout(display: str, layout: str) -> None:
    env = {**os.environ, "DISPLAY": display}
    done = subprocess.run(["setxkbmap", layout], env=env, capture_output=True, timeout=20)
    assert done.returncode == 0, f"setxkbmap {layout}: {done.stderr.decode()}"
    d = Display(display)
    try:
        # German swaps Y and Z: the key at keycode 29 (US 'y') must now produce 'z'.
        assert d.keycode_to_keysym(29, 0) == ord("z"), f"setxkbmap {layout} had no effect"
    finally:
        d.close()


class Window:
    """A focused full-screen window that records what the server delivers to it."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        screen = self.d.screen()
        mask = (
            X.KeyPressMask
            | X.KeyReleaseMask
            | X.ButtonPressMask
            | X.ButtonReleaseMask
            | X.PointerMotionMask
        )
        self.win = screen.root.create_window(
            0, 0, screen.width_in_pixels, screen.height_in_pixels, 0, screen.root_depth,
            event_mask=mask, override_redirect=True,
        )  # fmt: skip
        self.win.map()
        self.d.sync()
        self.win.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.d.sync()

    def events(self, settle: float = 0.3) -> list:
        """Everything delivered until `settle` s pass with no new event."""
        out = []
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            while self.d.pending_events():
                ev = self.d.next_event()
                if ev.type == X.MappingNotify:
                    self.d.refresh_keyboard_mapping(ev)
                    continue
                out.append(ev)
                deadline = time.monotonic() + settle
            time.sleep(0.01)
        return out

    def keysym(self, ev) -> int:
        index = 1 if ev.state & X.ShiftMask else 0
        return self.d.keycode_to_keysym(ev.detail, index) or self.d.keycode_to_keysym(ev.detail, 0)

    def typed(self, events: list) -> list[int]:
        """Keysyms of the non-modifier key presses."""
        modifiers = {XK.string_to_keysym(n) for n in ("Shift_L", "Shift_R", "ISO_Level3_Shift")}
        syms = [self.keysym(e) for e in events if e.type == X.KeyPress]
        return [s for s in syms if s not in modifiers]

    def close(self) -> None:
        self.win.destroy()
        self.d.close()


def _pointer(win: Window, expected: tuple[int, int]) -> tuple[int, int]:
    """Where the pointer is once it got to `expected` (or after 2 s): the injector's requests
    travel on another connection, so they may land after our query."""
    deadline = time.monotonic() + 2
    while True:
        pos = win.d.screen().root.query_pointer()
        if (pos.root_x, pos.root_y) == expected or time.monotonic() > deadline:
            return pos.root_x, pos.root_y
        time.sleep(0.02)


def _chars(keysyms: list[int]) -> str:
    return "".join(chr(s - 0x01000000) if s >= 0x01000000 else chr(s) for s in keysyms)


@pytest.fixture
def us(xvfb: str) -> Iterator[tuple[X11Injector, Window]]:
    win = Window(xvfb)
    inj = X11Injector(xvfb)
    yield inj, win
    inj.close()
    win.close()


def test_vk_keys_reach_the_window(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    assert isinstance(inj, InputInjector)
    for vk in (VK_A, VK_RETURN, VK_F5, VK_OEM_1):
        inj.key(vk, True, 0)
        inj.key(vk, False, 0)
    inj.key(VK_SHIFT, True, 0)
    inj.key(VK_A, True, 0x01)
    inj.key(VK_A, False, 0x01)
    inj.key(VK_SHIFT, False, 0)
    names = ["a", "Return", "F5", "semicolon", "A"]
    assert win.typed(win.events()) == [XK.string_to_keysym(n) for n in names]


def test_text_ascii_and_unicode(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    inj.text("Hi, ä€!")
    assert _chars(win.typed(win.events())) == "Hi, ä€!"


def test_modifier_flags_release_a_stuck_shift(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    inj.key(VK_SHIFT, True, 0)  # its release is "lost"
    inj.key(VK_A, True, 0)  # the client says no modifier is held
    inj.key(VK_A, False, 0)
    assert win.typed(win.events()) == [ord("a")]
    assert not any(win.d.query_keymap()), "a key is still held"


def test_absolute_move_scales_to_the_display(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    inj.mouse_move_abs(640, 360, 1280, 720)  # the client's surface centre
    assert _pointer(win, (SCREEN_W // 2, SCREEN_H // 2)) == (SCREEN_W // 2, SCREEN_H // 2)
    inj.mouse_move_abs(1279, 719, 1280, 720)
    assert _pointer(win, (SCREEN_W - 1, SCREEN_H - 1)) == (SCREEN_W - 1, SCREEN_H - 1)
    motions = [e for e in win.events() if e.type == X.MotionNotify]
    assert (motions[-1].root_x, motions[-1].root_y) == (SCREEN_W - 1, SCREEN_H - 1)


def test_relative_move(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    inj.mouse_move_abs(100, 100, SCREEN_W, SCREEN_H)
    inj.mouse_move_rel(37, -21)
    inj.mouse_move_rel(3, 1)
    assert _pointer(win, (140, 80)) == (140, 80)


def test_buttons_and_scroll(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    for button in (1, 2, 3, 4, 5):
        inj.mouse_button(button, True)
        inj.mouse_button(button, False)
    inj.scroll(240, 0)  # two notches up
    inj.scroll(-60, 0)  # half a notch down: nothing yet
    inj.scroll(-60, 0)  # ...now one
    inj.scroll(0, 120)  # right
    inj.scroll(0, -119)  # not quite left
    presses = [e.detail for e in win.events() if e.type == X.ButtonPress]
    assert presses == [1, 2, 3, 8, 9, 4, 4, 5, 7]


def test_release_all_lets_go_of_everything(us: tuple[X11Injector, Window]) -> None:
    inj, win = us
    inj.key(VK_SHIFT, True, 0)
    inj.key(VK_A, True, 0x01)
    inj.text("€")  # binds a spare keycode
    inj.mouse_button(1, True)
    assert [e.type for e in win.events()].count(X.KeyPress) >= 2
    assert any(win.d.query_keymap())
    inj.release_all()
    win.events()
    assert not any(win.d.query_keymap()), "a key is still held"
    assert not win.d.screen().root.query_pointer().mask & X.Button1Mask


def test_close_restores_spare_keycodes(xvfb: str) -> None:
    d = Display(xvfb)
    before = d.get_keyboard_mapping(8, 248)
    inj = X11Injector(xvfb)
    inj.text("ж")
    inj.close()
    d2 = Display(xvfb)
    after = d2.get_keyboard_mapping(8, 248)
    assert [list(s) for s in after] == [list(s) for s in before]
    d.close()
    d2.close()


def test_german_layout(xorg_de: str) -> None:
    """US-positional VKs type what the German layout has at those keys (Z/Y swap, ä, ö); a
    non-normalized VK and text type their symbol wherever the layout has it."""
    win = Window(xorg_de)
    inj = X11Injector(xorg_de)
    try:
        for vk in (VK_Y, VK_Z, VK_OEM_1, VK_OEM_7, VK_2):
            inj.key(vk, True, 0)
            inj.key(vk, False, 0)
        inj.key(VK_Y, True, 0, NON_NORMALIZED)
        inj.key(VK_Y, False, 0, NON_NORMALIZED)
        inj.text("äÖß€@")
        events = win.events()
        assert _chars(win.typed(events)) == "zyöä2yäÖß€@"
        codes = [e.detail for e in events if e.type == X.KeyPress]
        # evdev KEY_Y 21, KEY_Z 44, KEY_SEMICOLON 39, KEY_APOSTROPHE 40, KEY_2 3 (+ 8)
        assert codes[:6] == [29, 52, 47, 48, 11, 52], "keys must be pressed at their positions"
    finally:
        inj.close()
        win.close()


def test_german_altgr_is_the_right_alt_position(xorg_de: str) -> None:
    """VK_RMENU is the key right of space: AltGr on German, so AltGr+Q types @ like locally."""
    win = Window(xorg_de)
    inj = X11Injector(xorg_de)
    try:
        inj.key(VK_RMENU, True, 0x04)
        inj.key(VK_Q, True, 0x04)
        inj.key(VK_Q, False, 0x04)
        inj.key(VK_RMENU, False, 0)
        events = win.events()
        presses = [e for e in events if e.type == X.KeyPress]
        assert len(presses) == 2, "AltGr counts as the Alt the flags announce: no extra Alt"
        altgr, q = presses
        assert win.d.keycode_to_keysym(altgr.detail, 0) == XK.string_to_keysym("ISO_Level3_Shift")
        assert q.detail == 24  # the Q position (evdev KEY_Q 16 + 8) in both keycode sets
        level3 = win.d.keycode_to_keysym(q.detail, 4)  # group 1, level 3 (AltGr)
        assert q.state & X.Mod5Mask and level3 == ord("@")
        assert not any(win.d.query_keymap()), "a key is still held"
    finally:
        inj.close()
        win.close()


def test_absolute_move_follows_a_mode_change(xorg_de: str) -> None:
    win = Window(xorg_de)
    inj = X11Injector(xorg_de)
    env = {**os.environ, "DISPLAY": xorg_de}
    try:
        subprocess.run(["xrandr", "--output", "DUMMY0", "--mode", "800x600"], env=env, check=True)
        inj.mouse_move_abs(1279, 719, 1280, 720)
        assert _pointer(win, (799, 599)) == (799, 599)
    finally:
        subprocess.run(["xrandr", "--output", "DUMMY0", "--mode", "1024x768"], env=env, check=True)
        inj.close()
        win.close()


def test_lost_display_is_a_no_op() -> None:
    proc, name = _start_x(["Xvfb", "-screen", "0", "320x240x24", "-nolisten", "tcp", "-noreset"])
    inj = X11Injector(name)
    _stop(proc)
    inj.key(VK_A, True, 0)
    inj.mouse_move_rel(1, 1)
    inj.text("x")
    inj.close()
    with pytest.raises(InputError):
        X11Injector(name)
