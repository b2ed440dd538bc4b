"""Offer what the box sustains: the decision (pure, injected fps) and the real throughput probe."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from punktfunk.config import HostConfig
from punktfunk.encode.backends import SPECS
from punktfunk.encode.base import Codec, EncoderBackend, ProbedEncoder
from punktfunk.encode.throughput import (
    MAX_ENTRIES,
    ThroughputCache,
    cache_key,
    machine_fingerprint,
    measure,
    sustains,
)
from punktfunk.native.host.negotiate import choose_codec
from punktfunk.native.wire.hello import ClientHello
from punktfunk.native.wire.registry import Codec as WireCodec
from punktfunk.session.plan import ClientRequest, MachineCaps, resolve_plan
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode

SW = EncoderBackend.SOFTWARE
ENCODERS = tuple(ProbedEncoder(SW, c, 8, 100_000) for c in Codec)
FULL_HD_60 = DisplayMode(1920, 1080, 60)
# This box, roughly (2 cores, software encoders): libx265 cannot hold 1080p60, libx264 can.
MEASURED = {Codec.H264: 160.0, Codec.HEVC: 34.0, Codec.AV1: 50.0}


def caps(fps: dict[Codec, float] | None = None) -> MachineCaps:
    table = MEASURED if fps is None else fps
    return MachineCaps(
        frozenset(DisplayBackend), ENCODERS, lambda backend, codec, mode: table[codec]
    )


def ask(codec: Codec, *alternatives: Codec, hdr: bool = False) -> ClientRequest:
    return ClientRequest(FULL_HD_60, codec, hdr, 20_000, alternatives)


def test_sustains_needs_the_rate_plus_headroom() -> None:
    assert sustains(66.0, 60) and not sustains(65.0, 60) and not sustains(40.0, 60)
    assert sustains(34.0, 30)


def test_unsustainable_hevc_falls_back_to_h264_with_the_reason_in_plan_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        plan = resolve_plan(HostConfig(), ask(Codec.HEVC, Codec.H264), caps())
    assert plan.codec is Codec.H264 and plan.warnings == ()
    assert plan.downgrades[0] == "hevc encodes ~34 fps at 1920x1080, under 60 Hz: h264 (~160 fps)"
    line = next(r.getMessage() for r in caplog.records if "plan.resolved" in r.getMessage())
    assert "codec=h264" in line and "hevc encodes ~34 fps" in line
    assert "h264 1920x1080@60 (hevc encodes ~34 fps" in plan.summary()


def test_alternatives_are_tried_in_the_clients_order() -> None:
    plan = resolve_plan(HostConfig(), ask(Codec.HEVC, Codec.AV1, Codec.H264), caps())
    assert plan.codec is Codec.H264  # AV1 (50 fps) cannot hold 60 Hz either
    fast_av1 = caps({**MEASURED, Codec.AV1: 90.0})
    assert resolve_plan(HostConfig(), ask(Codec.HEVC, Codec.AV1, Codec.H264), fast_av1).codec is (
        Codec.AV1
    )


def test_a_client_that_insists_gets_its_codec_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="punktfunk"):
        plan = resolve_plan(HostConfig(), ask(Codec.HEVC), caps())
    assert plan.codec is Codec.HEVC and plan.downgrades == ()
    assert plan.warnings == (
        "hevc encodes ~34 fps at 1920x1080, under 60 Hz; the client accepts no other codec: "
        "kept, frames will be dropped",
    )
    warned = [r for r in caplog.records if "plan.codec_unsustainable" in r.getMessage()]
    assert warned and warned[0].levelno == logging.WARNING


def test_no_change_when_sustainable_when_off_or_when_nothing_is_better() -> None:
    assert resolve_plan(HostConfig(), ask(Codec.H264, Codec.HEVC), caps()).downgrades == ()
    slow_everything = caps({Codec.H264: 30.0, Codec.HEVC: 20.0, Codec.AV1: 10.0})
    plan = resolve_plan(HostConfig(), ask(Codec.HEVC, Codec.H264), slow_everything)
    assert plan.codec is Codec.HEVC and "no other codec the client decodes" in plan.warnings[0]
    unchecked = MachineCaps(frozenset(DisplayBackend), ENCODERS)  # codec_fit=off
    assert resolve_plan(HostConfig(), ask(Codec.HEVC, Codec.H264), unchecked).codec is Codec.HEVC
    # A host restricted to HEVC cannot fall back to H.264.
    pinned = resolve_plan(HostConfig(codec="hevc"), ask(Codec.HEVC, Codec.H264), caps())
    assert pinned.codec is Codec.HEVC and pinned.warnings


def test_a_lower_rate_or_a_smaller_mode_keeps_hevc() -> None:
    request = ClientRequest(DisplayMode(1920, 1080, 30), Codec.HEVC, False, 20_000, (Codec.H264,))
    assert resolve_plan(HostConfig(), request, caps()).codec is Codec.HEVC


def test_hdr_is_given_up_with_the_fallback_and_says_so() -> None:
    plan = resolve_plan(
        HostConfig(display="pattern"), ask(Codec.HEVC, Codec.H264, hdr=True), caps()
    )
    assert plan.codec is Codec.H264 and not plan.hdr
    assert "h264 carries no HDR10: 8-bit SDR" in plan.downgrades


def test_native_choose_codec_names_the_fallbacks_h264_first() -> None:
    have = frozenset(Codec)
    both = ClientHello(
        video_codecs=int(WireCodec.HEVC | WireCodec.H264 | WireCodec.AV1),
        preferred_codec=int(WireCodec.HEVC),
    )
    assert choose_codec(both, have) == (Codec.HEVC, None, (Codec.H264, Codec.AV1))
    only = ClientHello(video_codecs=int(WireCodec.HEVC), preferred_codec=int(WireCodec.HEVC))
    assert choose_codec(only, have) == (Codec.HEVC, None, ())


# --- the real probe: structure and caching, never speeds --------------------------------------


def test_real_measurement_is_cached_in_memory_and_in_the_machine_file(tmp_path: Path) -> None:
    calls: list[str] = []

    def counting(spec, width, height, device):  # the real measurement, counted
        calls.append(cache_key(spec.encoder, width, height))
        return measure(spec, width, height, device)

    path = tmp_path / "cache" / "encoder-throughput.json"
    spec = SPECS[(SW, Codec.H264)]
    cache = ThroughputCache(path, counting)
    fps = cache.fps(spec, 320, 240)
    assert fps > 0 and cache.fps(spec, 320, 240) == fps and calls == ["libx264 320x240"]
    stored = json.loads(path.read_text())
    assert stored == {"machine": machine_fingerprint(), "fps": {"libx264 320x240": fps}}
    # Another host process on this machine reads it instead of measuring again.
    again = ThroughputCache(path, counting)
    assert again.fps(spec, 320, 240) == fps and len(calls) == 1
    # Another size is measured (and added); another machine's file is not trusted.
    assert again.fps(spec, 352, 288) > 0 and len(calls) == 2
    path.write_text(json.dumps({"machine": "elsewhere", "fps": {"libx264 320x240": 1.0}}))
    assert ThroughputCache(path, counting).fps(spec, 320, 240) != 1.0 and len(calls) == 3


def test_an_unreadable_cache_file_is_measured_over(tmp_path: Path) -> None:
    path = tmp_path / "encoder-throughput.json"
    path.write_text("{not json")
    cache = ThroughputCache(path, lambda spec, w, h, device: 123.0)
    assert cache.fps(SPECS[(SW, Codec.H264)], 320, 240) == 123.0
    assert json.loads(path.read_text())["fps"] == {"libx264 320x240": 123.0}


def test_the_file_keeps_a_bounded_number_of_sizes(tmp_path: Path) -> None:
    path = tmp_path / "encoder-throughput.json"
    cache = ThroughputCache(path, lambda spec, w, h, device: float(w))
    spec = SPECS[(SW, Codec.H264)]
    for width in range(16, 16 + 2 * (MAX_ENTRIES + 5), 2):
        cache.fps(spec, width, 16)
    stored = json.loads(path.read_text())["fps"]
    assert len(stored) == MAX_ENTRIES and "libx264 16x16" not in stored
