"""The installed `punktfunk` command: help, config show, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from punktfunk.cli import COMMANDS
from punktfunk.config import KNOBS

SUBCOMMANDS = [
    "serve",
    "demo",
    "vdisplay",
    "pair",
    "probe",
    "connect",
    "service",
    "doctor",
    "config",
]


def test_help_lists_every_subcommand(run_cli) -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert f"    {name}" in out.stdout


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_each_subcommand_explains_itself_and_takes_every_knob(run_cli, name: str) -> None:
    out = run_cli(name, "--help")
    assert out.returncode == 0
    assert "--config PATH" in out.stdout
    for knob in KNOBS.values():
        assert knob.flag in out.stdout


def test_config_show_lists_every_knob_with_value_and_source(run_cli, host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_CODEC=hevc\n")
    out = run_cli(
        "config",
        "show",
        "--display",
        "pattern",
        "--gamestream",
        env={"PUNKTFUNK_LOG_LEVEL": "debug"},
    )
    assert out.returncode == 0, out.stderr
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.stdout.splitlines()
        if not line.startswith("#")
    }
    assert set(rows) == set(KNOBS)
    assert rows["display"] == ["pattern", "flag", "--display"]
    assert rows["gamestream"] == ["true", "flag", "--gamestream"]
    assert rows["log_level"] == ["debug", "env", "PUNKTFUNK_LOG_LEVEL"]
    assert rows["codec"] == ["hevc", "host.env", f"{host_env}:1"]
    assert rows["native_port"] == ["9777", "default"]
    assert f"# host.env: {host_env} (found)" in out.stdout


def test_bad_host_env_line_fails_with_file_line_and_allowed(run_cli, host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_CAPTURE=auto\nPUNKTFUNK_ENCODER=quicksync\n")
    out = run_cli("config", "show")
    assert out.returncode == 1
    assert f"{host_env}:2" in out.stderr
    assert "'quicksync'" in out.stderr
    assert "auto|nvenc|vaapi|qsv|amf|software" in out.stderr
    assert out.stdout == ""


def test_bad_flag_is_a_config_error(run_cli) -> None:
    out = run_cli("doctor", "--pipeline-depth", "9")
    assert out.returncode == 1 and "flag --pipeline-depth" in out.stderr and "1..2" in out.stderr


@pytest.mark.parametrize("action", ["run", "install", "uninstall", "status"])
def test_service_actions_explain_themselves_and_take_every_knob(run_cli, action: str) -> None:
    out = run_cli("service", action, "--help")
    assert out.returncode == 0
    assert "--config PATH" in out.stdout
    for knob in KNOBS.values():
        assert knob.flag in out.stdout


def test_service_without_an_action_is_a_usage_error(run_cli) -> None:
    out = run_cli("service")
    assert out.returncode == 2 and "ACTION" in out.stderr


def test_connect_without_pygame_names_the_extra_and_exits_1(run_cli, tmp_path: Path) -> None:
    # A `pygame` that fails to import, first on the path: as if pygame-ce were not installed.
    fake = tmp_path / "nopygame" / "pygame"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pygame is not installed')\n")
    out = run_cli("connect", "127.0.0.1", env={"PYTHONPATH": str(fake.parent)})
    assert out.returncode == 1, out.stderr
    assert "pip install 'punktfunk[viewer]'" in out.stderr
    assert out.stdout == ""


def test_connect_without_a_pairing_or_pin_says_how_to_pair(run_cli, tmp_path: Path) -> None:
    out = run_cli("connect", "127.0.0.1", "--port", "9", "--client-dir", str(tmp_path / "c"))
    assert out.returncode == 1
    assert "not paired with 127.0.0.1:9" in out.stderr and "--pin" in out.stderr


def test_doctor_runs_the_abi_self_check(run_cli) -> None:
    out = run_cli("doctor")
    assert out.returncode == 0, out.stderr
    assert "driver ABI" in out.stdout and "PadShm 256 B, device_type at 140" in out.stdout
    assert "display pattern" in out.stdout


def test_unknown_subcommand_is_a_usage_error(run_cli) -> None:
    out = run_cli("stream")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_readme_documents_every_knob_and_ci_runs_its_test_command() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    for knob in KNOBS.values():
        assert f"| `{knob.name}` |" in readme, knob.name
        assert knob.allowed.replace("|", "\\|") in readme or knob.name == "state_dir"
    test_command = "./scripts/test.sh"
    assert test_command in readme.split("```")[1]
    assert test_command in (root / ".ci" / "run").read_text()


def test_pair_without_a_running_host_is_a_clear_error(run_cli) -> None:
    out = run_cli("pair", "1234")
    assert out.returncode == 1
    assert out.stderr.startswith("punktfunk pair: ") and "host" in out.stderr.lower(), out.stderr
    assert out.stdout == ""


def test_demo_streams_the_pattern_display_to_its_loopback_client(run_cli) -> None:
    out = run_cli("demo", "--seconds", "4", "--mode", "640x480@30")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("demo: ")]
    assert len(lines) >= 3, out.stdout
    fps = [float(line.split()[1]) for line in lines[1:]]
    assert max(fps) > 20, out.stdout  # a 30 Hz pattern arrives at its rate
    assert "frames decoded" in out.stdout and "Mbit/s" in lines[-1]
