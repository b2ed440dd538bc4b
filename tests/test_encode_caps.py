"""Probe, bitrate ceiling, backend selection, and the hardware option sets."""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
from pathlib import Path

import av
import pytest
from av.codec.codec import UnknownCodecError

from punktfunk.config import HostConfig
from punktfunk.encode import caps
from punktfunk.encode.backends import SPECS, StreamSettings, spec_for
from punktfunk.encode.base import PREFERENCE, Codec, EncoderBackend
from punktfunk.encode.convert import OutFormat
from punktfunk.encode.factory import EncoderUnavailableError, open_encoder, select_backend
from punktfunk.encode.pyav import EncoderParams, PyAVEncoder
from punktfunk.proto.frame import HDR10_DEFAULT
from punktfunk.session.plan import ClientRequest, MachineCaps, resolve_plan
from punktfunk.vdisplay.base import DisplayBackend, DisplayMode

MODE = DisplayMode(1280, 720, 60)
HARDWARE = tuple(b for b in PREFERENCE if b is not EncoderBackend.SOFTWARE)
B = EncoderBackend


def compiled(encoder: str) -> bool:
    try:
        av.Codec(encoder, "w")
    except UnknownCodecError:
        return False
    return True


@pytest.fixture(scope="module")
def report() -> caps.ProbeReport:
    return caps.probe_machine(MODE)


def test_software_encoders_work_with_their_real_ceilings(report: caps.ProbeReport) -> None:
    found = {(e.backend, e.codec): e for e in report.encoders}
    assert {k for k in found if k[0] is B.SOFTWARE} == {(B.SOFTWARE, c) for c in Codec}
    assert found[(B.SOFTWARE, Codec.H264)].max_bit_depth == 8  # H.264 carries no HDR10 here
    assert found[(B.SOFTWARE, Codec.HEVC)].max_bit_depth == 10
    assert found[(B.SOFTWARE, Codec.AV1)].max_bit_depth == 10
    # x264/x265 take anything up to the config's maximum; SVT-AV1 refuses above 100 Mbit/s,
    # which the binary search finds to within 0.1 %.
    assert found[(B.SOFTWARE, Codec.H264)].max_bitrate_kbps == caps.MAX_KBPS
    assert 99_900 <= found[(B.SOFTWARE, Codec.AV1)].max_bitrate_kbps <= 100_000


def test_ceiling_search_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    fresh = dataclasses.replace(spec_for(B.SOFTWARE, Codec.AV1), open_hint="uncached")
    with caplog.at_level(logging.INFO, logger="punktfunk.encode"):
        result = caps.probe(B.SOFTWARE, Codec.AV1, MODE, 8, spec=fresh)
    line = next(r.getMessage() for r in caplog.records if "encode.probe.ceiling" in r.getMessage())
    steps = int(line.rsplit("steps=", 1)[1])
    assert 2 < steps <= caps.SEARCH_STEPS
    assert f"max_bitrate_kbps={result.max_bitrate_kbps}" in line


def test_hardware_backends_are_skipped_with_reasons(report: caps.ProbeReport) -> None:
    """No GPU encoder on this machine: each one fails with what FFmpeg said."""
    if os.path.exists("/dev/nvidia0") or list(Path("/dev/dri").glob("renderD*")):
        pytest.skip("this machine has a GPU device node; the no-GPU expectations do not apply")
    for backend in HARDWARE:
        for codec in Codec:
            reason = report.failure(backend, codec)
            spec = spec_for(backend, codec)
            assert reason is not None and reason.startswith(f"{spec.encoder}: ")
            if compiled(spec.encoder):
                assert f"cannot open ({spec.open_hint}:" in reason
            else:
                assert "not built into this FFmpeg" in reason
    assert "Cannot load libcuda.so.1" in (report.failure(B.NVENC, Codec.H264) or "")


def test_probe_results_are_cached_for_the_host_lifetime(report: caps.ProbeReport) -> None:
    again = caps.probe(B.SOFTWARE, Codec.HEVC, MODE, 10)
    assert again is next(
        r for r in report.results if (r.backend, r.codec, r.depth) == (B.SOFTWARE, Codec.HEVC, 10)
    )


def test_auto_picks_software_and_logs_the_skips_once(
    report: caps.ProbeReport, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from punktfunk.encode import factory

    # "Once" is per process: an embedded host earlier in this test process may have logged it.
    monkeypatch.setattr(factory, "_logged", set())
    with caplog.at_level(logging.INFO, logger="punktfunk.encode"):
        assert select_backend("auto", Codec.AV1, report) is B.SOFTWARE
        assert select_backend("auto", Codec.AV1, report) is B.SOFTWARE
    lines = [r.getMessage() for r in caplog.records if "encode.backend_chosen" in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    assert "choice=auto codec=av1 backend=software encoder=libsvtav1" in line
    for backend in HARDWARE:
        assert f"{backend}: {spec_for(backend, Codec.AV1).encoder}: " in line


def test_forcing_an_absent_backend_is_a_clear_error(report: caps.ProbeReport) -> None:
    with pytest.raises(EncoderUnavailableError) as err:
        select_backend("nvenc", Codec.HEVC, report)
    message = str(err.value)
    assert message.startswith("encoder=nvenc cannot encode hevc on this machine (hevc_nvenc: ")
    assert "working here: software/h264, software/hevc, software/av1" in message


def test_forcing_a_working_backend_selects_it(report: caps.ProbeReport) -> None:
    assert select_backend("software", Codec.H264, report) is B.SOFTWARE
    enc = open_encoder(B.SOFTWARE, Codec.H264, EncoderParams(bitrate_kbps=2000, fps=60))
    assert isinstance(enc, PyAVEncoder) and enc.spec.encoder == "libx264"


def test_no_working_encoder_is_one_error_listing_every_attempt() -> None:
    hardware_only = caps.probe_machine(MODE, backends=HARDWARE)
    with pytest.raises(caps.NoWorkingEncoderError) as err:
        hardware_only.require_working()
    message = str(err.value)
    assert message.startswith("no working video encoder on this machine; tried: ")
    assert message.count("-bit): ") == len(HARDWARE) * len(Codec)
    for spec in SPECS.values():
        if spec.backend is not B.SOFTWARE:
            assert f"{spec.backend}/{spec.codec} ({spec.encoder}, 8-bit): " in message


def test_ten_bit_failure_downgrades_and_the_plan_says_so(
    report: caps.ProbeReport, caplog: pytest.LogCaptureFixture
) -> None:
    """An HEVC encoder whose 10-bit open fails (libx265 refuses P010 input) probes as 8-bit,
    and an HDR request on it becomes an 8-bit SDR plan with the reason recorded."""
    spec = dataclasses.replace(spec_for(B.SOFTWARE, Codec.HEVC), hdr_format=OutFormat.P010)
    with caplog.at_level(logging.INFO, logger="punktfunk.encode"):
        sdr = caps.probe(B.SOFTWARE, Codec.HEVC, MODE, 8, spec=spec)
        ten = caps.probe(B.SOFTWARE, Codec.HEVC, MODE, 10, spec=spec)
    assert sdr.ok and not ten.ok and "cannot open" in ten.reason
    only8 = caps.ProbeReport((sdr, ten))
    assert [e.max_bit_depth for e in only8.encoders] == [8]
    request = ClientRequest(MODE, Codec.HEVC, hdr=True, bitrate_kbps=20_000)
    displays = frozenset(DisplayBackend)
    plan = resolve_plan(
        HostConfig(display="pattern"), request, MachineCaps(displays, only8.encoders)
    )
    assert (plan.hdr, plan.bit_depth) == (False, 8)
    assert "no working encoder does 10-bit hevc: 8-bit SDR" in plan.downgrades
    ok = resolve_plan(
        HostConfig(display="pattern"), request, MachineCaps(displays, report.encoders)
    )
    assert (ok.hdr, ok.bit_depth, ok.encoder) == (True, 10, B.SOFTWARE)


def test_plan_clamps_to_the_probed_ceiling(report: caps.ProbeReport) -> None:
    request = ClientRequest(MODE, Codec.AV1, hdr=False, bitrate_kbps=140_000)
    plan = resolve_plan(
        HostConfig(), request, MachineCaps(frozenset(DisplayBackend), report.encoders)
    )
    assert plan.bitrate_kbps < 100_001 and any("clamped" in d for d in plan.downgrades)


# --- hardware option sets (checked against FFmpeg, never encoded here) -----------------------


def test_nvenc_low_latency_options() -> None:
    s = StreamSettings(1920, 1080, 60, 20_000, False, HDR10_DEFAULT)
    conf = spec_for(B.NVENC, Codec.HEVC).configure(s)
    assert conf.options == {
        "preset": "p1",
        "tune": "ull",
        "rc": "cbr",
        "zerolatency": "1",
        "delay": "0",
        "rc-lookahead": "0",
        "no-scenecut": "1",
        "forced-idr": "1",
        "multipass": "disabled",
        "b_ref_mode": "disabled",
        "profile": "main",
        "maxrate": "20000000",
        "bufsize": str(20_000_000 // 60),
    }
    assert conf.gop_size == 2**31 - 1
    hdr10 = spec_for(B.NVENC, Codec.HEVC).configure(dataclasses.replace(s, hdr=True))
    assert hdr10.options["profile"] == "main10"


def test_vaapi_qsv_amf_options() -> None:
    s = StreamSettings(1920, 1080, 60, 20_000, False, HDR10_DEFAULT)
    assert spec_for(B.VAAPI, Codec.H264).configure(s).options["rc_mode"] == "CBR"
    assert spec_for(B.VAAPI, Codec.H264).hw_device == "vaapi"
    qsv = spec_for(B.QSV, Codec.H264).configure(s).options
    assert (qsv["low_delay_brc"], qsv["forced_idr"], qsv["async_depth"]) == ("1", "1", "1")
    amf = spec_for(B.AMF, Codec.HEVC).configure(s).options
    assert (amf["usage"], amf["rc"], amf["header_insertion_mode"]) == (
        "ultralowlatency",
        "cbr",
        "idr",
    )


def _libav(name: str) -> ctypes.CDLL:
    libs = Path(av.__file__).parent.parent / "av.libs"
    return ctypes.CDLL(str(next(libs.glob(f"{name}-*.so*"))))


@pytest.mark.parametrize("hdr10", [False, True], ids=["sdr", "hdr10"])
@pytest.mark.parametrize("key", list(SPECS), ids=[f"{b}-{c}" for b, c in SPECS])
def test_every_option_is_one_the_encoder_accepts(
    key: tuple[EncoderBackend, Codec], hdr10: bool
) -> None:
    """av_opt_set on a fresh context of the real encoder: names and values both parse."""
    spec = SPECS[key]
    if not compiled(spec.encoder):
        pytest.skip(f"{spec.encoder} is not built into PyAV's FFmpeg; its options stay unchecked")
    avcodec, avutil = _libav("libavcodec"), _libav("libavutil")
    avcodec.avcodec_find_encoder_by_name.restype = ctypes.c_void_p
    avcodec.avcodec_alloc_context3.restype = ctypes.c_void_p
    avcodec.avcodec_alloc_context3.argtypes = [ctypes.c_void_p]
    avutil.av_opt_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    ctx = ctypes.c_void_p(
        avcodec.avcodec_alloc_context3(avcodec.avcodec_find_encoder_by_name(spec.encoder.encode()))
    )
    settings = StreamSettings(1920, 1080, 60, 20_000, hdr10, HDR10_DEFAULT)
    search_children = 1
    refused = [
        (name, value)
        for name, value in spec.configure(settings).options.items()
        if avutil.av_opt_set(ctx, name.encode(), value.encode(), search_children) != 0
    ]
    avcodec.avcodec_free_context(ctypes.byref(ctx))
    assert refused == []
