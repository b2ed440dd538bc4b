"""`punktfunk service install|uninstall|status` and the supervisor's pure parts (issue #15).

The unit is written into a temporary XDG config dir (user unit) or --unit-dir (system unit) and
checked by `systemd-analyze verify` where this machine has it, by its content everywhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from punktfunk.config import load_config
from punktfunk.service import proctree, systemd
from punktfunk.service.notify import NotifyListener, notify
from punktfunk.service.supervisor import Backoff


def _verify(unit: Path, tmp_path: Path, user: bool) -> None:
    """systemd's own parser: it must accept the unit without a word about it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    done = subprocess.run(
        [analyze, "verify", *(["--user"] if user else []), str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)},
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and not said, done.stdout + done.stderr


def test_user_unit_is_written_verified_and_removed(run_cli, tmp_path: Path) -> None:
    # No systemctl on PATH: the test must never disable or reload a real user manager's unit.
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": str(tmp_path / "no-systemctl")}
    unit = tmp_path / "xdg" / "systemd" / "user" / "punktfunk.service"
    config = tmp_path / "my settings" / "host.env"  # a blank in the path: quoted in the unit
    config.parent.mkdir()
    config.write_text("")
    out = run_cli("service", "install", "--user", "--config", str(config), env=xdg)
    assert out.returncode == 0, out.stderr
    assert f"wrote {unit} (user unit)" in out.stdout
    assert "systemctl --user daemon-reload: skipped: systemctl not found" in out.stdout
    assert "systemctl --user enable --now punktfunk.service" in out.stdout
    text = unit.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        f'ExecStart={sys.executable} -m punktfunk.cli service run --config "{config}"',
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=60",
        "KillMode=mixed",
        "WantedBy=default.target",
    ):
        assert line in text.splitlines(), (line, text)
    assert "User=" not in text
    _verify(unit, tmp_path, user=True)

    again = run_cli("service", "install", "--user", env=xdg)
    assert f"replaced {unit}" in again.stdout

    status = run_cli("service", "status", "--user", env=xdg)
    assert f"unit:    {unit} (installed)" in status.stdout
    assert status.returncode == 1 and "host:    not answering" in status.stdout

    gone = run_cli("service", "uninstall", "--user", env=xdg)
    assert gone.returncode == 0, gone.stderr
    assert f"removed {unit}" in gone.stdout and not unit.exists()
    assert "systemctl --user disable --now: skipped: systemctl not found" in gone.stdout
    twice = run_cli("service", "uninstall", "--user", env=xdg)
    assert twice.returncode == 0 and "nothing to remove" in twice.stdout


def test_system_unit_runs_as_its_own_user_with_its_state_dir(run_cli, tmp_path: Path) -> None:
    out = run_cli("service", "install", "--unit-dir", str(tmp_path), "--run-as", "daemon")
    assert out.returncode == 0, out.stderr
    unit = tmp_path / "punktfunk.service"
    lines = unit.read_text().splitlines()
    for line in (
        "User=daemon",
        "StateDirectory=punktfunk",
        "Environment=PUNKTFUNK_STATE_DIR=/var/lib/punktfunk",
        "Environment=PUNKTFUNK_CONFIG=/etc/punktfunk/host.env",
        "NoNewPrivileges=yes",
        "After=network-online.target",
        "WantedBy=multi-user.target",
    ):
        assert line in lines, (line, lines)
    _verify(unit, tmp_path, user=False)
    assert run_cli("service", "uninstall", "--unit-dir", str(tmp_path)).returncode == 0
    assert not unit.exists()


def test_backoff_doubles_to_30_s_and_resets_after_60_s_ready() -> None:
    backoff = Backoff()
    assert [backoff.after_exit(0) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_exit(59) == 30  # a host that never held 60 s keeps the long delay
    assert backoff.after_exit(60) == 1
    assert backoff.after_exit(5) == 2


@pytest.mark.parametrize(
    ("how", "cause"),
    [
        ("exit 3", "exit code 3"),
        ("kill -KILL $$", "signal SIGKILL"),
        ("kill -TERM $$", "signal SIGTERM"),
    ],
)
def test_exit_causes_read_as_a_person_would_say_them(how: str, cause: str) -> None:
    proc = subprocess.Popen(["sh", "-c", how])
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    assert proctree.describe(status) == cause


def test_doctor_names_a_taken_port_and_the_unit_state(run_cli, tmp_path: Path) -> None:
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": str(tmp_path / "no-systemctl")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        out = run_cli("doctor", "--native-port", str(port), "--bind-address", "127.0.0.1", env=xdg)
    assert out.returncode == 0, out.stderr
    assert f"in use by another program: native udp/{port}" in out.stdout
    assert "not installed (punktfunk service install --user)" in out.stdout

    assert run_cli("service", "install", "--user", env=xdg).returncode == 0
    out = run_cli("doctor", "--native-port", str(port), "--bind-address", "127.0.0.1", env=xdg)
    assert f"free on 127.0.0.1: native udp/{port}" in out.stdout
    unit = tmp_path / "xdg" / "systemd" / "user" / "punktfunk.service"
    assert f"unit (user)        ok   {unit}: " in out.stdout


def test_the_system_units_config_file_is_made_so_the_unit_can_start(tmp_path: Path) -> None:
    """The system unit names /etc/punktfunk/host.env, and a named file that is missing is a
    configuration error: install creates it, empty and 0640, and never overwrites one."""
    path = tmp_path / "etc" / "host.env"
    assert systemd.ensure_system_config("daemon", path)
    assert path.stat().st_mode & 0o777 == 0o640
    assert load_config(flags={}, config_path=path).config_file_found
    path.write_text("PUNKTFUNK_CODEC=hevc\n")
    assert not systemd.ensure_system_config("daemon", path)
    assert path.read_text() == "PUNKTFUNK_CODEC=hevc\n"


def test_notify_reaches_abstract_sockets_and_the_listener_knows_the_sender() -> None:
    name = f"punktfunk-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        assert notify("READY=1", "@" + name)
        assert manager.recv(100) == b"READY=1"
    listener = NotifyListener()
    try:
        assert notify("WATCHDOG=1\nSTATUS=fine", str(listener.path))
        assert listener.receive() == [(os.getpid(), {"WATCHDOG": "1", "STATUS": "fine"})]
    finally:
        listener.close()
    assert not notify("READY=1", "")  # no manager: nothing sent, nothing raised
