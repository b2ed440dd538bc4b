"""A Moonlight client's gamepad, end to end: the pad state it sends lands byte-exact in the
session's shared-memory pad (read by a separate process that knows only the pinned layout,
tests/pad_consumer.py), and rumble that process writes back reaches the client's rumble
callback."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pad_consumer
from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.input.pads import SHM_DIR, find_pad
from punktfunk.proto.gamepad import XUSB_MAGIC


def test_moonlight_gamepad_reaches_shared_memory_and_rumble_comes_back(tmp_path: Path) -> None:
    host = Host(tmp_path, "--pin", "4321", "--display", "pattern")
    try:
        drive(tmp_path, "--pin", "4321", "--pair-only")
        flag = tmp_path / "go"
        buttons, lt, rt, lx, ly, rx, ry = 0x1000 | 0x0001, 200, 100, 1000, -2000, 32767, -32768
        client = start_drive(
            tmp_path, "--seconds", "8", "--mode", "640x480x30", "--input-after-file", str(flag),
            "--gamepad", ",".join(map(str, (buttons, lt, rt, lx, ly, rx, ry))),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not host.status()["sessions"]:
            assert time.monotonic() < deadline and client.poll() is None
            time.sleep(0.2)
        session = host.status()["sessions"][0]["name"]
        want = struct.pack("<HBBhhhh", buttons, lt, rt, lx, ly, rx, ry)
        consumer = pad_consumer.start(SHM_DIR, session, 0, want)
        flag.write_text("go")
        seen = pad_consumer.finish(consumer)
        assert len(seen) == 64
        assert struct.unpack_from("<I", seen, 0)[0] == XUSB_MAGIC
        assert seen[8:20] == want  # buttons, triggers, sticks at their pinned offsets

        result = finish_drive(client)
        assert result["sent_input"] is True
        rumble = [0, pad_consumer.RUMBLE_LARGE * 257, pad_consumer.RUMBLE_SMALL * 257]
        assert rumble in result["rumble"], result["rumble"]
        assert host.wait_no_sessions() == []
        assert find_pad(SHM_DIR, session, 0) is None  # the pad went with the session
    finally:
        host.kill()
