"""The host<->driver ABI: pinned layouts, token packing and the control-message codec."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys

import pytest

import punktfunk.proto as proto
from punktfunk.proto import control, frame, gamepad
from punktfunk.proto._layout import LE, AbiDriftError, layout, pin
from punktfunk.proto.frame import FrameToken


def test_acceptance_one_liner() -> None:
    code = (
        "import ctypes, punktfunk.proto as p; "
        "print(ctypes.sizeof(p.XusbShm), ctypes.sizeof(p.PadShm), p.PadShm.device_type.offset, "
        "p.FrameToken.unpack(p.FrameToken(2**24-1, 2**32-1, 255).pack()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "64 256 140 FrameToken(generation=16777215, seq=4294967295, slot=255)"
    )


def test_gamepad_layouts() -> None:
    assert ctypes.sizeof(gamepad.XusbShm) == 64
    assert ctypes.sizeof(gamepad.PadShm) == 256
    pad = layout(gamepad.PadShm)
    assert (pad["input"], pad["out_seq"], pad["output"], pad["device_type"]) == (8, 72, 76, 140)
    xusb = layout(gamepad.XusbShm)
    assert (xusb["buttons"], xusb["thumb_ry"], xusb["rumble_seq"], xusb["pad_index"]) == (
        8,
        18,
        24,
        40,
    )


def test_pad_bytes_are_little_endian_at_fixed_offsets() -> None:
    shm = gamepad.PadShm(magic=gamepad.PAD_MAGIC, device_type=gamepad.DeviceType.DUALSHOCK4)
    shm.input[0] = 0x01
    shm.pad_index = 0x01020304
    raw = bytes(shm)
    assert raw[0:4] == b"SDFP"
    assert raw[8] == 0x01
    assert raw[140] == 1
    assert raw[152:156] == bytes([4, 3, 2, 1])
    xusb = gamepad.XusbShm(magic=gamepad.XUSB_MAGIC, thumb_lx=-2, buttons=0x1000)
    raw = bytes(xusb)
    assert raw[0:4] == b"PFXU" and raw[8:10] == b"\x00\x10" and raw[12:14] == b"\xfe\xff"


def test_frame_layouts() -> None:
    assert ctypes.sizeof(frame.SharedHeader) == frame.HEADER_SIZE == 128
    assert ctypes.sizeof(frame.SlotHeader) == frame.SLOT_HEADER_SIZE == 64
    hdr = layout(frame.SharedHeader)
    assert hdr["latest"] % 8 == 0 and hdr["latest"] == 48  # one aligned 64-bit store
    assert layout(frame.HdrMetadata)["max_luminance"] == 16


@pytest.mark.parametrize(
    "token",
    [
        FrameToken(0, 0, 0),
        FrameToken(0, 0, 255),
        FrameToken(0, 1, 0),
        FrameToken(0, 2**32 - 1, 0),
        FrameToken(1, 0, 0),
        FrameToken(2**24 - 1, 0, 0),
        FrameToken(2**24 - 1, 2**32 - 1, 255),
        FrameToken(0x123456, 0x89ABCDEF, 0x42),
    ],
)
def test_token_round_trip_at_bit_boundaries(token: FrameToken) -> None:
    packed = token.pack()
    assert 0 <= packed < 2**64
    assert packed == token.generation << 40 | token.seq << 8 | token.slot
    assert FrameToken.unpack(packed) == token


def test_token_fields_do_not_bleed() -> None:
    assert FrameToken(0, 1, 0).pack() == 1 << 8
    assert FrameToken(1, 0, 0).pack() == 1 << 40
    assert FrameToken.unpack(0x0000_0001_0000_00FF) == FrameToken(0, 1 << 24, 255)
    assert FrameToken.unpack(0x0000_0100_0000_00FF) == FrameToken(1, 0, 255)


@pytest.mark.parametrize(
    "args", [(2**24, 0, 0), (0, 2**32, 0), (0, 0, 256), (-1, 0, 0), (0, -1, 0), (0, 0, -1)]
)
def test_token_overflow_is_an_error(args: tuple[int, int, int]) -> None:
    with pytest.raises(OverflowError):
        FrameToken(*args)


def test_token_unpack_rejects_non_u64() -> None:
    with pytest.raises(OverflowError):
        FrameToken.unpack(2**64)


def test_token_next_wraps_seq_keeps_generation() -> None:
    assert FrameToken(5, 2**32 - 1, 1).next(2) == FrameToken(5, 0, 2)


def test_shm_names() -> None:
    name = frame.shm_name(3, 17)
    assert re.fullmatch(rf"pfvd-3-17-{os.getpid()}-[0-9a-f]{{16}}", name)
    assert name != frame.shm_name(3, 17)  # unguessable: a fresh token every time
    assert frame.parse_shm_name("/" + name) == (3, 17, os.getpid())
    with pytest.raises(ValueError, match="not a punktfunk ring name"):
        frame.parse_shm_name("pfvd-3-17")  # the old, guessable form
    with pytest.raises(ValueError, match="not a punktfunk ring name"):
        frame.parse_shm_name("pfvd-x-1")


def test_ring_geometry() -> None:
    size = frame.slot_size_for(1920, 1080, frame.PixelFormat.BGRA8)
    assert size % 64 == 0 and size >= 64 + 1920 * 1080 * 4
    assert frame.slot_size_for(8, 8, frame.PixelFormat.FP16_RGBA) == 64 + 8 * 8 * 8
    assert frame.ring_size(3, size) == 128 + 3 * size
    assert frame.slot_offset(2, size) == 128 + 2 * size
    with pytest.raises(ValueError):
        frame.ring_size(0, size)


def test_hdr_meta_struct_round_trip() -> None:
    meta = frame.HDR10_DEFAULT
    raw = bytes(meta.to_struct())
    assert len(raw) == 32
    assert raw[16:20] == (10_000_000).to_bytes(4, "little")
    assert frame.HdrMeta.from_struct(frame.HdrMetadata.from_buffer_copy(raw)) == meta


def test_ops_are_contiguous() -> None:
    values = sorted(op.value for op in control.Op)
    assert values == list(range(values[0], values[0] + len(values)))
    assert [op.name for op in control.Op] == [
        "GET_INFO",
        "ADD",
        "REMOVE",
        "SET_RENDER_ADAPTER",
        "PING",
        "CLEAR_ALL",
    ]
    assert set(control.REQUEST_BODY) == set(control.REPLY_BODY) == set(control.Op)


def test_control_round_trip() -> None:
    request = control.AddRequest(width=2560, height=1440, refresh_hz=144, hdr=1, client_id=b"abc")
    wire = control.encode(control.Op.ADD, request, request_id=9, session_id=2**64 - 1)
    assert len(wire) == 32 + 80
    assert wire[:4] == b"PFVC" and wire[4:6] == (0x901).to_bytes(2, "little")
    message = control.decode(wire)
    assert not message.is_reply
    assert message.header.session_id == 2**64 - 1 and message.header.request_id == 9
    body = message.struct()
    assert isinstance(body, control.AddRequest)
    assert (body.width, body.height, body.refresh_hz, body.hdr, body.client_id) == (
        2560,
        1440,
        144,
        1,
        b"abc",
    )


def test_error_reply_carries_reason() -> None:
    wire = control.encode_error(control.Op.ADD, control.Status.OUT_OF_BOUNDS, "x" * 1000)
    message = control.decode(wire)
    assert message.is_reply and message.header.status == control.Status.OUT_OF_BOUNDS
    reason = message.struct()
    assert isinstance(reason, control.ErrorReply) and reason.reason == b"x" * 239


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"PFVC", "truncated header"),
        (b"XXXX" + bytes(28), "bad magic"),
        (control.encode(control.Op.PING)[:24] + (5000).to_bytes(4, "little") + bytes(4), "exceeds"),
        (control.encode(control.Op.ADD, control.AddRequest())[:-1], "header says"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(wire: bytes, match: str) -> None:
    with pytest.raises(control.ControlProtocolError, match=match):
        control.decode(wire)


def test_wrong_body_size_and_unknown_op() -> None:
    wrong = control.encode(control.Op.REMOVE, control.SetRenderAdapterRequest())
    with pytest.raises(control.ControlProtocolError, match="REMOVE request body is 128"):
        control.decode(wrong).struct()
    unknown = bytearray(control.encode(control.Op.PING))
    unknown[4:6] = (0x9FF).to_bytes(2, "little")
    with pytest.raises(control.ControlProtocolError, match="unknown op 0x9ff"):
        control.decode(bytes(unknown)).struct()


def test_handshake_accepts_own_driver_and_refuses_mismatch() -> None:
    info = control.local_info(max_monitors=8, backend="xvfb", driver_version="0.1.0")
    control.check_driver_info(info)
    info.abi_version = frame.ABI_VERSION + 1
    with pytest.raises(control.DriverMismatchError, match="punktfunk vdisplay"):
        control.check_driver_info(info)


def test_mode_bounds() -> None:
    assert control.mode_error(1920, 1080, 60) is None
    assert control.mode_error(7680, 4320, 24) is None
    assert "outside" in (control.mode_error(319, 480, 60) or "")
    assert "outside" in (control.mode_error(7682, 4320, 60) or "")
    assert "refresh" in (control.mode_error(1920, 1080, 481) or "")
    assert "refresh" in (control.mode_error(1920, 1080, 23) or "")
    assert "odd" in (control.mode_error(1921, 1080, 60) or "")


def test_pin_detects_drift() -> None:
    class Drifted(LE):
        _fields_ = (("a", ctypes.c_uint8), ("b", ctypes.c_uint32))

    with pytest.raises(AbiDriftError, match="size 5"):
        pin(Drifted, 8, {"a": 0, "b": 4})
    with pytest.raises(AbiDriftError, match=r"Drifted\.b: offset 1"):
        pin(Drifted, 5, {"a": 0, "b": 4})
    with pytest.raises(AbiDriftError, match="without a pinned offset"):
        pin(Drifted, 5, {"a": 0})


def test_self_check_describes_the_abi() -> None:
    lines = proto.self_check()
    assert any("PadShm 256 B" in line and "device_type at 140" in line for line in lines)
