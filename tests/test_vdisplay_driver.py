"""The driver process's control plane, spoken to over its real socket."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import threading

import pytest

from punktfunk.proto import control
from punktfunk.proto.control import (
    AddRequest,
    DriverMismatchError,
    GetInfoReply,
    Op,
    Status,
)
from punktfunk.proto.frame import shm_name
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode, MonitorRequest
from punktfunk.vdisplay.client import DriverError, connect_driver
from punktfunk.vdisplay.driver import backends
from punktfunk.vdisplay.ext import OP_ATTACH_RING, AttachRingRequest
from test_vdisplay_support import PUNKTFUNK, clean_env, host_config, make_driver, state_dir

__all__ = ["make_driver", "state_dir"]


def _req(width: int = 640, height: int = 480, hz: int = 60, client: str = "") -> MonitorRequest:
    return MonitorRequest(DisplayMode(width, height, hz), False, client)


def _raw(sock: socket.socket, data: bytes) -> control.MsgHeader:
    sock.send(data)
    reply = sock.recv(8192)
    return control.decode_header(reply)


def _raw_reason(sock: socket.socket, data: bytes) -> tuple[int, str]:
    sock.send(data)
    reply = sock.recv(8192)
    header = control.decode_header(reply)
    body = reply[control.HEADER_SIZE :]
    reason = control.ErrorReply.from_buffer_copy(body.ljust(240, b"\0")).reason.decode()
    return header.status, reason


def test_socket_is_private_and_get_info_is_the_handshake(make_driver) -> None:
    driver = make_driver()
    assert stat.S_IMODE(os.stat(driver.socket).st_mode) == 0o600
    with driver.connect() as conn:
        info = conn.get_info()
    control.check_driver_info(info)
    assert info.backend == b"pattern" and info.max_monitors == 8
    assert (info.min_width, info.max_width, info.max_refresh_hz) == (320, 7680, 480)


def test_modes_outside_the_bounds_are_refused_with_a_reason(make_driver) -> None:
    driver = make_driver()
    with driver.connect() as conn:
        for width, height, hz, words in (
            (318, 480, 60, "outside 320x180"),
            (7682, 4320, 60, "outside"),
            (1920, 1080, 500, "refresh 500 Hz"),
            (1920, 1080, 23, "refresh 23 Hz"),
            (1921, 1080, 60, "odd"),
        ):
            body = AddRequest(width, height, hz, 0, b"x")
            with pytest.raises(DriverError, match=words) as err:
                conn.request(Op.ADD, bytes(body))
            assert err.value.status is Status.OUT_OF_BOUNDS


def test_ids_are_the_lowest_free_and_reused_after_remove(make_driver) -> None:
    driver = make_driver(max_monitors=4)
    with driver.connect() as conn:
        added = [conn.add(_req()) for _ in range(3)]
        assert [a.monitor_id for a in added] == [0, 1, 2]
        assert len({a.generation for a in added}) == 3
        assert [a.display_name for a in added] == [b"pattern-0", b"pattern-1", b"pattern-2"]
        conn.remove(1, added[1].generation)
        again = conn.add(_req())
        assert again.monitor_id == 1 and again.generation > added[2].generation
        conn.add(_req())
        with pytest.raises(DriverError, match="all 4 monitors") as err:
            conn.add(_req())
        assert err.value.status is Status.LIMIT_REACHED
        conn.clear_all()
        assert conn.add(_req()).monitor_id == 0


def test_a_stale_generation_cannot_remove_the_newer_monitor(make_driver) -> None:
    driver = make_driver()
    with driver.connect() as conn:
        old = conn.add(_req())
        conn.remove(old.monitor_id, old.generation)
        new = conn.add(_req())
        assert new.monitor_id == old.monitor_id
        with pytest.raises(DriverError, match="stale lease") as err:
            conn.remove(old.monitor_id, old.generation)
        assert err.value.status is Status.NOT_FOUND
        conn.remove(new.monitor_id, new.generation)
        with pytest.raises(DriverError, match="no monitor 0"):
            conn.remove(new.monitor_id, new.generation)


def test_concurrent_adds_are_serialized_onto_the_lowest_ids(make_driver) -> None:
    driver = make_driver()
    ids: list[int] = []

    def add() -> None:
        with driver.connect() as conn:
            ids.append(conn.add(_req()).monitor_id)
            conn.ping()

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(ids) == [0, 1, 2, 3, 4, 5]


def test_malformed_messages_get_error_replies_and_the_driver_keeps_serving(make_driver) -> None:
    driver = make_driver()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(30)
    sock.connect(str(driver.socket))
    ping = control.encode(Op.PING, request_id=5)
    add = control.encode(Op.ADD, AddRequest(640, 480, 60, 0, b"a"), request_id=6)
    cases = [
        (b"\x01\x02\x03", "truncated header"),
        (b"\xff" * 32, "bad magic"),
        (add[:-10], "header says"),  # truncated body
        (ping + b"\0" * 8, "header says"),  # trailing bytes the header does not announce
        (control.encode(Op.REMOVE, AddRequest(), request_id=7), "expected 8"),
        (control.encode(Op.PING, request_id=8, reply=True), "reply was sent"),
        (ping[:4] + b"\xff\x0a" + ping[6:], "unknown op"),
        (ping[:24] + (9999).to_bytes(4, "little") + ping[28:], "exceeds"),
        (b"\0" * 5000, "longer than"),
    ]
    for data, words in cases:
        status, reason = _raw_reason(sock, data)
        assert status in (Status.BAD_REQUEST, Status.UNKNOWN_OP), (data[:8], reason)
        assert words in reason, (words, reason)
    assert _raw(sock, ping).status == Status.OK
    with driver.connect() as other:
        other.ping()
    sock.close()
    assert "vdisplay.bad_message" in driver.log()


def test_unknown_render_adapter_is_a_clear_error(make_driver) -> None:
    driver = make_driver()
    with driver.connect() as conn:
        conn.set_render_adapter("auto")
        for adapter in ("/dev/dri/renderD250", "nvidia0"):
            with pytest.raises(DriverError) as err:
                conn.set_render_adapter(adapter)
            assert err.value.status is Status.UNKNOWN_ADAPTER
            assert adapter in str(err.value)
    assert "vdisplay.render_adapter adapter=auto" in driver.log()


def test_attach_ring_checks_the_monitor_and_the_ring(make_driver) -> None:
    driver = make_driver()
    with driver.connect() as conn:
        mon = conn.add(_req())
        with pytest.raises(DriverError, match="not monitor 5's"):
            conn.attach_ring(mon.monitor_id, mon.generation, shm_name(5, 1), None)
        with pytest.raises(DriverError, match="not a punktfunk ring name"):
            conn.attach_ring(mon.monitor_id, mon.generation, f"pfvd-{mon.monitor_id}-77", None)
        with pytest.raises(DriverError, match="cannot open ring"):
            conn.attach_ring(mon.monitor_id, mon.generation, shm_name(mon.monitor_id, 77), None)
        with pytest.raises(DriverError, match="stale lease"):
            conn.attach_ring(mon.monitor_id, mon.generation + 1, "", None)
        r, w = os.pipe()
        try:
            conn.attach_ring(mon.monitor_id, mon.generation, "", r)  # detach, fd passed along
        finally:
            os.close(r)
            os.close(w)
        with pytest.raises(DriverError, match="ATTACH_RING body"):
            conn.request(OP_ATTACH_RING, bytes(AttachRingRequest())[:10])


def test_a_second_driver_on_the_same_state_dir_refuses(make_driver) -> None:
    driver = make_driver()
    run = subprocess.run(
        [str(PUNKTFUNK), "vdisplay", "--display", "pattern", "--state-dir", str(driver.state)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(driver.state),
    )
    assert run.returncode == 1
    assert f"(pid {driver.pid}) already serves" in run.stderr
    with driver.connect() as conn:
        conn.ping()


def test_sigterm_removes_every_monitor_and_exits_cleanly(make_driver) -> None:
    driver = make_driver()
    with driver.connect() as conn:
        conn.add(_req(client="a"))
        conn.add(_req(client="b"))
    assert driver.stop() == 0
    log = driver.log()
    assert log.count("vdisplay.monitor_removed") == 2 and "reason=driver_stopped" in log
    assert "vdisplay.driver_stopped reason=stopped" in log
    assert not driver.socket.exists()


def _fake_driver(path, info: GetInfoReply) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        header = control.decode_header(conn.recv(4096))
        conn.send(control.encode(Op.GET_INFO, info, request_id=header.request_id, reply=True))
        conn.recv(4096)
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_host_refuses_a_driver_of_another_version(state_dir) -> None:
    state = state_dir
    info = control.local_info(8, "pattern", "9.9.9")
    info.protocol_version = 99
    _fake_driver(state / "vdisplay.sock", info)
    with pytest.raises(DriverMismatchError, match="protocol 99") as err:
        connect_driver(host_config(state, "pattern"), DisplayBackend.PATTERN)
    assert "punktfunk vdisplay" in str(err.value) and "9.9.9" in str(err.value)


def test_the_host_refuses_a_driver_with_another_backend(state_dir) -> None:
    state = state_dir
    _fake_driver(state / "vdisplay.sock", control.local_info(8, "xvfb", "0.1.0"))
    with pytest.raises(DriverMismatchError, match="runs display=xvfb"):
        connect_driver(host_config(state, "pattern"), DisplayBackend.PATTERN)


def test_auto_picks_by_what_is_installed_and_says_why(monkeypatch, caplog) -> None:
    installed = {DisplayBackend.PATTERN, DisplayBackend.ATTACH, DisplayBackend.XVFB}
    monkeypatch.setattr(backends, "available_backends", lambda: frozenset(installed))
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        assert backends.resolve_backend("auto") is DisplayBackend.XVFB
    assert "vdisplay.backend_auto backend=xvfb" in caplog.text
    assert "not_installed=xorg-dummy" in caplog.text
    installed.discard(DisplayBackend.XVFB)
    assert backends.resolve_backend("auto") is DisplayBackend.PATTERN
    with pytest.raises(backends.BackendError, match="not installed"):
        backends.resolve_backend("xvfb")
    with pytest.raises(backends.BackendError, match="needs no driver"):
        backends.resolve_backend("attach")
