"""A driver-side consumer of a virtual Xbox pad's shared memory, run as a separate process.

It knows only the pinned XusbShm offsets and the pad file's name pattern (no punktfunk import):
waits for the newest `punktfunk-<session>-pad<index>-<pid>-<token>` regular file of the host's
user (opened without following symlinks) and the expected state bytes at offset 8, prints the
whole section as hex, then writes rumble (large 200, small 100) and bumps `rumble_seq` as a
virtual XUSB driver would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

RUMBLE_LARGE, RUMBLE_SMALL = 200, 100

SCRIPT = r"""
import glob, mmap, os, re, stat, struct, sys, time
directory, prefix, uid = sys.argv[1], sys.argv[2], int(sys.argv[5])
want = bytes.fromhex(sys.argv[6])
name = re.compile(re.escape(prefix) + r"-\d+-[0-9a-f]{16}$")

def newest():
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "-*")):
        st = os.lstat(path)
        if name.match(os.path.basename(path)) and stat.S_ISREG(st.st_mode) and st.st_uid == uid:
            found.append((st.st_mtime_ns, path))
    return max(found)[1] if found else None

deadline = time.monotonic() + 30
while (path := newest()) is None:
    if time.monotonic() > deadline:
        sys.exit("no pad file")
    time.sleep(0.05)
fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
st = os.fstat(fd)
if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
    sys.exit("not the host's pad file")
mm = mmap.mmap(fd, 0)
while bytes(mm[8 : 8 + len(want)]) != want:
    if time.monotonic() > deadline:
        sys.exit("state never arrived: " + bytes(mm).hex())
    time.sleep(0.01)
print(bytes(mm).hex(), flush=True)
mm[28], mm[29] = int(sys.argv[3]), int(sys.argv[4])
struct.pack_into("<I", mm, 24, struct.unpack_from("<I", mm, 24)[0] + 1)
"""


def start(directory: Path, session: str, index: int, want: bytes) -> subprocess.Popen[str]:
    """Consume pad `index` of `session` in `directory`, made by this test process's user."""
    prefix = f"punktfunk-{re.sub(r'[^A-Za-z0-9_-]', '_', session)}-pad{index}"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(directory),
            prefix,
            str(RUMBLE_LARGE),
            str(RUMBLE_SMALL),
            str(os.geteuid()),
            want.hex(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> bytes:
    """The pad section as the consumer saw it once the state arrived."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return bytes.fromhex(out.strip())
