"""A real Moonlight client (moonlight-python over moonlight-common-c) driven from the command line.

Run as a subprocess by the end-to-end tests: moonlight-common-c keeps process-global state, so
each stream gets its own process. Prints one JSON object on stdout.

  python tests/moonlight_driver.py --port 47989 --pin 1234 --seconds 5 --mode 1280x720x60
      [--codec h264] [--pair-only] [--input-after-file PATH --keys TEXT --click X,Y]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from moonlight_python import MoonlightClient
from moonlight_python.discovery import connect_to_server
from moonlight_python.http_client import NvHTTP

from punktfunk.vdisplay.stamp import decode_stamp

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
    parser.add_argument("--keys", default="")
    parser.add_argument("--click", default="")
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
        app="Desktop",
        width=width,
        height=height,
        fps=fps,
        bitrate_kbps=10000,
        codec=args.codec,
        ready_timeout=30,
        black_frame_threshold=-1.0,
    )
    result["start_s"] = round(time.monotonic() - started, 3)
    manager = client._stream_manager
    frames = manager.subscribe()
    audio = manager.subscribe_audio() if manager.has_audio else None
    counters: list[int] = []
    decoded = 0
    latencies_ms: list[float] = []
    shape = None
    sent_input = False
    audio_chunks = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        while audio is not None and audio.get(timeout=0.0) is not None:
            audio_chunks += 1
        frame = frames.get(timeout=0.5)
        if frame is not None:
            decoded += 1
            shape = list(frame.data.shape)
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
            sent_input = True
    client.stop_stream()
    result.update(
        decoded=decoded,
        frames=len(counters),
        counters=counters,
        shape=shape,
        audio_chunks=audio_chunks,
        sent_input=sent_input,
        latency_ms=sorted(latencies_ms)[len(latencies_ms) // 2] if latencies_ms else None,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
