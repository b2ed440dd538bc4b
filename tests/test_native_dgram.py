"""QUIC datagram kinds and payloads (quic/v2/dgram.rs, quic/datagram.rs, input.rs)."""

from hypothesis import given
from hypothesis import strategies as st

from punktfunk.native.wire import dgram
from punktfunk.native.wire.dgram import Datagram, Feedback, HostTiming, InputEvent, InputKind
from punktfunk.native.wire.messages import ClockEcho, ClockProbe
from punktfunk.native.wire.registry import DgramKind
from punktfunk.native.wire.tlv import Fields


def test_feedback_and_clock_golden_and_round_trip():
    # dgram.rs `Feedback::encode`: window fields only with a window, ask fields only with an ask.
    fb = Feedback(window=4, loss_ppm=1200, packets_received=1 << 40)
    assert fb.encode().hex() == "030104040000000204b004000003080000000000010000"
    ask = Feedback(ask=9, invalidate=(100, 103), keyframe=True)
    assert ask.encode().hex() == "0304020900050464000000060467000000070101"
    for f in (fb, ask, Feedback(window=5, ask=10, keyframe=True)):
        assert dgram.decode(f.encode()) == f
    assert dgram.encode_clock_probe(ClockProbe(5)).hex() == "0401080500000000000000"
    e = ClockEcho(5, 6, 7)
    assert dgram.decode(dgram.encode_clock_probe(ClockProbe(5))) == ClockProbe(5)
    assert dgram.decode(dgram.encode_clock_echo(e)) == e
    half = dgram.encode(DgramKind.CLOCK, Fields().u64(2, 1).body())
    assert dgram.decode(half) is None


def test_feedback_acked_frames():
    # dgram.rs at 27fa515: tags 14/15, the newest completed frame and the 16 before as bits.
    acked = Feedback(acked=(7_000, 0b1011))
    assert acked.encode().hex() == "030e04581b00000f020b00"
    both = Feedback(window=6, loss_ppm=40, packets_received=90_000, acked=(7_001, 1))
    for f in (acked, both):
        assert dgram.decode(f.encode()) == f
    twice = Fields().u32(14, 1).u32(14, 2).body()
    assert dgram.decode(dgram.encode(DgramKind.FEEDBACK, twice)) is None


def test_wrapped_payloads_must_match_their_kind():
    audio = dgram.encode_audio(7, 1_000, b"\x01\x02\x03")
    assert audio.hex() == "01c907000000e803000000000000010203"
    got = dgram.decode(audio)
    assert got == Datagram(DgramKind.AUDIO, audio[1:])
    assert dgram.decode_audio(got.payload) == (7, 1_000, b"\x01\x02\x03")
    rumble = bytes([0xCA, 1, 0, 2, 0, 3, 0])
    assert dgram.wrap(rumble) == b"\x05" + rumble
    assert dgram.decode(dgram.encode(DgramKind.AUDIO, rumble)) is None  # tag of another kind
    assert dgram.decode(dgram.encode(0x3F, audio[1:])) is None  # unknown kind
    assert dgram.wrap(b"\x01\x02") is None
    assert dgram.decode(dgram.encode(DgramKind.MEDIA, b"\x09\x09")).payload == b"\x09\x09"


def test_host_timing_and_input_events():
    # quic/datagram.rs `host_timing_datagram_roundtrip_and_truncation`: 13 or 25 bytes.
    t = HostTiming(1_751_500_000_123_456_789, 4_321, (900, 3_100, 2_500))
    wire = t.encode()
    assert wire.hex() == "08cf158d7463f8934e18e1100000840300001c0c0000c4090000"
    assert HostTiming.decode(wire[1:]) == t
    assert HostTiming.decode(wire[1:14]) == HostTiming(t.pts_ns, t.host_us, None)
    assert HostTiming.decode(wire[1:20]).stages is None  # a torn tail degrades
    ev = InputEvent(InputKind.MOUSE_MOVE, 0, -5, 7, 0)
    assert len(ev.encode()) == 18 and InputEvent.decode(ev.encode()) == ev
    assert dgram.decode(dgram.encode(DgramKind.INPUT_STATE, ev.encode())).payload == ev.encode()
    assert InputEvent.decode(b"\xc8\x63" + bytes(16)) is None  # unknown kind


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_drop(data):
    dgram.decode(data)
