"""Open the capturer a session's plan asked for, with the open-time fallback.

idd-push first (the driver's ring); if it publishes nothing within ~4 s, the lease it handed
back is captured directly over X11 instead, logged as a fallback: a session never sits on a
black screen waiting for a driver that will not publish. A display with no X server (the
pattern) has nothing to fall back to, and says so.
"""

from __future__ import annotations

import logging

from ..log import event
from ..vdisplay.base import VirtualLease
from ..vdisplay.manager import MonitorLease
from .base import CaptureBackend, CaptureError, Capturer, OutputFormat
from .idd_push import FIRST_FRAME_TIMEOUT_S, IddPushCapturer, NoFirstFrame

_log = logging.getLogger("punktfunk.capture")
APP_FIRST_FRAME_S = 10.0


def open_capture(
    lease: VirtualLease,
    fmt: OutputFormat,
    backend: CaptureBackend,
    *,
    pipeline_depth: int = 2,
    first_frame_timeout: float = FIRST_FRAME_TIMEOUT_S,
) -> Capturer:
    """A capturer for `lease`'s monitor delivering `fmt` (system memory only for now)."""
    if fmt.gpu:
        raise CaptureError(
            "GPU-resident capture is not available on Linux yet; open with OutputFormat(gpu=False)"
        )
    output = lease.output
    node = getattr(lease, "pipewire_node", None)  # attach:portal: what the portal granted
    if node is not None:
        from .pipewire import PipeWireCapturer

        return PipeWireCapturer(
            lease.pipewire_fd,  # type: ignore[attr-defined]
            node,
            fmt,
            pipeline_depth=pipeline_depth,
        )
    socket = getattr(lease, "wayland_socket", None)  # attach:wayland: a running compositor
    if socket is not None:
        from .wayland import WaylandCapturer

        return WaylandCapturer(
            socket,
            output.display_name,
            fmt,
            pipeline_depth=pipeline_depth,
            refresh_hz=max(1, output.mode.refresh_hz),
        )
    if backend is CaptureBackend.APP:
        # An embedded program's frames (`punktfunk.Host`): its ring, nothing to fall back to,
        # and a program may take a moment to render its first frame at a new mode.
        return IddPushCapturer(
            lease, fmt, pipeline_depth=pipeline_depth, first_frame_timeout=APP_FIRST_FRAME_S
        )
    if backend is CaptureBackend.IDD_PUSH:
        # A media worker's lease proxy attaches through the host: duck-typed on attach_ring.
        if not isinstance(lease, MonitorLease) and not hasattr(lease, "attach_ring"):
            raise CaptureError(
                f"capture=idd-push needs a driver monitor, not {output.display_name}"
            )
        try:
            return IddPushCapturer(
                lease, fmt, pipeline_depth=pipeline_depth, first_frame_timeout=first_frame_timeout
            )
        except NoFirstFrame as exc:
            if not lease.output.backend.is_x11:
                raise CaptureError(
                    f"{exc}; display {output.display_name} has no X server to capture directly"
                ) from None
            event(
                _log,
                "capture.fallback",
                logging.WARNING,
                display=output.display_name,
                frm="idd-push",
                to="x11",
                reason=str(exc),
            )
            lease = exc.lease
    from .x11 import X11Capturer  # here: the pattern display needs no libX11

    return X11Capturer(
        lease.output.display_name,
        fmt,
        pipeline_depth=pipeline_depth,
        max_rate_hz=max(1, lease.output.mode.refresh_hz),
    )
