"""The Capturer seam and the one capture-backend resolver.

The capturer is told the output format it must deliver (`OutputFormat`); it never asks the
encoder. `CaptureBackend.resolve()` is the only place that decides how a display is captured.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

from ..proto.frame import HdrMeta, PixelFormat
from ..vdisplay.base import DisplayBackend, VirtualOutput


class CaptureError(Exception):
    """A capture backend cannot serve this display; the message says why."""


class CaptureBackend(StrEnum):
    IDD_PUSH = "idd-push"
    X11 = "x11"
    APP = "app"  # an embedded program's frames (punktfunk.Host), set only by embed/, never resolved

    @classmethod
    def resolve(cls, choice: str, display: DisplayBackend) -> CaptureBackend:
        """Pick the capture path for `display` given the configured `choice` (auto|idd-push|x11).

        auto: the driver ring wherever the driver publishes (it falls back to x11 at open time
        if the ring stays silent), direct X11 for an attached display.
        """
        if choice == "auto":
            return cls.IDD_PUSH if display.has_driver else cls.X11
        backend = cls(choice)
        if backend is cls.IDD_PUSH and not display.has_driver:
            raise CaptureError(
                f"capture=idd-push needs a virtual display driver, but display={display} has "
                "none (an attached X display is captured with capture=x11 or auto)"
            )
        if backend is cls.X11 and not display.is_x11:
            raise CaptureError(
                f"capture=x11 needs an X server, but display={display} has none "
                "(use capture=idd-push or auto)"
            )
        return backend


@dataclass(frozen=True)
class OutputFormat:
    """What the session wants delivered: GPU-resident or system memory, HDR or SDR."""

    gpu: bool
    hdr: bool


@dataclass(frozen=True)
class CapturedFrame:
    """One frame: `pixels` is (height, width, channels) over a stride-aware buffer."""

    pixels: np.ndarray
    pixel_format: PixelFormat
    seq: int
    capture_ns: int
    hdr: bool

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@runtime_checkable
class Capturer(Protocol):
    @property
    def output_format(self) -> OutputFormat:
        """The format this capturer was opened for (the session decides it, not the encoder)."""

    def next_frame(self, timeout: float) -> CapturedFrame | None:
        """Block up to `timeout` s for a frame newer than the last one returned."""

    def try_latest(self) -> CapturedFrame | None:
        """The newest frame if one arrived since the last call; never blocks."""

    def set_active(self, active: bool) -> None:
        """Pause (False) or resume capture without tearing the backend down."""

    def hdr_meta(self) -> HdrMeta | None: ...
    @property
    def pipeline_depth(self) -> int: ...
    def close(self) -> None: ...


class CaptureOpener(Protocol):
    """Opens a capturer on a monitor, delivering the format the session asked for."""

    def __call__(self, output: VirtualOutput, fmt: OutputFormat) -> Capturer: ...
