"""Announce the host as `_nvstream._tcp` so Moonlight clients on the LAN find it by themselves."""

from __future__ import annotations

import ipaddress
import logging
import socket

from zeroconf import IPVersion, ServiceInfo, Zeroconf

from ..log import event

_log = logging.getLogger("punktfunk.gamestream.mdns")

SERVICE = "_nvstream._tcp.local."


class MdnsAnnouncer:
    def __init__(self, bind: str, http_port: int, unique_id: str) -> None:
        self._zc: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._bind = bind
        self._port = http_port
        self._unique_id = unique_id

    def start(self) -> None:
        if ipaddress.IPv4Address(self._bind).is_loopback:
            event(
                _log,
                "mdns.skipped",
                reason=f"bound to {self._bind}: nothing on the LAN can reach it",
            )
            return
        name = socket.gethostname().split(".")[0] or "punktfunk"
        addresses = [] if self._bind == "0.0.0.0" else [socket.inet_aton(self._bind)]
        self._info = ServiceInfo(
            SERVICE,
            f"{name}.{SERVICE}",
            port=self._port,
            addresses=addresses or None,
            properties={"uniqueid": self._unique_id},
            server=f"{name}.local.",
        )
        try:
            self._zc = Zeroconf(ip_version=IPVersion.V4Only)
            self._zc.register_service(self._info, allow_name_change=True)
        except OSError as exc:
            event(_log, "mdns.unavailable", logging.WARNING, reason=exc)
            self._zc = None
            return
        event(_log, "mdns.announced", service=self._info.name, port=self._port)

    def close(self) -> None:
        if self._zc is not None and self._info is not None:
            self._zc.unregister_service(self._info)
            self._zc.close()
            self._zc = None
