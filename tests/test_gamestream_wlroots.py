"""End to end on display=wlroots: two Moonlight clients at different modes on one host, each on
its own output of the host's private headless sway.

Each client launches its own Wayland app (foot, coloured all over, waiting for a line); the
decoded picture is that app, keys and clicks reach only that app, closing one client removes
its output while the other keeps streaming, and a mode change made inside the compositor is
followed by the remaining stream without a reconnect.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from gs_host import Host, drive, finish_drive, start_drive
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode
from punktfunk.wayland.ipc import SwayIpc
from punktfunk.wayland.sway import Sway, find_sockets, runtime_dir
from test_vdisplay_support import require_backend, wait_until

RED, BLUE = [0, 0, 255], [255, 0, 0]  # BGR, as the client decodes


def _app(tmp: Path, title: str, colour: str) -> str:
    config = tmp / f"{title}.ini"
    config.write_text(f"[colors]\nbackground={colour}\nforeground={colour}\n")
    out = tmp / f"{title}.txt"
    script = tmp / f"{title}.sh"
    # exec: the app's pid is the one the host launched (sway places windows by it).
    script.write_text(f"exec foot -c {config} sh -c 'read line; echo $line > {out}; sleep 60'\n")
    return f"{title}=sh {script}"


def type_into_own_app(tmp: Path, host: Host) -> dict:
    """Pair a Moonlight client, stream 800x600, click into the "Own" app (`_app`) and type
    "Hi" + Enter once the session runs; the app's line is checked, the client's result kept."""
    drive(tmp, "--pin", "4321", "--pair-only")
    flag = tmp / "go"
    client = start_drive(
        tmp, "--seconds", "60", "--mode", "800x600x30",
        "--input-after-file", str(flag), "--click", "100,600", "--keys", "Hi\r",
        "--stop-file", str(tmp / "Own.txt"),
    )  # fmt: skip
    assert wait_until(lambda: len(host.status()["sessions"]) == 1, 60), host.status()
    flag.write_text("go")
    result = finish_drive(client, timeout=60)
    assert (tmp / "Own.txt").read_text().strip() == "Hi"
    return result


def _close(got: list[int] | None, want: list[int], tolerance: int = 24) -> bool:
    return got is not None and max(abs(a - b) for a, b in zip(got, want, strict=True)) <= tolerance


def _outputs(host: Host) -> dict[str, dict]:
    sockets = find_sockets(runtime_dir(host.state))
    assert sockets is not None, "no sway runs for the host"
    ipc = SwayIpc(sockets[1])
    try:
        return {o["name"]: o for o in ipc.outputs()}
    finally:
        ipc.close()


def _tree(host: Host) -> str:
    """Where every window is and what each seat focuses (the failure message)."""
    sockets = find_sockets(runtime_dir(host.state))
    if sockets is None:
        return "no sway"
    ipc = SwayIpc(sockets[1])
    try:
        tree = ipc.request(4)
        seats = ipc.request(101)
    finally:
        ipc.close()
    lines = []
    for output in tree["nodes"]:
        for ws in output["nodes"]:
            apps = [(n.get("pid"), n.get("focused")) for n in ws["nodes"]]
            lines.append(f"{output['name']}/{ws['name']}: {apps}")
    lines += [f"seat {s['name']} focus={s['focus']}" for s in seats]
    return "\n".join(lines)


def _windows_mapped(host: Host) -> bool:
    sockets = find_sockets(runtime_dir(host.state))
    assert sockets is not None
    ipc = SwayIpc(sockets[1])
    try:
        windows = ipc.windows()
    finally:
        ipc.close()
    return all(len(windows.get(w, [])) == 1 for w in ("pf-0", "pf-1"))


def _sway(host: Host, command: str) -> None:
    sockets = find_sockets(runtime_dir(host.state))
    assert sockets is not None
    ipc = SwayIpc(sockets[1])
    try:
        ipc.command(command)
    finally:
        ipc.close()


def test_two_moonlight_clients_each_stream_their_own_output_and_app(tmp_path: Path) -> None:
    require_backend(DisplayBackend.WLROOTS)
    apps = f"{_app(tmp_path, 'Red', 'ff0000')}; {_app(tmp_path, 'Blue', '0000ff')}"
    host = Host(tmp_path, "--pin", "4321", "--display", "wlroots", "--apps", apps)
    try:
        for who in ("a", "b"):
            (tmp_path / who).mkdir()
            drive(tmp_path / who, "--pin", "4321", "--pair-only")
        flags = {who: tmp_path / f"go-{who}" for who in ("a", "b")}
        stops = {who: tmp_path / f"stop-{who}" for who in ("a", "b")}
        # One launch at a time: GameStream tells two clients on one address apart only once
        # their sessions run.
        clients = {
            "a": start_drive(
                tmp_path / "a", "--seconds", "60", "--mode", "1280x720x30", "--app", "Red",
                "--input-after-file", str(flags["a"]), "--click", "200,600", "--keys", "Ab\r",
                "--stop-file", str(stops["a"]),
            ),
        }  # fmt: skip
        assert wait_until(lambda: len(host.status()["sessions"]) == 1, 60), host.status()
        clients.update({
            "b": start_drive(
                tmp_path / "b", "--seconds", "60", "--mode", "800x600x30", "--app", "Blue",
                "--input-after-file", str(flags["b"]), "--click", "150,500", "--keys", "Ba\r",
                "--stop-file", str(stops["b"]), "--timeline",
            ),
        })  # fmt: skip
        assert wait_until(lambda: len(host.status()["sessions"]) == 2, 60), host.status()
        displays = {s["display"] for s in host.status()["sessions"]}
        outputs = _outputs(host)
        modes = {
            name: (o["current_mode"]["width"], o["current_mode"]["height"])
            for name, o in outputs.items()
            if name in displays
        }
        assert sorted(modes.values()) == [(800, 600), (1280, 720)], modes
        by_mode = {size: name for name, size in modes.items()}

        # Each app is up on its own output: both clients click into it and type a line.
        assert wait_until(lambda: _windows_mapped(host), 20), _tree(host)
        for flag in flags.values():  # both type at once: each seat has its own focus
            flag.write_text("go")
        for title, line in (("Red", "Ab"), ("Blue", "Ba")):
            out = tmp_path / f"{title}.txt"
            assert wait_until(lambda o=out: o.exists() and o.read_text().strip(), 20), _tree(host)
            assert out.read_text().strip() == line, title

        # Client a leaves: its output goes (unplugged, or parked at another mode).
        stops["a"].write_text("stop")
        result_a = finish_drive(clients["a"], timeout=60)
        a_left = time.monotonic()
        assert result_a["shape"] == [720, 1280, 3]
        assert _close(result_a["centre_bgr"], RED), result_a["centre_bgr"]
        assert wait_until(lambda: len(host.status()["sessions"]) == 1, 15)
        gone = _outputs(host).get(by_mode[(1280, 720)])
        assert gone is None or gone["current_mode"]["width"] != 1280, gone

        # Client b keeps streaming, and follows a mode change made inside the compositor.
        time.sleep(1.0)
        _sway(host, f"output {by_mode[(800, 600)]} mode --custom 1024x768@30Hz")
        time.sleep(3.0)
        stops["b"].write_text("stop")
        result_b = finish_drive(clients["b"], timeout=60)
        assert not result_b["terminated"], result_b["termination_error_code"]
        assert result_b["shape"] == [768, 1024, 3], result_b["shape"]
        assert _close(result_b["centre_bgr"], BLUE), result_b["centre_bgr"]
        after = [n for t, n in result_b["timeline"] if t > a_left]
        assert len(after) >= 20, f"{len(after)} frames after client a left"
    finally:
        host.kill()


def test_attach_wayland_streams_an_output_of_a_running_compositor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone's own wlroots session (here a sway this test starts): the host runs in it and
    streams one of its outputs as it is, with input through the compositor, no portal."""
    require_backend(DisplayBackend.WLROOTS)
    desktop = Path(tempfile.mkdtemp(prefix="pf-d-", dir="/tmp"))
    sway = Sway(desktop)
    try:
        output = sway.create_output(0, DisplayMode(1280, 720, 30))
        monkeypatch.setenv("WAYLAND_DISPLAY", sway.wayland_socket.name)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(sway.runtime))
        script = _app(tmp_path, "Own", "ff0000").split("=", 1)[1].split()[1]
        app = subprocess.Popen(["sh", script], stdin=subprocess.DEVNULL)
        host = None
        try:
            assert wait_until(lambda: sway.ipc.windows().get("pf-0") == [app.pid], 20)
            host = Host(tmp_path, "--pin", "4321", "--display", f"attach:wayland:{output.name}")
            result = type_into_own_app(tmp_path, host)
            assert result["shape"] == [720, 1280, 3]  # the output as it is
            assert _close(result["centre_bgr"], RED), result["centre_bgr"]
            assert host.wait_no_sessions() == []
            assert sway.alive and sway.mode(output.name) == (1280, 720)  # borrowed, not ours
        finally:
            if host is not None:
                host.kill()
            app.kill()
            app.wait()
    finally:
        sway.stop()
        shutil.rmtree(desktop, ignore_errors=True)
