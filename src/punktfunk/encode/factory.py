"""Choosing the encoder backend from what the probe proved, and opening the session's encoder."""

from __future__ import annotations

import logging
import threading

from ..log import event
from ..proto.frame import HdrMeta
from .backends import spec_for
from .base import PREFERENCE, Codec, EncoderBackend
from .caps import ProbeReport
from .pyav import EncoderParams, PyAVEncoder

_log = logging.getLogger("punktfunk.encode.factory")


class EncoderUnavailableError(RuntimeError):
    """The configured backend cannot encode the codec here (permanent: fix the config)."""


_logged: set[tuple[str, Codec, EncoderBackend]] = set()
_logged_lock = threading.Lock()


def select_backend(choice: str, codec: Codec, report: ProbeReport) -> EncoderBackend:
    """The backend for `codec`: `choice` itself, or for "auto" the first in PREFERENCE the probe
    proved working. The decision and why each better backend was skipped are logged once."""
    working = {e.backend for e in report.encoders if e.codec == codec}
    if choice != "auto":
        backend = EncoderBackend(choice)
        if backend not in working:
            why = report.failure(backend, codec)
            others = ", ".join(f"{e.backend}/{e.codec}" for e in report.encoders) or "none"
            raise EncoderUnavailableError(
                f"encoder={backend} cannot encode {codec} on this machine ({why}); "
                f"working here: {others} (use encoder=auto or one of those)"
            )
        skipped: list[str] = []
    else:
        candidates = [b for b in PREFERENCE if b in working]
        if not candidates:
            tried = "; ".join(f"{b}: {report.failure(b, codec)}" for b in PREFERENCE)
            raise EncoderUnavailableError(f"no backend can encode {codec} here; tried: {tried}")
        backend = candidates[0]
        better = PREFERENCE[: PREFERENCE.index(backend)]
        skipped = [f"{b}: {report.failure(b, codec)}" for b in better]
    with _logged_lock:
        first = (choice, codec, backend) not in _logged
        _logged.add((choice, codec, backend))
    if first:
        event(
            _log,
            "encode.backend_chosen",
            choice=choice,
            codec=codec,
            backend=backend,
            encoder=spec_for(backend, codec).encoder,
            skipped="; ".join(skipped) or "none",
        )
    return backend


def open_encoder(
    backend: EncoderBackend,
    codec: Codec,
    params: EncoderParams,
    hdr_meta: HdrMeta | None = None,
) -> PyAVEncoder:
    """The session's encoder (it opens on the first frame, whose size and format it takes)."""
    return PyAVEncoder(spec_for(backend, codec), params, hdr_meta)
