"""Host side of the virtual displays: one `VirtualDisplayManager`, one `MonitorLease` per session.

The manager owns the driver connection (and pings it, feeding the driver's host-gone watchdog)
and a refcounted state per monitor key, Idle -> Active -> Lingering -> Idle: the last lease's
release starts the linger timer (monitor_linger_ms), and an acquire of the same key within it
reuses the monitor, so a reconnecting client finds "its" monitor. The key is the client identity
plus the mode, or a unique session token when the client has no identity. Every monitor the
manager creates gets a new epoch from its generation counter; a lease remembers its epoch, so
closing a stale lease (its monitor was replaced) changes nothing. ADD, REMOVE and teardown run
under one lock.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from ..config import HostConfig
from ..log import event
from . import xauth
from .adapter import adapter_env
from .base import DisplayBackend, DisplayMode, LeaseBase, MonitorRequest
from .client import IDLE_EXIT_S, DriverConnection, DriverError, connect_driver, reap
from .driver.edid import edid_has_hdr

_log = logging.getLogger("punktfunk.vdisplay")


class MonitorState(StrEnum):
    IDLE = "idle"
    ACTIVE = "active"
    LINGERING = "lingering"


@dataclass(frozen=True)
class Output:
    """A live monitor as the driver reported it (satisfies `VirtualOutput`)."""

    monitor_id: int
    generation: int
    display_name: str
    mode: DisplayMode
    hdr: bool
    edid: bytes = field(repr=False)
    backend: DisplayBackend = DisplayBackend.PATTERN


@dataclass
class _Entry:
    key: tuple[object, ...]
    epoch: int
    output: Output
    refs: int = 0
    state: MonitorState = MonitorState.ACTIVE
    timer: threading.Timer | None = None


class MonitorLease(LeaseBase):
    """A session's hold on a monitor; `close()` (idempotent) or the with-block releases it."""

    def __init__(self, manager: VirtualDisplayManager, entry: _Entry) -> None:
        self._manager = manager
        self.key = entry.key
        self.epoch = entry.epoch
        self._output = entry.output
        self._closed = False

    @property
    def output(self) -> Output:
        return self._output

    @property
    def current(self) -> bool:
        """Whether this lease still names the manager's live monitor (not a replaced one)."""
        return not self._closed and self._manager._is_current(self)

    def environment(self) -> dict[str, str]:
        """Environment for programs a session launches on this monitor."""
        env = adapter_env(self._manager.render_adapter)
        if self._output.backend.apps_on_x11:
            env["DISPLAY"] = self._output.display_name
            env.update(xauth.environment(self._output.display_name))
        elif self._output.backend is DisplayBackend.WLROOTS:
            from ..wayland.sway import environment

            env.update(environment(self._manager.config.state_dir))
        return env

    def place_app(self, pid: int) -> None:
        """Have the windows of launched process `pid` open on this monitor (Wayland: sway puts
        new windows on the focused output otherwise; X11 monitors are separate servers)."""
        if self._output.backend is DisplayBackend.WLROOTS:
            from ..wayland.sway import place_app

            place_app(self._manager.config.state_dir, pid, self._output.monitor_id)

    def attach_ring(self, ring_name: str, notify_fd: int | None) -> None:
        """Have the driver publish into `ring_name` ("" detaches); DriverError if it can't."""
        self._manager._attach(self, ring_name, notify_fd)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._manager._release(self)


class VirtualDisplayManager:
    """The one owner of the driver connection and of every monitor this host holds."""

    def __init__(self, config: HostConfig, backend: DisplayBackend) -> None:
        if not backend.has_driver:
            raise ValueError(f"display={backend} has no driver (use AttachedDisplay)")
        self.config = config
        self._backend = backend
        xauth.use_state_dir(config.state_dir)  # where the driver keeps its displays' cookies
        self.render_adapter = config.render_adapter
        self._lock = threading.RLock()
        self._entries: dict[tuple[object, ...], _Entry] = {}
        self._epochs = itertools.count(1)
        self._sessions = itertools.count(1)
        self._conn: DriverConnection | None = None
        self._spawned: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._pinger: threading.Thread | None = None

    @property
    def backend(self) -> DisplayBackend:
        return self._backend

    # --- driver connection -----------------------------------------------------------------

    def _connection(self) -> DriverConnection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._forget_all("driver connection lost")
        conn, _, spawned = connect_driver(self.config, self._backend)
        self._conn, self._spawned = conn, spawned
        if self.render_adapter != "auto":
            conn.set_render_adapter(self.render_adapter)
        if self._pinger is None or not self._pinger.is_alive():
            self._pinger = threading.Thread(
                target=self._ping_loop, name="pf-vdisplay-ping", daemon=True
            )
            self._pinger.start()
        return conn

    def _ping_loop(self) -> None:
        interval = min(1.0, self.config.watchdog_timeout_ms / 4000)
        while not self._stop.wait(interval):
            conn = self._conn
            if conn is None or conn.closed:
                continue
            try:
                conn.ping()
            except DriverError as exc:
                event(_log, "vdisplay.driver_lost", logging.ERROR, reason=str(exc))
                with self._lock:
                    self._forget_all(str(exc))

    def _forget_all(self, reason: str) -> None:
        """The driver (and so every monitor) is gone: drop the bookkeeping, keep the leases
        harmless (their epochs no longer match anything)."""
        for entry in self._entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
        if self._entries:
            event(
                _log,
                "vdisplay.monitors_lost",
                logging.WARNING,
                count=len(self._entries),
                reason=reason,
            )
        self._entries.clear()

    # --- leases ----------------------------------------------------------------------------

    def acquire(self, request: MonitorRequest) -> MonitorLease:
        """A lease on a monitor at `request`'s mode: the key's lingering/active one, or new."""
        reason = request.mode.error()
        if reason is not None:
            raise DriverError(f"cannot create a monitor: {reason}")
        if request.client_id:
            key: tuple[object, ...] = ("client", request.client_id, request.mode, request.hdr)
        else:
            key = ("session", next(self._sessions))
        with self._lock:
            conn = self._connection()
            entry = self._entries.get(key)
            if entry is not None:
                if entry.timer is not None:
                    entry.timer.cancel()
                    entry.timer = None
                event(
                    _log,
                    "vdisplay.monitor_reused",
                    id=entry.output.monitor_id,
                    epoch=entry.epoch,
                    was=entry.state.value,
                    refs=entry.refs + 1,
                )
            else:
                reply = conn.add(request)
                edid = bytes(reply.edid[: reply.edid_len])
                output = Output(
                    monitor_id=int(reply.monitor_id),
                    generation=int(reply.generation),
                    display_name=reply.display_name.decode(errors="replace"),
                    mode=request.mode,
                    hdr=edid_has_hdr(edid),
                    edid=edid,
                    backend=self._backend,
                )
                entry = _Entry(key, next(self._epochs), output)
                self._entries[key] = entry
                event(
                    _log,
                    "vdisplay.lease_monitor",
                    id=output.monitor_id,
                    epoch=entry.epoch,
                    display=output.display_name,
                    mode=output.mode,
                    hdr=output.hdr,
                    client=request.client_id or "-",
                )
            entry.refs += 1
            entry.state = MonitorState.ACTIVE
            return MonitorLease(self, entry)

    def _current_entry(self, lease: MonitorLease) -> _Entry | None:
        entry = self._entries.get(lease.key)
        return entry if entry is not None and entry.epoch == lease.epoch else None

    def _is_current(self, lease: MonitorLease) -> bool:
        with self._lock:
            return self._current_entry(lease) is not None

    def _release(self, lease: MonitorLease) -> None:
        with self._lock:
            entry = self._current_entry(lease)
            if entry is None:
                event(
                    _log,
                    "vdisplay.stale_lease",
                    id=lease.output.monitor_id,
                    epoch=lease.epoch,
                    action="ignored: its monitor is already gone or replaced",
                )
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            linger = self.config.monitor_linger_ms / 1000
            if entry.key[0] == "session" or linger <= 0:
                self._remove(entry, "released")
                return
            entry.state = MonitorState.LINGERING
            entry.timer = threading.Timer(linger, self._linger_expired, (entry.key, entry.epoch))
            entry.timer.daemon = True
            entry.timer.start()
            event(
                _log,
                "vdisplay.monitor_lingering",
                id=entry.output.monitor_id,
                epoch=entry.epoch,
                linger_ms=self.config.monitor_linger_ms,
            )

    def _linger_expired(self, key: tuple[object, ...], epoch: int) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.epoch == epoch and entry.state is MonitorState.LINGERING:
                self._remove(entry, "linger expired")

    def _remove(self, entry: _Entry, reason: str) -> None:
        self._entries.pop(entry.key, None)
        entry.state = MonitorState.IDLE
        if entry.timer is not None:
            entry.timer.cancel()
        out = entry.output
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.remove(out.monitor_id, out.generation)
        except DriverError as exc:
            event(
                _log, "vdisplay.remove_failed", logging.WARNING, id=out.monitor_id, reason=str(exc)
            )
        event(
            _log, "vdisplay.monitor_released", id=out.monitor_id, epoch=entry.epoch, reason=reason
        )

    def _attach(self, lease: MonitorLease, ring_name: str, notify_fd: int | None) -> None:
        with self._lock:
            if self._current_entry(lease) is None:
                raise DriverError(f"monitor {lease.output.monitor_id} of this lease is gone")
            conn = self._connection()
        conn.attach_ring(lease.output.monitor_id, lease.output.generation, ring_name, notify_fd)

    # --- the rest of VirtualDisplay ----------------------------------------------------------

    def monitors(self) -> list[tuple[Output, MonitorState, int]]:
        """(output, state, refcount) of every monitor this host holds."""
        with self._lock:
            return [(e.output, e.state, e.refs) for e in self._entries.values()]

    def set_render_adapter(self, adapter: str) -> None:
        with self._lock:
            self._connection().set_render_adapter(adapter)
            self.render_adapter = adapter

    def close(self) -> None:
        """Remove every monitor this host holds and disconnect (a driver this host started
        exits on its own once idle; it is reaped here)."""
        self._stop.set()
        with self._lock:
            for entry in list(self._entries.values()):
                self._remove(entry, "host closing")
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            spawned, self._spawned = self._spawned, None
        if self._pinger is not None:
            self._pinger.join()
        reap(spawned, IDLE_EXIT_S + 5)
