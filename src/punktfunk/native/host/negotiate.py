"""What a punktfunk/2 host answers a ClientHello with, as pure functions of the hello: the
codec (and the fallbacks the plan may take), whether HDR is granted, the capability bits, the
colour description, and the wire's timestamp and ask-counter arithmetic (handshake.rs,
clock.rs). No I/O: `session.py` applies them.
"""

from __future__ import annotations

from ...encode.base import Codec as EncCodec
from ...session.plan import PlanError
from ..wire.hello import ClientHello
from ..wire.registry import Codec, HostCap, HostCap2, VideoCap

WIRE_CODEC = {EncCodec.H264: Codec.H264, EncCodec.HEVC: Codec.HEVC, EncCodec.AV1: Codec.AV1}
_CODEC_ORDER = (EncCodec.HEVC, EncCodec.H264, EncCodec.AV1)


def color_of(hdr: bool) -> bytes:
    """CICP primaries, transfer, matrix, full range: BT.2020/PQ for HDR10, else BT.709."""
    return bytes((9, 16, 9, 0)) if hdr else bytes((1, 1, 1, 0))


def choose_codec(
    hello: ClientHello, have: frozenset[EncCodec]
) -> tuple[EncCodec, str | None, tuple[EncCodec, ...]]:
    """The client's preferred codec when this host encodes it, else the best one both have.

    Returns the codec, a downgrade note (None when the client got what it preferred) and the
    other codecs both have, best first: the plan falls back to the first of those the encoder
    sustains at the asked mode when this one cannot (empty: the client listed one codec and
    insists). A client that lists no codecs is taken to decode HEVC (hello.rs's default).
    """
    offered = {c for c, bit in WIRE_CODEC.items() if hello.video_codecs & bit}
    offered = offered or {EncCodec.HEVC}
    preferred = next((c for c, b in WIRE_CODEC.items() if hello.preferred_codec == b), None)
    common = [c for c in _CODEC_ORDER if c in have and c in offered]
    if not common:
        raise PlanError(
            f"no common codec: the client decodes {sorted(offered)}, "
            f"this host encodes {sorted(have)}"
        )
    if preferred in common:
        codec, note = preferred, None
    else:
        codec = common[0]
        note = None if preferred is None else f"codec {preferred} not available: {codec}"
    # H.264 first among the fallbacks: the cheapest to encode, so the likeliest to keep up.
    rest = sorted((c for c in common if c != codec), key=lambda c: c is not EncCodec.H264)
    return codec, note, tuple(rest)


def hdr_granted(hello: ClientHello, codec: EncCodec, hdr_codecs: frozenset[EncCodec]) -> bool:
    """HDR10 only when the client sets both VIDEO_CAP_HDR and VIDEO_CAP_10BIT and we encode
    HDR in `codec` (handshake.rs `negotiate_video_format`: `session_hdr` needs the 10-bit
    grant); the display's HDR volume (`display_hdr`) only describes the client's screen."""
    both = VideoCap.HDR | VideoCap.TEN_BIT
    return hello.video_caps & both == both and codec in hdr_codecs


def timing_pts_ns(origin_wall_ns: int, origin_mono_ns: int, capture_ns: int) -> int:
    """HOST_TIMING's `pts_ns`: the frame's wire timestamp (whole µs after the clock origin)
    back in Unix ns, so a client matches the datagram to its frame exactly (clock.rs)."""
    return origin_wall_ns + (capture_ns - origin_mono_ns) // 1000 * 1000


def newer_ask(ask: int, last: int) -> bool:
    """`ask` is a 16-bit counter that wraps: newer when it is 1..32767 ahead of `last`
    (serial-number arithmetic); 0 asks nothing."""
    return ask != 0 and 0 < (ask - last) % 0x10000 < 0x8000


def host_caps(has_injector: bool) -> tuple[int, int]:
    """host_caps and host_caps2 as handshake.rs `negotiate` answers them, each bit only for
    what this host does: pad snapshots (per-button events are folded too), key edges read off
    the control stream, the ClientHello's added entries read (EXT), and where an injector
    exists, committed Unicode text and normalized scroll."""
    caps, caps2 = HostCap.GAMEPAD_STATE, HostCap2.INPUT_EDGES | HostCap2.EXT
    if has_injector:
        caps |= HostCap.TEXT_INPUT
        caps2 |= HostCap2.SCROLL
    return int(caps), int(caps2)
