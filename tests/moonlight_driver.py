"""A real Moonlight client (moonlight-python over moonlight-common-c) driven from the command line.

Run as a subprocess by the end-to-end tests: moonlight-common-c keeps process-global state, so
each stream gets its own process. Prints one JSON object on stdout.

  python tests/moonlight_driver.py --port 47989 --pin 1234 --seconds 5 --mode 1280x720x60
      [--codec h264] [--pair-only] [--launch-only] [--input-after-file PATH --keys TEXT
      --click X,Y] [--cancel-after S] [--until-terminated]

Frame accounting uses the host's frame numbers: `sent` is the span of frame numbers the client
saw (every frame the host sent in that window), `decoded` how many of them it decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import moonlight_python.config
import moonlight_python.decoder
from moonlight_python import MoonlightClient
from moonlight_python.discovery import connect_to_server
from moonlight_python.http_client import NvHTTP
from moonlight_python.stream import StreamingSession

from punktfunk.vdisplay.stamp import decode_stamp

# FFmpeg's own "av1" decoder only drives hardware; decode AV1 in software with dav1d, as
# Moonlight's desktop clients do.
moonlight_python.decoder.CODEC_NAMES["av1"] = "libdav1d"
# "hevc10" offers HEVC Main10 only: moonlight-common-c then asks for HDR (dynamicRangeMode).
moonlight_python.config.CODEC_MAP["hevc10"] = moonlight_python.config.VIDEO_FORMAT_H265_MAIN10
moonlight_python.decoder.CODEC_NAMES["hevc10"] = "hevc"

# What the host tells the client besides media: HDR mode switches and rumble.
CALLBACKS: dict[str, list] = {"hdr_mode": [], "rumble": []}
_make_callbacks = StreamingSession._make_connection_callbacks


def _with_feedback_callbacks(self: StreamingSession):
    listener = _make_callbacks(self)

    @self._ffi.callback("void(bool)")
    def set_hdr_mode(enabled: bool) -> None:
        CALLBACKS["hdr_mode"].append(bool(enabled))

    @self._ffi.callback("void(unsigned short, unsigned short, unsigned short)")
    def rumble(controller: int, low: int, high: int) -> None:
        CALLBACKS["rumble"].append([controller, low, high])

    self._callbacks.extend([set_hdr_mode, rumble])
    listener.setHdrMode = set_hdr_mode
    listener.rumble = rumble
    return listener


StreamingSession._make_connection_callbacks = _with_feedback_callbacks

# "hevc,h264" offers both, as Moonlight's own clients do: moonlight-common-c then picks from the
# host's RTSP DESCRIBE reply, and the decoder follows the format it negotiated (read from the
# library's NegotiatedVideoFormat: a drSetup callback would change how the stream is driven).
moonlight_python.config.CODEC_MAP["hevc,h264"] = (
    moonlight_python.config.VIDEO_FORMAT_H265 | moonlight_python.config.VIDEO_FORMAT_H264
)
_Decoder = moonlight_python.Decoder


def negotiated_video_format() -> int:
    import moonlight_python.stream as stream

    lib = ctypes.CDLL(stream._find_shared_lib())
    return ctypes.c_int.in_dll(lib, "NegotiatedVideoFormat").value


def _negotiated_decoder(codec: str = "h264", output_format: str = "bgr24"):
    if codec == "hevc,h264":  # created after the RTSP handshake: the format is known
        hevc = negotiated_video_format() & moonlight_python.config.VIDEO_FORMAT_H265
        codec = "hevc" if hevc else "h264"
    return _Decoder(codec=codec, output_format=output_format)


moonlight_python.Decoder = _negotiated_decoder

KEY_DOWN, KEY_UP = 0x03, 0x04
BUTTON_PRESS, BUTTON_RELEASE = 0x07, 0x08
VK_SHIFT = 0x10


def _library(client: MoonlightClient) -> ctypes.CDLL:
    """moonlight-common-c's whole input API, through the library the stream already loaded."""
    import moonlight_python.stream as stream

    return ctypes.CDLL(stream._find_shared_lib())


def _type_text(lib: ctypes.CDLL, text: str) -> None:
    for char in text:
        shifted = char.isupper()
        vk = ord(char.upper())
        if shifted:
            lib.LiSendKeyboardEvent(ctypes.c_short(VK_SHIFT | 0x8000), KEY_DOWN, 0)
        mods = 0x01 if shifted else 0
        lib.LiSendKeyboardEvent(ctypes.c_short(vk | 0x8000), KEY_DOWN, mods)
        lib.LiSendKeyboardEvent(ctypes.c_short(vk | 0x8000), KEY_UP, mods)
        if shifted:
            lib.LiSendKeyboardEvent(ctypes.c_short(VK_SHIFT | 0x8000), KEY_UP, 0)
        time.sleep(0.02)


LI_CTYPE_XBOX = 0x01
LI_CCAP_RUMBLE = 0x02


def _send_gamepad(lib: ctypes.CDLL, values: list[int]) -> None:
    """Pad 0 arrives as an Xbox controller with rumble, then reports one state."""
    buttons, lt, rt, lx, ly, rx, ry = values
    lib.LiSendControllerArrivalEvent(
        ctypes.c_uint8(0), ctypes.c_uint16(1), ctypes.c_uint8(LI_CTYPE_XBOX),
        ctypes.c_uint32(0xFFFF), ctypes.c_uint16(LI_CCAP_RUMBLE),
    )  # fmt: skip
    lib.LiSendMultiControllerEvent(
        ctypes.c_short(0), ctypes.c_short(1), ctypes.c_int(buttons),
        ctypes.c_ubyte(lt), ctypes.c_ubyte(rt),
        ctypes.c_short(lx), ctypes.c_short(ly), ctypes.c_short(rx), ctypes.c_short(ry),
    )  # fmt: skip


def _pair_status(http: NvHTTP) -> int:
    """PairStatus as this client sees it: /serverinfo over HTTPS with its certificate, or over
    plain HTTP (which never says paired) when the host refuses the certificate."""
    try:
        xml = http.open_https("serverinfo")
    except Exception:
        xml = http.open_http("serverinfo")
    return int(http.parse_server_info(xml).paired)


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def _dominant_hz(chunks: list[np.ndarray]) -> float | None:
    """The strongest frequency of the received audio (48 kHz), from the last ~2 s of it."""
    if not chunks:
        return None
    samples = np.concatenate(chunks)[-96_000:]
    if len(samples) < 9600:
        return None
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0
    peak = int(np.argmax(spectrum))
    # Parabolic interpolation between bins: the FFT bin alone is only 48000/len wide.
    if 0 < peak < len(spectrum) - 1:
        a, b, c = spectrum[peak - 1 : peak + 2]
        peak += 0.5 * (a - c) / (a - 2 * b + c)
    return round(peak * 48_000 / len(samples), 2)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=47989)
    parser.add_argument("--pin", default="1234")
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--mode", default="1280x720x60")
    parser.add_argument("--codec", default="h264")
    parser.add_argument("--pair-only", action="store_true")
    parser.add_argument("--input-after-file", default="")
    parser.add_argument("--stop-file", default="", help="end the stream early once this exists")
    parser.add_argument("--keys", default="")
    parser.add_argument("--save-frame", default="", help="save the last decoded frame (.npy)")
    parser.add_argument("--click", default="")
    parser.add_argument("--app", default="Desktop", help="the app to launch")
    parser.add_argument(
        "--gamepad",
        default="",
        help="after --input-after-file: plug an Xbox pad and send BUTTONS,LT,RT,LX,LY,RX,RY",
    )
    parser.add_argument("--launch-only", action="store_true", help="no pairing attempt")
    parser.add_argument("--bitrate", type=int, default=10000, help="kbit/s to ask for")
    parser.add_argument(
        "--timeline", action="store_true", help="report [monotonic s, frame number] per frame"
    )
    parser.add_argument("--cancel-after", type=float, default=0.0, help="send /cancel after S s")
    parser.add_argument(
        "--until-terminated", action="store_true", help="keep streaming until the host ends it"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    result: dict[str, object] = {}
    client = MoonlightClient(config_dir=args.config_dir)
    server = connect_to_server(args.host, client._identity, args.port)
    client._server = server
    client._http = NvHTTP(
        args.host,
        client._identity,
        http_port=args.port,
        https_port=server.https_port,
        server_cert_pem=server.server_cert_pem,
    )
    result["pair_status"] = _pair_status(client._http)
    if args.launch_only:
        try:
            client.start_stream(app="Desktop", width=640, height=480, fps=30, ready_timeout=10)
            result["launched"] = True
            client.stop_stream()
        except Exception as exc:
            result["launched"] = False
            result["launch_error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result))
        return 0
    try:
        client.apps(server)
        result["paired_before"] = True
    except Exception:
        try:
            client.pair(server, pin=args.pin)
            result["paired"] = True
        except Exception as exc:
            result["paired"] = False
            result["pair_error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(result))
            return 0
    result["apps"] = [a.name for a in client.apps(server)]
    if args.pair_only:
        print(json.dumps(result))
        return 0

    width, height, fps = (int(v) for v in args.mode.split("x"))
    started = time.monotonic()
    client.start_stream(
        app=args.app,
        width=width,
        height=height,
        fps=fps,
        bitrate_kbps=args.bitrate,
        codec=args.codec,
        ready_timeout=30,
        black_frame_threshold=-1.0,
    )
    result["start_s"] = round(time.monotonic() - started, 3)
    result["video_format"] = negotiated_video_format()
    manager = client._stream_manager
    session = manager._session
    frames = manager.subscribe()
    audio = manager.subscribe_audio() if manager.has_audio else None
    counters: list[int] = []
    numbers: list[int] = []
    timeline: list[tuple[float, int]] = []
    idr_numbers: list[int] = []
    host_latency_01ms: list[int] = []
    pcm: list[np.ndarray] = []
    latencies_ms: list[float] = []
    shape = None
    last_frame = None
    centre = None
    sent_input = False
    cancelled = False
    started = time.monotonic()
    deadline = started + args.seconds
    while time.monotonic() < deadline or args.until_terminated:
        if session._connection_terminated.is_set():
            break
        if args.stop_file and os.path.exists(args.stop_file):
            break
        while audio is not None and (chunk := audio.get(timeout=0.0)) is not None:
            pcm.append(chunk.data[:, 0].copy())
        frame = frames.get(timeout=0.5)
        if frame is not None:
            numbers.append(frame.frame_number)
            if args.timeline:
                timeline.append((round(time.monotonic(), 3), frame.frame_number))
            if frame.frame_type == 1:
                idr_numbers.append(frame.frame_number)
            host_latency_01ms.append(frame.host_processing_latency_us)
            shape = list(frame.data.shape)
            last_frame = frame.data
            mid_y, mid_x = shape[0] // 2, shape[1] // 2
            centre = frame.data[mid_y - 4 : mid_y + 5, mid_x - 4 : mid_x + 5]
            stamp = decode_stamp(frame.data[..., ::-1])  # bgr24 -> rgb
            if stamp is not None:
                counters.append(stamp.counter)
                latencies_ms.append((time.monotonic_ns() - stamp.capture_ns) / 1e6)
        if args.input_after_file and not sent_input and os.path.exists(args.input_after_file):
            lib = _library(client)
            if args.click:
                x, y = (int(v) for v in args.click.split(","))
                lib.LiSendMousePositionEvent(x, y, width, height)
                lib.LiSendMouseButtonEvent(BUTTON_PRESS, 1)
                lib.LiSendMouseButtonEvent(BUTTON_RELEASE, 1)
            _type_text(lib, args.keys)
            if args.gamepad:
                _send_gamepad(lib, [int(v, 0) for v in args.gamepad.split(",")])
            sent_input = True
        if args.cancel_after and not cancelled and time.monotonic() - started >= args.cancel_after:
            client._http.quit_app()
            cancelled = True
            args.until_terminated = True
    terminated = session._connection_terminated.wait(timeout=5 if cancelled else 0)
    result["terminated"] = terminated
    result["termination_error_code"] = session._termination_error_code if terminated else None
    with contextlib.suppress(Exception):
        client.stop_stream()
    if args.save_frame and last_frame is not None:
        np.save(args.save_frame, np.asarray(last_frame)[..., ::-1])  # bgr24 -> RGB
    span = numbers[-1] - numbers[0] + 1 if numbers else 0
    result.update(
        decoded=len(numbers),
        sent=span,
        decoded_fraction=round(len(numbers) / span, 4) if span else 0.0,
        idr_frames=len(idr_numbers),
        idr_numbers=idr_numbers,
        frames=len(counters),
        counters=counters,
        shape=shape,
        centre_bgr=[round(v) for v in centre.reshape(-1, 3).mean(0)]
        if centre is not None
        else None,
        audio_chunks=len(pcm),
        tone_hz=_dominant_hz(pcm),
        sent_input=sent_input,
        hdr_mode=CALLBACKS["hdr_mode"],
        rumble=CALLBACKS["rumble"],
        host_latency_ms=_percentiles([v / 10 for v in host_latency_01ms]),
        latency_ms=sorted(latencies_ms)[len(latencies_ms) // 2] if latencies_ms else None,
        fps=round(len(numbers) / max(1e-3, time.monotonic() - started), 1),
    )
    if args.timeline:
        result["timeline"] = timeline
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
