"""The driver's monitors: lowest-free ids, a generation per ADD, create/attach/destroy.

Ids are the lowest free number, reused after REMOVE (a monotonic id would leak an OS output
slot per reconnect, the wedge the Windows driver hit). The generation is unique per ADD, so a
REMOVE or ATTACH_RING carrying an older generation cannot touch the newer monitor that reused
the id. `Monitors`' operations are called on the server's single ops thread (serialized);
the table itself is safe to read from any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field

from ...log import event
from ...ownfiles import unlink_own
from ...proto.control import Status
from ...proto.frame import parse_shm_name
from ..base import DisplayMode
from ..ring import SHM_DIR, FrameRing, RingError
from .backends import Backend, BackendError, MonitorSource
from .edid import EdidRequest, build_edid, serial_for
from .publisher import Publisher

_log = logging.getLogger("punktfunk.vdisplay.driver")


class OpError(Exception):
    """A refused request: the status and reason go back in the error reply."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Monitor:
    monitor_id: int
    generation: int
    mode: DisplayMode
    hdr: bool
    client_id: str
    owner: int  # the control connection that added it (the watchdog's unit)
    source: MonitorSource
    publisher: Publisher
    edid: bytes = field(repr=False)

    @property
    def display_name(self) -> str:
        return self.source.display_name


class MonitorTable:
    """Thread-safe bookkeeping of live (and reserved) ids."""

    def __init__(self, max_monitors: int) -> None:
        self.max_monitors = max_monitors
        self._monitors: dict[int, Monitor] = {}
        self._reserved: set[int] = set()
        self._generations = itertools.count(1)
        self._lock = threading.Lock()

    def reserve(self) -> tuple[int, int]:
        """The lowest free id (held until `add` or `release`) and a fresh generation."""
        with self._lock:
            used = self._monitors.keys() | self._reserved
            if len(used) >= self.max_monitors:
                raise OpError(
                    Status.LIMIT_REACHED,
                    f"all {self.max_monitors} monitors are in use (max_monitors)",
                )
            monitor_id = next(i for i in itertools.count() if i not in used)
            self._reserved.add(monitor_id)
            return monitor_id, next(self._generations)

    def release(self, monitor_id: int) -> None:
        with self._lock:
            self._reserved.discard(monitor_id)

    def add(self, monitor: Monitor) -> None:
        with self._lock:
            self._reserved.discard(monitor.monitor_id)
            self._monitors[monitor.monitor_id] = monitor

    def pop(self, monitor_id: int) -> Monitor | None:
        with self._lock:
            return self._monitors.pop(monitor_id, None)

    def get(self, monitor_id: int) -> Monitor | None:
        with self._lock:
            return self._monitors.get(monitor_id)

    def ids(self, owner: int | None = None) -> list[int]:
        with self._lock:
            return sorted(m.monitor_id for m in self._monitors.values() if owner in (None, m.owner))

    def __len__(self) -> int:
        with self._lock:
            return len(self._monitors)


class Monitors:
    """Creates, attaches and destroys monitors through one backend."""

    def __init__(self, backend: Backend, max_monitors: int, *, publish: bool = True) -> None:
        self.backend = backend
        self.table = MonitorTable(max_monitors)
        self.publish = publish

    def add(self, owner: int, mode: DisplayMode, hdr_asked: bool, client_id: str) -> Monitor:
        monitor_id, generation = self.table.reserve()
        hdr = hdr_asked and self.backend.renders_hdr
        try:
            source = self.backend.create(monitor_id, mode, hdr)
        except BackendError as exc:
            self.table.release(monitor_id)
            raise OpError(Status.INTERNAL, f"{self.backend.name}: {exc}") from None
        serial = serial_for(client_id or f"monitor-{monitor_id}")
        edid = build_edid(EdidRequest(mode.width, mode.height, mode.refresh_hz, hdr, serial))
        publisher = Publisher(monitor_id, source, enabled=self.publish)
        monitor = Monitor(
            monitor_id, generation, mode, hdr, client_id, owner, source, publisher, edid
        )
        self.table.add(monitor)
        event(
            _log,
            "vdisplay.monitor_added",
            id=monitor_id,
            generation=generation,
            mode=mode,
            hdr=hdr,
            hdr_asked=hdr_asked,
            display=monitor.display_name,
            backend=self.backend.name.value,
            client=client_id or "-",
            serial=f"{serial:08x}",
            conn=owner,
        )
        return monitor

    def find(self, monitor_id: int, generation: int) -> Monitor:
        monitor = self.table.get(monitor_id)
        if monitor is None:
            raise OpError(Status.NOT_FOUND, f"no monitor {monitor_id}")
        if monitor.generation != generation:
            raise OpError(
                Status.NOT_FOUND,
                f"monitor {monitor_id} is generation {monitor.generation}, not {generation} "
                "(a stale lease cannot touch a newer monitor)",
            )
        return monitor

    def remove(self, monitor_id: int, generation: int) -> None:
        self.destroy(self.find(monitor_id, generation), "remove")

    def attach(self, monitor_id: int, generation: int, name: str, notify: int | None) -> None:
        """Publish `monitor_id`'s frames into ring `name` ("" detaches); takes `notify` over."""
        monitor = self.find(monitor_id, generation)
        ring = None
        if name:
            try:
                owner, _, _ = parse_shm_name(name)
            except ValueError as exc:
                raise OpError(Status.BAD_REQUEST, str(exc)) from None
            if owner != monitor.monitor_id:
                raise OpError(Status.BAD_REQUEST, f"ring {name} is not monitor {owner}'s")
            try:
                ring = FrameRing.open(name)
            except RingError as exc:
                raise OpError(Status.BAD_REQUEST, str(exc)) from None
        monitor.publisher.attach(ring, notify)

    def destroy(self, monitor: Monitor, reason: str, unlink_ring: bool = False) -> None:
        rings = monitor.publisher.ring_names()
        monitor.publisher.stop()
        monitor.source.close()
        if unlink_ring:
            # Its host is gone and will never unlink the rings it created.
            for ring in rings:
                unlink_own(SHM_DIR / ring)
        self.table.pop(monitor.monitor_id)
        event(
            _log,
            "vdisplay.monitor_removed",
            id=monitor.monitor_id,
            generation=monitor.generation,
            display=monitor.display_name,
            reason=reason,
            published=monitor.publisher.published,
        )

    def destroy_all(self, reason: str, owner: int | None = None) -> None:
        """Every monitor (of `owner`); the rings too unless a live host asked (CLEAR_ALL)."""
        for monitor_id in self.table.ids(owner):
            monitor = self.table.get(monitor_id)
            if monitor is not None:
                self.destroy(monitor, reason, unlink_ring=reason != "clear_all")
