"""The settings registry: precedence, host.env parsing and error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from punktfunk.config import KNOBS, ConfigError, HostConfig, load_config, read_host_env


def test_defaults_when_nothing_is_set(host_env: Path) -> None:
    loaded = load_config(environ={}, config_path=host_env)
    assert loaded.config.display == "auto"
    assert loaded.config.gamestream is False
    assert loaded.config.native_port == 9777
    assert all(str(origin) == "default" for origin in loaded.origins.values())


def test_precedence_flag_over_env_over_file_over_default(host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_ENCODER=vaapi\nPUNKTFUNK_CODEC=hevc\nPUNKTFUNK_DISPLAY=xvfb\n")
    env = {"PUNKTFUNK_CODEC": "av1", "PUNKTFUNK_DISPLAY": "pattern"}
    loaded = load_config(flags={"display": "xorg-dummy"}, environ=env, config_path=host_env)
    cfg = loaded.config
    assert (cfg.display, cfg.codec, cfg.encoder, cfg.hdr) == ("xorg-dummy", "av1", "vaapi", "auto")
    assert str(loaded.origins["display"]) == "flag --display"
    assert str(loaded.origins["codec"]) == "env PUNKTFUNK_CODEC"
    assert str(loaded.origins["encoder"]) == f"host.env {host_env}:1"
    assert str(loaded.origins["hdr"]) == "default"


def test_host_env_syntax_comments_export_quotes(host_env: Path) -> None:
    host_env.write_text(
        "# punktfunk host settings\n\n"
        "export PUNKTFUNK_GAMESTREAM=yes\n"
        'PUNKTFUNK_STATE_DIR="/srv/punktfunk state"\n'
        "PUNKTFUNK_DISPLAY = attach::1\n"
    )
    loaded = load_config(environ={}, config_path=host_env)
    assert loaded.config.gamestream is True
    assert loaded.config.state_dir == Path("/srv/punktfunk state")
    assert loaded.config.display == "attach::1"
    assert str(loaded.origins["display"]).endswith(":5")


def test_unknown_key_names_file_and_line(host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_DISPLAY=xvfb\nPUNKTFUNK_DISPALY=xvfb\n")
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, config_path=host_env)
    message = str(err.value)
    assert f"{host_env}:2" in message
    assert "PUNKTFUNK_DISPALY" in message
    assert "PUNKTFUNK_DISPLAY" in message  # the known keys are listed


@pytest.mark.parametrize(
    ("line", "allowed"),
    [
        (
            "PUNKTFUNK_DISPLAY=wayland",
            "auto|xorg-dummy|xvfb|pattern|wlroots|gamescope|attach:<X display>"
            "|attach:wayland[:<output>]|attach:portal",
        ),
        ("PUNKTFUNK_PIPELINE_DEPTH=3", "1..2"),
        ("PUNKTFUNK_NATIVE_PORT=http", "1..65535"),
        ("PUNKTFUNK_GAMESTREAM=maybe", "true|false"),
        ("PUNKTFUNK_RENDER_ADAPTER=/dev/sda", "auto|/dev/dri/renderD<N>|/dev/dri/card<N>"),
    ],
)
def test_bad_value_names_key_value_file_line_and_allowed(
    host_env: Path, line: str, allowed: str
) -> None:
    host_env.write_text("# comment\n" + line + "\n")
    key, _, value = line.partition("=")
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, config_path=host_env)
    message = str(err.value)
    assert f"{host_env}:2" in message
    assert repr(value) in message
    assert KNOBS[key.removeprefix("PUNKTFUNK_").lower()].name in message
    assert allowed in message


def test_malformed_line(host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_DISPLAY xvfb\n")
    with pytest.raises(ConfigError, match=r":1: expected KEY=VALUE"):
        load_config(environ={}, config_path=host_env)


def test_bad_env_and_flag_values_name_their_source(host_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"env PUNKTFUNK_MONITOR_LINGER_MS.*'-5'.*0\.\.600000"):
        load_config(environ={"PUNKTFUNK_MONITOR_LINGER_MS": "-5"}, config_path=host_env)
    with pytest.raises(ConfigError, match=r"flag --encoder.*'cuda'.*auto\|nvenc"):
        load_config(flags={"encoder": "cuda"}, environ={}, config_path=host_env)


def test_bitrate_limits_must_be_ordered(host_env: Path) -> None:
    host_env.write_text("PUNKTFUNK_BITRATE_MAX_KBPS=2000\n")
    with pytest.raises(ConfigError, match="bitrate_min_kbps <= bitrate_max_kbps"):
        load_config(environ={"PUNKTFUNK_BITRATE_MIN_KBPS": "5000"}, config_path=host_env)


def test_config_path_selection(tmp_path: Path, host_env: Path) -> None:
    other = tmp_path / "other.env"
    other.write_text("PUNKTFUNK_CODEC=h264\n")
    by_env = load_config(environ={"PUNKTFUNK_CONFIG": str(other)})
    assert by_env.config.codec == "h264" and by_env.config_file == other
    by_flag = load_config(environ={"PUNKTFUNK_CONFIG": str(other)}, config_path=host_env)
    assert by_flag.config.codec == "auto" and by_flag.config_file == host_env
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={}, config_path=tmp_path / "missing.env")


def test_config_is_frozen_and_every_field_is_a_knob(host_env: Path) -> None:
    cfg = load_config(environ={}, config_path=host_env).config
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.display = "xvfb"  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(HostConfig)] == list(KNOBS)
    for knob in KNOBS.values():
        assert knob.help and knob.allowed
        assert knob.env == "PUNKTFUNK_" + knob.name.upper()


def test_unknown_punktfunk_env_is_reported_not_fatal(host_env: Path) -> None:
    loaded = load_config(environ={"PUNKTFUNK_TYPO": "1"}, config_path=host_env)
    assert loaded.ignored_env == ("PUNKTFUNK_TYPO",)


def test_read_host_env_rejects_non_utf8(host_env: Path) -> None:
    host_env.write_bytes(b"PUNKTFUNK_DISPLAY=\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_host_env(host_env)


def test_gamestream_port_map_follows_the_base() -> None:
    ports = HostConfig(gamestream_port=47989).gamestream_ports()
    assert ports == {
        "http": 47989,
        "https": 47984,
        "rtsp": 48010,
        "video": 47998,
        "control": 47999,
        "audio": 48000,
    }
