"""Another local user plants symlinks and files at our /dev/shm names (issue #11, finding 8).

A real `punktfunk serve` (native, pattern display: the frame ring is real) runs as root; as
`nobody` we plant symlinks to a root-owned file at the names the host used to take (the pad's
`punktfunk-<session>-pad0`, the ring's `pfvd-<monitor>-<generation>`) and at guesses of the
names it takes now, plus a `nobody` file that looks like a pad. A gamepad then arrives: the
victim file must be untouched, the consumer must find the host's own pad, and every pad and ring
the session made must be a 0600 regular file of the host's user.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as a second local user",
)

SHM = Path("/dev/shm")
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
SECRET = b"root's precious file\n"


def as_nobody(*argv: str) -> None:
    subprocess.run([*NOBODY, *argv], check=True, timeout=30)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(SECRET)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from test_native_stream import NativeHost

    h = NativeHost(tmp_path_factory.mktemp("shm-native"))
    yield h
    if h.proc.poll() is None:
        assert h.stop() == 0


def _plant(names: list[str], target: Path, planted: list[Path]) -> None:
    """As nobody, a symlink to `target` at each name (appended to `planted`); a name that
    another process on this machine holds right now is left to it."""
    for name in names:
        path = SHM / name
        if subprocess.run([*NOBODY, "ln", "-s", str(target), str(path)], timeout=30).returncode:
            assert not path.is_symlink() or os.lstat(path).st_uid != 65534, path
            continue
        planted.append(path)


def test_planted_symlinks_are_never_written_through(host, victim: Path) -> None:
    import pad_consumer
    from punktfunk.input.base import PadKind
    from punktfunk.input.padroute import native_state
    from punktfunk.native.wire.quic import fingerprint
    from punktfunk.viewer.keys import PadSnapshot, arrival_event, snapshot_event
    from test_native_stream import _in_process_client, _wait_decoding

    receiver, store = _in_process_client(host, "shmvictim", "640x480@30")
    session = f"pf2-shmvictim-{fingerprint(store.identity.cert).hex()[:8]}"
    pid = host.proc.pid
    names = [f"punktfunk-{session}-pad{i}" for i in range(4)]  # the old, fixed pad names
    names += [f"pfvd-{m}-{g}" for m in range(2) for g in range(1, 9)]  # the old ring names
    names += [f"punktfunk-{session}-pad0-{pid}-{'0' * 16}", f"pfvd-0-1-{pid}-{'0' * 16}"]
    links: list[Path] = []
    # A file of nobody's that matches the pad pattern exactly: a consumer must not take it.
    decoy = SHM / f"punktfunk-{session}-pad0-{pid}-{'f' * 16}"
    runner = threading.Thread(target=receiver.run, args=(10.0,))
    try:
        _plant(names, victim, links)
        assert len(links) >= 8, links
        as_nobody("sh", "-c", f"head -c 64 /dev/zero > {decoy}")
        runner.start()
        _wait_decoding(receiver, runner, "640x480", 3)
        snap = PadSnapshot(buttons=0x1001, axes=(1000, 2000, 32767, -32768, 16384, 32767))
        ev = snapshot_event(0, 1, snap)
        receiver.send_input(arrival_event(0, PadKind.XBOX360), reliable=True)
        receiver.send_input(ev, reliable=False)
        st = native_state(ev.code, ev.x, ev.y, ev.flags)[2]
        want = (st.buttons, st.left_trigger, st.right_trigger, st.thumb_lx, st.thumb_ly,
                st.thumb_rx, st.thumb_ry)  # fmt: skip
        packed = struct.pack("<HBBhhhh", *want)
        seen = pad_consumer.finish(pad_consumer.start(SHM, session, 0, packed))
        assert seen[8:20] == packed  # the consumer found the host's pad, not the decoy
        assert decoy.read_bytes() == bytes(64)  # the host never wrote into nobody's file

        ours = [
            p
            for p in SHM.iterdir()
            if p not in links and p != decoy and (session in p.name or p.name.startswith("pfvd-"))
        ]
        pads = [p for p in ours if p.name.startswith(f"punktfunk-{session}-pad0-")]
        rings = [p for p in ours if p.name.startswith("pfvd-") and f"-{pid}-" in p.name]
        assert pads and rings, sorted(p.name for p in SHM.iterdir())
        for path in pads + rings:
            st_ = os.lstat(path)
            assert stat.S_ISREG(st_.st_mode), path
            assert st_.st_uid == os.geteuid(), path
            assert stat.S_IMODE(st_.st_mode) == 0o600, path
    finally:
        receiver.stop()
        if runner.is_alive():
            runner.join(timeout=30)
        for path in [*links, decoy]:
            path.unlink(missing_ok=True)
    assert victim.read_bytes() == SECRET
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_the_driver_opens_only_our_own_rings(tmp_path: Path) -> None:
    """A ring name the host hands over that is a symlink, or another user's file, is refused."""
    from punktfunk.proto.frame import PixelFormat, shm_name
    from punktfunk.vdisplay.ring import FrameRing, RingError

    real = FrameRing.create(shm_name(990, 1), 640, 480, PixelFormat.BGRA8, generation=1)
    link = SHM / shm_name(990, 2)
    theirs = SHM / shm_name(990, 3)
    try:
        as_nobody("ln", "-s", str(SHM / real.name), str(link))
        # A valid ring, but nobody's.
        subprocess.run(
            [*NOBODY, "sh", "-c", f"cat > {theirs}"],
            input=(SHM / real.name).read_bytes(),
            check=True,
            timeout=30,
        )
        for name in (link.name, theirs.name):
            with pytest.raises(RingError, match="cannot open ring"):
                FrameRing.open(name)
    finally:
        real.close()
        link.unlink(missing_ok=True)
        theirs.unlink(missing_ok=True)


def test_sweeps_leave_other_users_names_alone(victim: Path) -> None:
    """Names of ours with a dead pid are removed; the same names owned by nobody, or symlinks,
    are not (and nothing is followed)."""
    from punktfunk.input.pads import sweep_stale
    from punktfunk.vdisplay.ring import sweep_stale_rings

    dead = 2**22 + 12345  # above pid_max's default range: never a live process
    token = "a" * 16
    mine = [SHM / f"punktfunk-sweep-pad0-{dead}-{token}", SHM / f"pfvd-0-1-{dead}-{token}"]
    theirs = [SHM / f"punktfunk-sweep-pad1-{dead}-{token}", SHM / f"pfvd-1-1-{dead}-{token}"]
    links = [SHM / f"punktfunk-sweep-pad2-{dead}-{token}", SHM / f"pfvd-2-1-{dead}-{token}"]
    try:
        for path in mine:
            path.write_bytes(b"x")
        for path in theirs:
            as_nobody("sh", "-c", f": > {path}")
        for path in links:
            as_nobody("ln", "-s", str(victim), str(path))
        removed = set(sweep_stale()) | set(sweep_stale_rings())
        assert set(mine) <= removed
        assert not removed & set(theirs + links)
        assert all(p.exists() for p in theirs) and all(p.is_symlink() for p in links)
        assert victim.read_bytes() == SECRET
    finally:
        for path in mine + theirs + links:
            path.unlink(missing_ok=True)
