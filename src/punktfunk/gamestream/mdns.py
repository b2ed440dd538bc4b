"""The `_nvstream._tcp` record, so Moonlight clients on the LAN find the host by themselves.

Published by the one responder in punktfunk/mdns.py next to the native advert.
"""

from __future__ import annotations

from ..mdns import Builder, record

SERVICE = "_nvstream._tcp.local."


def gamestream_record(hostname: str, http_port: int) -> Builder:
    """Moonlight resolves the A record, then asks /serverinfo: the record needs no TXT
    (gamestream/mdns.rs in the Rust host publishes none either)."""
    return lambda ip: record(SERVICE, hostname, ip, http_port, {})
