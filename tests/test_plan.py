"""SessionPlan resolution: every downgrade and every error branch."""

from __future__ import annotations

import logging

import pytest

from punktfunk.capture.base import CaptureBackend, CaptureError
from punktfunk.config import HostConfig
from punktfunk.encode.base import Codec, EncoderBackend, ProbedEncoder
from punktfunk.proto.frame import PixelFormat
from punktfunk.session.plan import (
    ClientRequest,
    MachineCaps,
    PlanError,
    Topology,
    resolve_plan,
)
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode

D = DisplayBackend
SW_H264 = ProbedEncoder(EncoderBackend.SOFTWARE, Codec.H264, 8, 100_000)
SW_HEVC10 = ProbedEncoder(EncoderBackend.SOFTWARE, Codec.HEVC, 10, 100_000)
VAAPI_HEVC8 = ProbedEncoder(EncoderBackend.VAAPI, Codec.HEVC, 8, 80_000)
NVENC_HEVC10 = ProbedEncoder(EncoderBackend.NVENC, Codec.HEVC, 10, 300_000)

ALL_DISPLAYS = frozenset(DisplayBackend)
CAPS = MachineCaps(ALL_DISPLAYS, (SW_H264, SW_HEVC10))


def request(
    codec: Codec = Codec.H264,
    hdr: bool = False,
    mode: DisplayMode | None = None,
    bitrate: int = 20_000,
) -> ClientRequest:
    return ClientRequest(mode or DisplayMode(1920, 1080, 60), codec, hdr, bitrate)


def test_default_plan_logs_itself_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        plan = resolve_plan(HostConfig(), request(), CAPS)
    assert plan.display is D.XORG_DUMMY
    assert plan.capture is CaptureBackend.IDD_PUSH
    assert plan.topology is Topology.DRIVER_PROCESS
    assert (plan.encoder, plan.codec, plan.bit_depth, plan.hdr) == (
        EncoderBackend.SOFTWARE,
        Codec.H264,
        8,
        False,
    )
    assert plan.input_format is PixelFormat.BGRA8 and plan.pipeline_depth == 2
    assert plan.downgrades == ()
    lines = [r.getMessage() for r in caplog.records if "plan.resolved" in r.getMessage()]
    assert len(lines) == 1
    assert "display=xorg-dummy capture=idd-push" in lines[0] and "downgrades=none" in lines[0]


def test_auto_display_order_follows_what_is_installed() -> None:
    only_pattern = MachineCaps(frozenset({D.PATTERN, D.ATTACH}), CAPS.encoders)
    assert resolve_plan(HostConfig(), request(), only_pattern).display is D.PATTERN
    with_xvfb = MachineCaps(frozenset({D.XVFB, D.PATTERN, D.ATTACH}), CAPS.encoders)
    assert resolve_plan(HostConfig(), request(), with_xvfb).display is D.XVFB


def test_attach_is_captured_directly() -> None:
    plan = resolve_plan(HostConfig(display="attach::5"), request(), CAPS)
    assert (plan.display, plan.attach_target, plan.capture, plan.topology) == (
        D.ATTACH,
        ":5",
        CaptureBackend.X11,
        Topology.ATTACHED,
    )


def test_configured_display_missing_is_an_error() -> None:
    caps = MachineCaps(frozenset({D.PATTERN, D.ATTACH}), CAPS.encoders)
    with pytest.raises(PlanError, match=r"display=xvfb is not available.*available: pattern"):
        resolve_plan(HostConfig(display="xvfb"), request(), caps)


@pytest.mark.parametrize(
    ("display", "capture", "expected"),
    [
        ("xvfb", "x11", CaptureBackend.X11),
        ("xvfb", "idd-push", CaptureBackend.IDD_PUSH),
        ("pattern", "auto", CaptureBackend.IDD_PUSH),
    ],
)
def test_capture_choices(display: str, capture: str, expected: CaptureBackend) -> None:
    plan = resolve_plan(HostConfig(display=display, capture=capture), request(), CAPS)
    assert plan.capture is expected


@pytest.mark.parametrize(
    ("display", "capture", "match"),
    [("pattern", "x11", "needs an X server"), ("attach::1", "idd-push", "needs a virtual")],
)
def test_impossible_capture_is_an_error(display: str, capture: str, match: str) -> None:
    with pytest.raises(PlanError, match=match):
        resolve_plan(HostConfig(display=display, capture=capture), request(), CAPS)
    with pytest.raises(CaptureError):
        CaptureBackend.resolve(capture, DisplayBackend(display.split(":")[0]))


@pytest.mark.parametrize(
    "mode",
    [
        DisplayMode(318, 240, 60),
        DisplayMode(8192, 4320, 60),
        DisplayMode(1920, 1080, 500),
        DisplayMode(1921, 1080, 60),
    ],
)
def test_mode_out_of_bounds_is_an_error(mode: DisplayMode) -> None:
    with pytest.raises(PlanError, match="cannot create the client's monitor"):
        resolve_plan(HostConfig(), request(mode=mode), CAPS)


def test_hdr_granted_on_pattern_with_10bit_encoder() -> None:
    plan = resolve_plan(HostConfig(display="pattern"), request(Codec.HEVC, hdr=True), CAPS)
    assert (plan.hdr, plan.bit_depth, plan.input_format) == (True, 10, PixelFormat.FP16_RGBA)
    assert plan.downgrades == ()


@pytest.mark.parametrize(
    ("config", "codec", "caps", "why"),
    [
        (HostConfig(display="pattern", hdr="off"), Codec.HEVC, CAPS, "hdr=off"),
        (HostConfig(display="pattern"), Codec.H264, CAPS, "h264 carries no HDR10"),
        (HostConfig(display="xvfb"), Codec.HEVC, CAPS, "display xvfb renders 8-bit only"),
        (
            HostConfig(display="pattern"),
            Codec.HEVC,
            MachineCaps(ALL_DISPLAYS, (VAAPI_HEVC8,)),
            "no working encoder does 10-bit hevc",
        ),
    ],
)
def test_hdr_downgrades_to_sdr(
    config: HostConfig, codec: Codec, caps: MachineCaps, why: str
) -> None:
    plan = resolve_plan(config, request(codec, hdr=True), caps)
    assert (plan.hdr, plan.bit_depth, plan.input_format) == (False, 8, PixelFormat.BGRA8)
    assert any(why in d for d in plan.downgrades), plan.downgrades


def test_hdr_moves_to_a_backend_that_can_do_10bit() -> None:
    caps = MachineCaps(ALL_DISPLAYS, (SW_HEVC10, VAAPI_HEVC8))
    sdr = resolve_plan(HostConfig(display="pattern"), request(Codec.HEVC), caps)
    assert sdr.encoder is EncoderBackend.VAAPI
    hdr = resolve_plan(HostConfig(display="pattern"), request(Codec.HEVC, hdr=True), caps)
    assert hdr.encoder is EncoderBackend.SOFTWARE and hdr.hdr
    assert any("vaapi cannot encode 10-bit hevc" in d for d in hdr.downgrades)


def test_encoder_preference_and_explicit_choice() -> None:
    caps = MachineCaps(ALL_DISPLAYS, (SW_HEVC10, VAAPI_HEVC8, NVENC_HEVC10))
    assert resolve_plan(HostConfig(), request(Codec.HEVC), caps).encoder is EncoderBackend.NVENC
    chosen = resolve_plan(HostConfig(encoder="software"), request(Codec.HEVC), caps)
    assert chosen.encoder is EncoderBackend.SOFTWARE


def test_missing_encoder_is_an_error_listing_what_works() -> None:
    with pytest.raises(PlanError, match=r"no working av1 encoder.*software/h264, software/hevc"):
        resolve_plan(HostConfig(), request(Codec.AV1), CAPS)
    with pytest.raises(PlanError, match="encoder=nvenc"):
        resolve_plan(HostConfig(encoder="nvenc"), request(Codec.H264), CAPS)


def test_codec_restriction_is_an_error() -> None:
    with pytest.raises(PlanError, match="restricted to codec=hevc"):
        resolve_plan(HostConfig(codec="hevc"), request(Codec.H264), CAPS)


@pytest.mark.parametrize(
    ("asked", "config", "granted"),
    [
        (20_000, HostConfig(), 20_000),
        (500_000, HostConfig(), 100_000),  # the encoder's proven ceiling
        (90_000, HostConfig(bitrate_max_kbps=50_000), 50_000),
        (200, HostConfig(), 1000),
    ],
)
def test_bitrate_is_clamped(asked: int, config: HostConfig, granted: int) -> None:
    plan = resolve_plan(config, request(bitrate=asked), CAPS)
    assert plan.bitrate_kbps == granted
    assert bool(plan.downgrades) == (asked != granted)


def test_pipeline_depth_comes_from_config() -> None:
    assert resolve_plan(HostConfig(pipeline_depth=1), request(), CAPS).pipeline_depth == 1
