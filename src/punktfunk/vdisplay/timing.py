"""Video timings for a mode: VESA CVT reduced blanking v2 (pure).

The same `Timing` becomes the X modeline the driver sets and the preferred timing in the EDID,
so the two always agree. Two deliberate deviations from CVT-RB2, both so that every mode inside
the ABI's bounds has a timing an EDID can carry: the pixel clock is rounded down to 10 kHz
(the EDID detailed-timing unit; the refresh is then at most 0.01 % low), and vertical blanking
beyond a 63-line front porch (the widest a detailed timing can say) goes to the back porch, a
mode whose clock would fall under 10 MHz gets a wider horizontal blank (EDID parsers treat a
slower detailed timing as invalid data), and one whose clock would exceed what any EDID timing
can carry (about 16.8 GHz, e.g. 7680x4320@480) keeps only the minimum vertical blank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

H_BLANK = 80
H_FRONT = 8
H_SYNC = 32
V_SYNC = 8
V_BACK_MIN = 6
V_FRONT_MIN = 1
V_FRONT_MAX = 63
MIN_VBLANK_US = 460.0
CLOCK_STEP_HZ = 10_000
MIN_CLOCK_HZ = 10_000_000  # below this EDID parsers take a detailed timing for garbage
MAX_CLOCK_HZ = 16_777_216_000  # the largest clock an EDID can carry (DisplayID Type VII)


@dataclass(frozen=True)
class Timing:
    """A modeline: active size, sync positions and totals, pixel clock in Hz."""

    width: int
    height: int
    pixel_clock_hz: int
    h_sync_start: int
    h_sync_end: int
    h_total: int
    v_sync_start: int
    v_sync_end: int
    v_total: int
    h_sync_positive: bool = True  # the CVT reduced-blanking polarities: +hsync -vsync
    v_sync_positive: bool = False

    @property
    def refresh_hz(self) -> float:
        return self.pixel_clock_hz / (self.h_total * self.v_total)


def cvt_rb2(width: int, height: int, refresh_hz: float) -> Timing:
    """CVT-RB2 timing for `width`x`height` at `refresh_hz` (progressive)."""
    if width <= 0 or height <= 0 or refresh_hz <= 0:
        raise ValueError(f"no timing for {width}x{height}@{refresh_hz}")
    h_period_est_us = (1_000_000.0 / refresh_hz - MIN_VBLANK_US) / height
    if h_period_est_us <= 0:
        raise ValueError(f"{refresh_hz} Hz leaves no time for {height} lines")
    min_vbi = V_FRONT_MIN + V_SYNC + V_BACK_MIN
    vbi_lines = max(math.floor(MIN_VBLANK_US / h_period_est_us) + 1, min_vbi)
    if refresh_hz * (height + vbi_lines) * (width + H_BLANK) > MAX_CLOCK_HZ:
        vbi_lines = min_vbi
    v_front = min(vbi_lines - V_SYNC - V_BACK_MIN, V_FRONT_MAX)
    v_total = height + vbi_lines
    # Small slow modes widen the horizontal blank so the clock reaches MIN_CLOCK_HZ.
    h_total = max(width + H_BLANK, math.ceil(MIN_CLOCK_HZ / (refresh_hz * v_total)))
    clock = math.floor(refresh_hz * v_total * h_total / CLOCK_STEP_HZ) * CLOCK_STEP_HZ
    return Timing(
        width=width,
        height=height,
        pixel_clock_hz=clock,
        h_sync_start=width + H_FRONT,
        h_sync_end=width + H_FRONT + H_SYNC,
        h_total=h_total,
        v_sync_start=height + v_front,
        v_sync_end=height + v_front + V_SYNC,
        v_total=v_total,
    )


def mode_name(width: int, height: int, refresh_hz: int) -> str:
    """The RandR mode name the driver gives a client's mode."""
    return f"{width}x{height}_{refresh_hz}"
