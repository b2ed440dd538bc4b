"""Control plane of the host<->driver ABI: the messages on the driver's Unix socket.

Every message is a 32-byte `MsgHeader` followed by `body_len` bytes of an op-specific struct
(the IOCTL analogue of the Windows driver). Requests and replies share the header; a reply has
the REPLY flag and a `Status`; an error reply's body is an `ErrorReply` with a reason. The host
sends GET_INFO first and refuses a driver whose versions differ (`check_driver_info`).
`PROTOCOL_VERSION` covers these messages, `frame.ABI_VERSION` the ring; they move independently.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from ._layout import LE, pin
from .frame import ABI_VERSION

CONTROL_MAGIC = 0x43564650  # "PFVC" little-endian
PROTOCOL_VERSION = 1
MAX_BODY = 4096

# Mode bounds every backend enforces (ADD outside them is refused with OUT_OF_BOUNDS). The
# maximum bounds memory (frame ring slots, X framebuffers, encoder surfaces); the minimum is
# below every client's smallest mode (Moonlight 360p is 640x360) and above the smallest frame
# hardware encoders take (NVENC, AMF and QSV want 128-256 pixels a side).
MIN_WIDTH, MIN_HEIGHT = 320, 180
MAX_WIDTH, MAX_HEIGHT = 7680, 4320
MIN_REFRESH_HZ, MAX_REFRESH_HZ = 24, 480


class Op(IntEnum):
    """Control operations, one contiguous range (like the driver's 0x900 IOCTL functions)."""

    GET_INFO = 0x900
    ADD = 0x901
    REMOVE = 0x902
    SET_RENDER_ADAPTER = 0x903
    PING = 0x904
    CLEAR_ALL = 0x905


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    UNKNOWN_OP = 2
    OUT_OF_BOUNDS = 3
    NOT_FOUND = 4
    LIMIT_REACHED = 5
    VERSION_MISMATCH = 6
    UNKNOWN_ADAPTER = 7
    INTERNAL = 8


class MsgFlags(IntFlag):
    NONE = 0
    REPLY = 1


class MsgHeader(LE):
    _fields_ = (
        ("magic", ctypes.c_uint32),
        ("op", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("request_id", ctypes.c_uint32),
        ("status", ctypes.c_int32),
        ("session_id", ctypes.c_uint64),
        ("body_len", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint32),
    )


class GetInfoReply(LE):
    _fields_ = (
        ("protocol_version", ctypes.c_uint32),
        ("abi_version", ctypes.c_uint32),
        ("max_monitors", ctypes.c_uint32),
        ("min_width", ctypes.c_uint32),
        ("min_height", ctypes.c_uint32),
        ("max_width", ctypes.c_uint32),
        ("max_height", ctypes.c_uint32),
        ("min_refresh_hz", ctypes.c_uint32),
        ("max_refresh_hz", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint32),
        ("backend", ctypes.c_char * 32),
        ("driver_version", ctypes.c_char * 32),
    )


class AddRequest(LE):
    _fields_ = (
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("refresh_hz", ctypes.c_uint32),
        ("hdr", ctypes.c_uint32),
        ("client_id", ctypes.c_char * 64),
    )


EDID_CAPACITY = 512


class AddReply(LE):
    _fields_ = (
        ("monitor_id", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
        ("display_name", ctypes.c_char * 32),
        ("edid_len", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint32),
        ("edid", ctypes.c_uint8 * EDID_CAPACITY),
    )


class RemoveRequest(LE):
    """`generation` must match the monitor's: a stale lease can't remove a newer monitor."""

    _fields_ = (
        ("monitor_id", ctypes.c_uint32),
        ("generation", ctypes.c_uint32),
    )


class SetRenderAdapterRequest(LE):
    _fields_ = (("adapter", ctypes.c_char * 128),)


class ErrorReply(LE):
    _fields_ = (("reason", ctypes.c_char * 240),)


pin(
    MsgHeader,
    32,
    {
        "magic": 0,
        "op": 4,
        "flags": 6,
        "request_id": 8,
        "status": 12,
        "session_id": 16,
        "body_len": 24,
    },
)
pin(
    GetInfoReply,
    104,
    {
        "protocol_version": 0,
        "abi_version": 4,
        "max_monitors": 8,
        "min_width": 12,
        "min_height": 16,
        "max_width": 20,
        "max_height": 24,
        "min_refresh_hz": 28,
        "max_refresh_hz": 32,
        "backend": 40,
        "driver_version": 72,
    },
)
pin(AddRequest, 80, {"width": 0, "height": 4, "refresh_hz": 8, "hdr": 12, "client_id": 16})
pin(
    AddReply,
    560,
    {"monitor_id": 0, "generation": 4, "display_name": 8, "edid_len": 40, "edid": 48},
)
pin(RemoveRequest, 8, {"monitor_id": 0, "generation": 4})
pin(SetRenderAdapterRequest, 128, {"adapter": 0})
pin(ErrorReply, 240, {"reason": 0})

HEADER_SIZE = ctypes.sizeof(MsgHeader)

# Body struct of each op's request and successful reply (None = empty body).
REQUEST_BODY: dict[Op, type[LE] | None] = {
    Op.GET_INFO: None,
    Op.ADD: AddRequest,
    Op.REMOVE: RemoveRequest,
    Op.SET_RENDER_ADAPTER: SetRenderAdapterRequest,
    Op.PING: None,
    Op.CLEAR_ALL: None,
}
REPLY_BODY: dict[Op, type[LE] | None] = {
    Op.GET_INFO: GetInfoReply,
    Op.ADD: AddReply,
    Op.REMOVE: None,
    Op.SET_RENDER_ADAPTER: None,
    Op.PING: None,
    Op.CLEAR_ALL: None,
}


class ControlProtocolError(ValueError):
    """A control message that cannot be understood (bad magic, truncated, wrong body size)."""


class DriverMismatchError(RuntimeError):
    """The driver speaks another protocol or ABI version than this host."""


@dataclass(frozen=True)
class Message:
    header: MsgHeader
    body: bytes

    @property
    def is_reply(self) -> bool:
        return bool(self.header.flags & MsgFlags.REPLY)

    @property
    def op(self) -> Op:
        """The op; ControlProtocolError for a number outside the registry."""
        try:
            return Op(self.header.op)
        except ValueError:
            raise ControlProtocolError(f"unknown op 0x{self.header.op:x}") from None

    def struct(self) -> LE | None:
        """The typed body for this op (request or reply), or an ErrorReply for a failed reply."""
        op = self.op
        if self.is_reply and self.header.status != Status.OK:
            kind: type[LE] | None = ErrorReply
        else:
            kind = (REPLY_BODY if self.is_reply else REQUEST_BODY)[op]
        expected = 0 if kind is None else ctypes.sizeof(kind)
        if len(self.body) != expected:
            raise ControlProtocolError(
                f"{op.name} {'reply' if self.is_reply else 'request'} body is {len(self.body)} "
                f"bytes, expected {expected}"
            )
        return None if kind is None else kind.from_buffer_copy(self.body)


def encode(
    op: Op,
    body: LE | None = None,
    *,
    request_id: int = 0,
    session_id: int = 0,
    reply: bool = False,
    status: Status = Status.OK,
) -> bytes:
    """Serialize one message (header + body)."""
    payload = b"" if body is None else bytes(body)
    header = MsgHeader(
        magic=CONTROL_MAGIC,
        op=op,
        flags=MsgFlags.REPLY if reply else MsgFlags.NONE,
        request_id=request_id,
        status=status,
        session_id=session_id,
        body_len=len(payload),
    )
    return bytes(header) + payload


def encode_error(
    op: Op, status: Status, reason: str, *, request_id: int = 0, session_id: int = 0
) -> bytes:
    """An error reply; the reason is truncated to fit and always NUL-terminated."""
    text = reason.encode("utf-8")[: ctypes.sizeof(ErrorReply) - 1]
    return encode(
        op,
        ErrorReply(text),
        request_id=request_id,
        session_id=session_id,
        reply=True,
        status=status,
    )


def decode_header(data: bytes | bytearray | memoryview) -> MsgHeader:
    """Parse and validate a header; ControlProtocolError names what is wrong."""
    if len(data) < HEADER_SIZE:
        raise ControlProtocolError(f"truncated header: {len(data)} of {HEADER_SIZE} bytes")
    header = MsgHeader.from_buffer_copy(bytes(data[:HEADER_SIZE]))
    if header.magic != CONTROL_MAGIC:
        raise ControlProtocolError(f"bad magic 0x{header.magic:08x}")
    if header.body_len > MAX_BODY:
        raise ControlProtocolError(f"body of {header.body_len} bytes exceeds {MAX_BODY}")
    return header


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one complete message; trailing or missing body bytes are an error."""
    header = decode_header(data)
    body = bytes(data[HEADER_SIZE:])
    if len(body) != header.body_len:
        raise ControlProtocolError(f"body is {len(body)} bytes, header says {header.body_len}")
    return Message(header, body)


def mode_error(width: int, height: int, refresh_hz: int) -> str | None:
    """Why a mode is outside the bounds every backend accepts, or None if it is fine."""
    if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT):
        return (
            f"mode {width}x{height} is outside {MIN_WIDTH}x{MIN_HEIGHT}..{MAX_WIDTH}x{MAX_HEIGHT}"
        )
    if not MIN_REFRESH_HZ <= refresh_hz <= MAX_REFRESH_HZ:
        return f"refresh {refresh_hz} Hz is outside {MIN_REFRESH_HZ}..{MAX_REFRESH_HZ} Hz"
    if width % 2 or height % 2:
        return f"mode {width}x{height} has an odd dimension (4:2:0 video needs even sizes)"
    return None


def local_info(max_monitors: int, backend: str, driver_version: str) -> GetInfoReply:
    """The GET_INFO reply a driver built from this package sends."""
    return GetInfoReply(
        protocol_version=PROTOCOL_VERSION,
        abi_version=ABI_VERSION,
        max_monitors=max_monitors,
        min_width=MIN_WIDTH,
        min_height=MIN_HEIGHT,
        max_width=MAX_WIDTH,
        max_height=MAX_HEIGHT,
        min_refresh_hz=MIN_REFRESH_HZ,
        max_refresh_hz=MAX_REFRESH_HZ,
        backend=backend.encode()[:31],
        driver_version=driver_version.encode()[:31],
    )


def check_driver_info(info: GetInfoReply) -> None:
    """The GET_INFO handshake the host asserts before any other op."""
    if info.protocol_version != PROTOCOL_VERSION or info.abi_version != ABI_VERSION:
        raise DriverMismatchError(
            f"virtual display driver {info.driver_version.decode(errors='replace')!r} speaks "
            f"control protocol {info.protocol_version} / frame ABI {info.abi_version}, but this "
            f"host needs protocol {PROTOCOL_VERSION} / ABI {ABI_VERSION}; stop the running "
            "driver and start the one from this install (`punktfunk vdisplay`)"
        )
