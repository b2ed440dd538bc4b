"""The apps model: the apps file (Sunshine's apps.json terms) and an app's run for a session
(prep and undo commands, detached commands, the command in its working dir), with real
processes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from punktfunk.apps import (
    App,
    AppError,
    AppRun,
    Prep,
    app_to_entry,
    load_apps,
    parse_apps_file,
    stable_id,
    write_apps_file,
)

SUNSHINE_FILE = {
    "env": {"PATH": "$(PATH):$(HOME)/.local/bin"},
    "apps": [
        {"name": "Steam Big Picture", "cmd": "steam -bigpicture", "working-dir": "/home/me",
         "prep-cmd": [{"do": "pactl set-sink-mute 0 1", "undo": "pactl set-sink-mute 0 0"}],
         "detached": ["syncthing --no-browser"], "image-path": "steam.png",
         "auto-detach": "true", "exclude-global-prep-cmd": "false"},
        {"name": "Prep only", "prep-cmd": [{"do": "true"}]},
    ],
}  # fmt: skip


def test_a_sunshine_apps_file_loads_and_round_trips() -> None:
    steam, prep_only = parse_apps_file(json.dumps(SUNSHINE_FILE))
    mute = Prep(("pactl", "set-sink-mute", "0", "1"), ("pactl", "set-sink-mute", "0", "0"))
    assert steam == App(
        stable_id("Steam Big Picture"), "Steam Big Picture", ("steam", "-bigpicture"), True,
        "/home/me", (mute,), (("syncthing", "--no-browser"),),
    )  # fmt: skip
    assert prep_only.command == () and prep_only.runs_anything
    again = parse_apps_file(json.dumps({"apps": [app_to_entry(steam), app_to_entry(prep_only)]}))
    assert again == (steam, prep_only)


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ("[", "not JSON"),
        ({"apps": {}}, '{"apps": [...]}'),
        ({"apps": [{"cmd": "x"}]}, "app 0: a name"),
        ({"apps": [{"name": "A", "working_dir": "/tmp"}]}, "app 'A': unknown key(s) working_dir"),
        ({"apps": [{"name": "A", "working-dir": "tmp"}]}, "app 'A' working-dir: an absolute path"),
        ({"apps": [{"name": "A", "prep-cmd": [{"undo": "x"}]}]}, "app 'A' prep-cmd 0"),
        ({"apps": [{"name": "A", "cmd": "say 'unclosed"}]}, "app 'A' cmd: No closing quotation"),
        ({"apps": [{"name": "A"}, {"name": "A"}]}, "'A' is used twice"),
        ({"apps": [{"name": "Desktop"}]}, "'Desktop' is used twice"),
    ],
)
def test_a_bad_apps_file_says_which_app_and_key(entries: object, says: str) -> None:
    text = entries if isinstance(entries, str) else json.dumps(entries)
    with pytest.raises(ValueError) as info:
        parse_apps_file(text)
    assert says in str(info.value)


def test_the_setting_and_the_file_together_and_a_clash_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "apps.json"
    assert load_apps("Clock=xclock", path) == (App(stable_id("Clock"), "Clock", ("xclock",)),)
    write_apps_file(path, (App(stable_id("Game"), "Game", ("game",), working_dir="/opt/game"),))
    assert [a.title for a in load_apps("Clock=xclock", path)] == ["Clock", "Game"]
    assert path.stat().st_mode & 0o777 == 0o644 and not list(tmp_path.glob(".apps.json*"))
    with pytest.raises(ValueError, match=f"apps file {path}: app title 'Game' is also in"):
        load_apps("Game=other", path)


def _wait_for(check, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_run_preps_in_order_detaches_runs_in_its_dir_and_undoes_in_reverse(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    work = tmp_path / "work"
    work.mkdir()

    def sh(text: str) -> tuple[str, ...]:
        return ("sh", "-c", f"exec >> {log}; {text}")

    app = App(
        1, "Game", sh("echo cmd $PWD $SESSION_DISPLAY; exec sleep 300"), working_dir=str(work),
        prep=(Prep(sh("echo do1 $PWD"), sh("echo undo1")), Prep(sh("echo do2"), sh("echo undo2"))),
        detached=(("sh", "-c", f"echo $$ > {tmp_path / 'detached'}; exec sleep 300"),),
    )  # fmt: skip
    run = AppRun(app, {"SESSION_DISPLAY": ":42"}, "test-session")
    detached = 0
    try:
        _wait_for(lambda: "cmd" in log.read_text(), "the command never ran")
        _wait_for(lambda: (tmp_path / "detached").is_file(), "the detached command never ran")
        detached = int((tmp_path / "detached").read_text())
        assert log.read_text().splitlines() == [f"do1 {work}", "do2", f"cmd {work} :42"]
        pid = run.pid
        assert pid is not None and os.getpgid(pid) == pid
        run.stop()
        assert log.read_text().splitlines()[3:] == ["undo2", "undo1"]
        _wait_for(lambda: not _alive(pid), "the command outlived its session")
        assert _alive(detached)  # not the session's: left running
    finally:
        run.stop()
        if detached:
            os.kill(detached, 9)


def test_a_failing_prep_step_undoes_the_steps_before_it_and_says_why(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = Prep(("sh", "-c", f"echo do1 >> {log}"), ("sh", "-c", f"echo undo1 >> {log}"))
    fails = Prep(
        ("sh", "-c", "echo 'no such sink: 7' >&2; exit 3"), ("sh", "-c", f"echo u2 >> {log}")
    )
    app = App(1, "Game", ("sh", "-c", f"echo cmd >> {log}"), prep=(first, fails))
    with pytest.raises(AppError) as info:
        AppRun(app, {}, "test-session")
    assert "exited with 3: no such sink: 7" in str(info.value)
    assert log.read_text().splitlines() == ["do1", "undo1"]  # its own undo never ran, nor cmd
    missing = App(2, "Gone", ("/nonexistent/game",))
    with pytest.raises(AppError, match="/nonexistent/game"):
        AppRun(missing, {}, "test-session")
