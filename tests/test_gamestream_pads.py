"""A Moonlight client's gamepad, end to end: the pad state it sends lands byte-exact in the
session's shared-memory pad (read by a separate process that knows only the pinned layout), and
rumble that process writes back reaches the client's rumble callback."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.input.pads import SHM_DIR, shm_path
from punktfunk.proto.gamepad import XUSB_MAGIC

# A driver-side consumer: maps the XusbShm file, waits for the expected state, prints it, then
# writes rumble (large 200, small 100) and bumps rumble_seq, as a virtual XUSB driver would.
CONSUMER = r"""
import mmap, struct, sys, time
path, want = sys.argv[1], bytes.fromhex(sys.argv[2])
deadline = time.monotonic() + 30
while True:
    try:
        f = open(path, "r+b")
        break
    except FileNotFoundError:
        if time.monotonic() > deadline:
            sys.exit("no pad file")
        time.sleep(0.05)
mm = mmap.mmap(f.fileno(), 0)
while bytes(mm[8 : 8 + len(want)]) != want:
    if time.monotonic() > deadline:
        sys.exit("state never arrived: " + bytes(mm).hex())
    time.sleep(0.01)
print(bytes(mm).hex(), flush=True)
mm[28], mm[29] = 200, 100
struct.pack_into("<I", mm, 24, struct.unpack_from("<I", mm, 24)[0] + 1)
time.sleep(3)
"""


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
        consumer = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(shm_path(SHM_DIR, session, 0)), want.hex()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        flag.write_text("go")
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        seen = bytes.fromhex(out.strip())
        assert len(seen) == 64
        assert struct.unpack_from("<I", seen, 0)[0] == XUSB_MAGIC
        assert seen[8:20] == want  # buttons, triggers, sticks at their pinned offsets

        result = finish_drive(client)
        assert result["sent_input"] is True
        assert [0, 200 * 257, 100 * 257] in result["rumble"], result["rumble"]
        assert host.wait_no_sessions() == []
        assert not shm_path(SHM_DIR, session, 0).exists()  # the pad went with the session
    finally:
        host.kill()
