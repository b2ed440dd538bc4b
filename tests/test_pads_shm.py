"""Shared-memory pads, read by a separate consumer process that knows only the pinned offsets.

The consumer (a plain Python script, no punktfunk import) maps the pad file the way a driver on
another OS would, dumps what it sees, and writes rumble/LED/trigger output back; the host must
deliver that to `on_feedback`.
"""

from __future__ import annotations

import ctypes
import queue
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from punktfunk.input.base import PadFeedback, PadKind, PadManager, PadState
from punktfunk.input.pads import ShmPadManager
from punktfunk.input.reports import (
    BUTTON_A,
    BUTTON_Y,
    DPAD_RIGHT,
    DPAD_UP,
    GUIDE,
    LEFT_SHOULDER,
    START,
    TOUCHPAD_CLICK,
)
from punktfunk.proto.gamepad import (
    GAMEPAD_PROTO_VERSION,
    PAD_MAGIC,
    REPORT_LEN,
    XUSB_MAGIC,
    DeviceType,
    PadShm,
    XusbShm,
)

CONSUMER = r"""
import mmap, struct, sys
f = open(sys.argv[1], "r+b")
mm = mmap.mmap(f.fileno(), 0)
pad = len(mm) == 256
GEN, OUT_SEQ, OUT, PROTO = 168, 72, 76, 144

def snapshot():
    if not pad:
        return bytes(mm)
    while True:  # seqlock read
        g1 = struct.unpack_from("<I", mm, GEN)[0]
        if g1 & 1:
            continue
        data = bytes(mm)
        if struct.unpack_from("<I", mm, GEN)[0] == g1:
            return data

def bump(offset):
    struct.pack_into("<I", mm, offset, struct.unpack_from("<I", mm, offset)[0] + 1)

for line in sys.stdin:
    cmd, *args = line.split()
    if cmd == "dump":
        print(snapshot().hex(), flush=True)
    elif cmd == "attach":
        struct.pack_into("<I", mm, PROTO if pad else 32, int(args[0]))
        print("ok", flush=True)
    elif cmd == "rumble":
        mm[28], mm[29] = int(args[0]), int(args[1])
        bump(24)
        print("ok", flush=True)
    elif cmd == "output":
        report = bytes.fromhex(args[0])
        mm[OUT:OUT + len(report)] = report
        bump(OUT_SEQ)
        print("ok", flush=True)
    elif cmd == "stress":
        torn = 0
        values = set()
        for _ in range(int(args[0])):
            data = snapshot()
            lx, rx = data[8 + 1], data[8 + 3]
            values.add(lx)
            torn += lx != rx
        print(torn, len(values), flush=True)
"""


class Consumer:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def dump(self) -> bytes:
        return bytes.fromhex(self.ask("dump"))

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(5)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[ShmPadManager, queue.Queue[PadFeedback]]]:
    feedback: queue.Queue[PadFeedback] = queue.Queue()
    pads = ShmPadManager("test session", directory=tmp_path)
    pads.on_feedback(feedback.put)
    yield pads, feedback
    pads.close()


def test_xbox_state_is_byte_exact_and_rumble_comes_back(
    manager: tuple[ShmPadManager, queue.Queue[PadFeedback]],
) -> None:
    pads, feedback = manager
    assert isinstance(pads, PadManager) and pads.available
    pads.arrive(2, PadKind.XBOX360)
    assert re.fullmatch(r"punktfunk-test_session-pad2-\d+-[0-9a-f]{16}", pads.path(2).name)
    assert pads.path(2).stat().st_mode & 0o777 == 0o600
    state = PadState(BUTTON_A | DPAD_UP | START | 0x100000, 10, 250, -12345, 32767, 0, -32768)
    pads.update(2, state)
    consumer = Consumer(pads.path(2))
    try:
        expected = struct.pack("<IIHBBhhhh", XUSB_MAGIC, 2, 0x1011, 10, 250, -12345, 32767, 0,
                               -32768)  # fmt: skip
        expected += bytes(20) + struct.pack("<I", 2) + bytes(20)  # pad_index at 40
        assert consumer.dump() == expected
        assert consumer.ask("attach 3") == "ok"
        assert consumer.ask("rumble 200 100") == "ok"
        fb = feedback.get(timeout=2)
        assert fb == PadFeedback(2, rumble_low=200 * 257, rumble_high=100 * 257)
        pads.remove(2)
        assert consumer.dump()[:4] == bytes(4), "magic must be cleared on removal"
        assert not pads.path(2).exists()
    finally:
        consumer.close()


def test_dualsense_report_is_byte_exact(
    manager: tuple[ShmPadManager, queue.Queue[PadFeedback]],
) -> None:
    pads, _ = manager
    pads.arrive(0, PadKind.DUALSENSE)
    buttons = BUTTON_A | BUTTON_Y | DPAD_UP | DPAD_RIGHT | LEFT_SHOULDER | GUIDE | TOUCHPAD_CLICK
    pads.update(0, PadState(buttons, 7, 0, 32767, -32768, -32768, 0))
    pads.touch(0, 0, True, 0.5, 0.25)
    pads.motion(0, accel=(0.0, 9.80665, -9.80665), gyro=(10.0, -20.0, 0.5))
    pads.battery(0, 55, charging=True)
    consumer = Consumer(pads.path(0))
    try:
        shm = consumer.dump()
        assert struct.unpack_from("<I", shm, 0)[0] == PAD_MAGIC
        assert shm[140] == 0  # device_type DUALSENSE
        assert struct.unpack_from("<I", shm, 152)[0] == 0  # pad_index
        gen = struct.unpack_from("<I", shm, 168)[0]
        assert gen > 0 and gen % 2 == 0
        report = shm[8:72]
        assert report[0] == 0x01
        assert report[1:7] == bytes([255, 255, 0, 128, 7, 0])  # lx ly rx ry l2 r2
        # hat NE (1) | triangle 0x80 | cross 0x20; L1 | L2 (analog > 0); PS | touchpad click
        assert report[8:12] == bytes([0x01 | 0x80 | 0x20, 0x01 | 0x04, 0x01 | 0x02, 0])
        assert struct.unpack_from("<3h3h", report, 16) == (10240, -20480, 512, 0, 8192, -8192)
        x, y = 960, 270  # 0.5 * 1919 rounded, 0.25 * 1079 rounded
        assert report[33:37] == bytes([0x00, x & 0xFF, (x >> 8) | (y & 0xF) << 4, y >> 4])
        assert report[37] & 0x80, "second touch point inactive"
        assert report[53] == 0x15  # 50 %, charging
    finally:
        consumer.close()


def test_dualshock4_report_layout(manager: tuple[ShmPadManager, queue.Queue[PadFeedback]]) -> None:
    pads, _ = manager
    pads.arrive(1, PadKind.DUALSHOCK4)
    pads.update(1, PadState(BUTTON_A | START, 0, 200, 0, 0, 0, 0))
    consumer = Consumer(pads.path(1))
    try:
        shm = consumer.dump()
        assert shm[140] == 1  # device_type DUALSHOCK4
        report = shm[8:72]
        assert report[0] == 0x01
        assert report[1:5] == bytes([128, 128, 128, 128])
        assert report[5] == 0x08 | 0x20  # hat centred, cross
        assert report[6] == 0x20 | 0x08  # options, R2 digital
        assert report[8:10] == bytes([0, 200])
        assert report[33] == 1  # one touch report
    finally:
        consumer.close()


def test_dualsense_output_report_becomes_feedback(
    manager: tuple[ShmPadManager, queue.Queue[PadFeedback]],
) -> None:
    pads, feedback = manager
    pads.arrive(3, PadKind.DUALSENSE)
    consumer = Consumer(pads.path(3))
    try:
        assert consumer.ask(f"attach {GAMEPAD_PROTO_VERSION}") == "ok"
        report = bytearray(63)
        report[0] = 0x02
        report[1] = 0x01 | 0x02 | 0x04  # rumble, haptics select, right trigger effect
        report[2] = 0x04  # lightbar
        report[3], report[4] = 0x40, 0x80  # right (weak), left (strong) motor
        right = bytes([0x21, *range(1, 11)])
        report[11:22] = right
        report[45:48] = bytes([255, 0, 128])
        assert consumer.ask(f"output {report.hex()}") == "ok"
        fb = feedback.get(timeout=2)
        assert (fb.index, fb.rumble_low, fb.rumble_high) == (3, 0x80 * 257, 0x40 * 257)
        assert fb.led_rgb == (255, 0, 128)
        assert fb.trigger_effect == bytes([0x04]) + right + bytes(11)
        # LED-only update: rumble stays what it was, no trigger effect.
        report[1], report[45:48] = 0, bytes([1, 2, 3])
        assert consumer.ask(f"output {report.hex()}") == "ok"
        fb = feedback.get(timeout=2)
        assert fb == PadFeedback(3, 0x80 * 257, 0x40 * 257, (1, 2, 3), None)
    finally:
        consumer.close()


def test_seqlock_reader_never_sees_a_torn_report(
    manager: tuple[ShmPadManager, queue.Queue[PadFeedback]],
) -> None:
    pads, _ = manager
    pads.arrive(0, PadKind.DUALSENSE)
    consumer = Consumer(pads.path(0))
    stop = threading.Event()

    def write() -> None:
        v = 0
        while not stop.is_set():
            v = (v + 1) % 128
            axis = v * 256 - 32768  # lx and rx carry the same byte in every report
            pads.update(0, PadState(0, 0, 0, axis, 0, axis, 0))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        torn, distinct = map(int, consumer.ask("stress 20000").split())
    finally:
        stop.set()
        writer.join()
        consumer.close()
    assert torn == 0
    assert distinct > 1, "the reader never ran concurrently with the writer"


def test_host_bytes_are_the_proto_gamepad_layouts(
    manager: tuple[ShmPadManager, queue.Queue[PadFeedback]],
) -> None:
    """What the host writes, read back through `proto.gamepad`'s structs and at the raw pinned
    offsets: the structs another process would map are exactly the host's bytes."""
    pads, _ = manager
    state = PadState(BUTTON_Y | LEFT_SHOULDER, 33, 44, -1234, 4321, 32767, -32768)
    pads.arrive(5, PadKind.XBOX360)
    pads.update(5, state)
    raw = pads.path(5).read_bytes()
    assert len(raw) == ctypes.sizeof(XusbShm)
    x = XusbShm.from_buffer_copy(raw)
    assert (x.magic, x.packet, x.pad_index) == (XUSB_MAGIC, 2, 5)
    fields = (x.buttons, x.left_trigger, x.right_trigger, x.thumb_lx, x.thumb_ly, x.thumb_rx,
              x.thumb_ry)  # fmt: skip
    assert fields == (BUTTON_Y | LEFT_SHOULDER, 33, 44, -1234, 4321, 32767, -32768)
    for name, fmt, value in (
        ("magic", "<I", XUSB_MAGIC), ("packet", "<I", 2), ("buttons", "<H", 0x8100),
        ("left_trigger", "<B", 33), ("right_trigger", "<B", 44), ("thumb_lx", "<h", -1234),
        ("thumb_ly", "<h", 4321), ("thumb_rx", "<h", 32767), ("thumb_ry", "<h", -32768),
        ("rumble_seq", "<I", 0), ("driver_proto", "<I", 0), ("pad_index", "<I", 5),
    ):  # fmt: skip
        offset = getattr(XusbShm, name).offset
        assert raw[offset : offset + struct.calcsize(fmt)] == struct.pack(fmt, value), name

    pads.arrive(6, PadKind.DUALSHOCK4)
    pads.update(6, state)
    raw = pads.path(6).read_bytes()
    assert len(raw) == ctypes.sizeof(PadShm)
    p = PadShm.from_buffer_copy(raw)
    assert (p.magic, p.device_type, p.pad_index) == (PAD_MAGIC, DeviceType.DUALSHOCK4, 6)
    assert p.input_gen % 2 == 0 and p.input_gen > 0 and p.out_seq == 0
    report = bytes(p.input)
    assert report == raw[PadShm.input.offset : PadShm.input.offset + REPORT_LEN]
    assert report[0] == 0x01 and report[8:10] == bytes([33, 44])  # DS4 triggers at 8-9
    assert raw[140] == 1 and struct.unpack_from("<I", raw, 152)[0] == 6
