"""Frame type -> typed message. A type this build does not model is skipped (None)."""

from __future__ import annotations

from .dgram import InputEvent
from .hello import ClientHello, Ready, ServerHello
from .messages import (
    AudioConfig,
    AudioState,
    BitrateChanged,
    ClipControl,
    ClipState,
    ClockEcho,
    ClockProbe,
    CursorRenderMode,
    Message,
    PairChallenge,
    PairProof,
    PairRequest,
    PairResult,
    Pending,
    PipelineGap,
    ProbeRequest,
    ProbeResult,
    Reconfigure,
    Reconfigured,
    Refused,
    SetBitrate,
    ShardPayloadAck,
    ShardPayloadChanged,
    StreamConfig,
)
from .registry import MsgType
from .tlv import WireError, WireErrorCode, frame

MESSAGES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        ClientHello, ServerHello, Ready, Pending, Refused, PairRequest, PairChallenge,
        PairProof, PairResult, Reconfigure, Reconfigured, StreamConfig, AudioConfig,
        SetBitrate, BitrateChanged, PipelineGap, ProbeRequest, ProbeResult, CursorRenderMode,
        AudioState, ShardPayloadChanged, ShardPayloadAck, ClockProbe, ClockEcho, ClipControl,
        ClipState,
    )
}  # fmt: skip


def decode_message(msg_type: int, body: bytes) -> Message | InputEvent | None:
    """The typed message of one frame; raises WireError on a malformed body."""
    if msg_type == MsgType.INPUT_EVENT:
        event = InputEvent.decode(body)
        if event is None:
            raise WireError(WireErrorCode.BAD_FIELD, "bad input event")
        return event
    cls = MESSAGES.get(msg_type)  # type: ignore[call-overload]
    return None if cls is None else cls.decode_body(body)


def encode_input_edge(event: InputEvent) -> bytes:
    """A key press or release on the control stream: the event's own 18 bytes as the body."""
    return frame(MsgType.INPUT_EVENT, event.encode())
