"""A driver-side consumer of a virtual Xbox pad's shared memory, run as a separate process.

It knows only the pinned XusbShm offsets (no punktfunk import): waits for the pad file and the
expected state bytes at offset 8, prints the whole section as hex, then writes rumble (large
200, small 100) and bumps `rumble_seq` as a virtual XUSB driver would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUMBLE_LARGE, RUMBLE_SMALL = 200, 100

SCRIPT = r"""
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
mm[28], mm[29] = int(sys.argv[3]), int(sys.argv[4])
struct.pack_into("<I", mm, 24, struct.unpack_from("<I", mm, 24)[0] + 1)
"""


def start(path: Path, want: bytes) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(path), want.hex(), str(RUMBLE_LARGE), str(RUMBLE_SMALL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> bytes:
    """The pad section as the consumer saw it once the state arrived."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return bytes.fromhex(out.strip())
