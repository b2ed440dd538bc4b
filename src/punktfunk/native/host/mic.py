"""The client's microphone: 0xCB audio datagrams into the session's virtual microphone.

A punktfunk client streams its microphone as `0xCB ‖ seq u32 ‖ pts_ns u64 ‖ opus` in audio
datagrams (the 0xC9 layout under the mic tag). The host decodes each packet into a per-session
PulseAudio source (`audio.mic.PulseMic`: a null sink whose monitor is remapped into an ordinary
source, `punktfunk-<session>-mic`) that applications record from.

The socket thread only queues (`offer`): opening the source takes `pactl` round trips and
decoding costs CPU, so both run on this uplink's own thread, started by the first packet. A
full queue drops the oldest packet (voice prefers fresh over complete); a packet that is not
newer than the last one (wrapping u32 `seq`) is a duplicate or reordered and is dropped; no
sound server means the packets are counted and dropped, with one logged reason.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ...audio.mic import PulseMic, open_mic
from ...log import event
from ..wire.registry import DgramTag

_log = logging.getLogger("punktfunk.native.mic")

_HEADER = struct.Struct("<BIQ")  # tag, seq, pts_ns
MIC_QUEUE = 32  # 160 ms of 5 ms packets: more is latency nobody wants in a voice chat
MIC_CHANNELS = 1  # libopus folds a stereo packet into a mono decoder
MIC_TAG = bytes((DgramTag.MIC,))


@dataclass
class MicCounters:
    packets: int = 0  # handed to the microphone
    stale: int = 0  # duplicate or older than the last one
    malformed: int = 0  # shorter than the header or empty
    overflow: int = 0  # the queue was full: the oldest went
    unavailable: int = 0  # no sound server could take a microphone


def decode_mic(payload: bytes) -> tuple[int, int, bytes] | None:
    """`(seq, pts_ns, opus)` of a 0xCB payload, or None."""
    if len(payload) <= _HEADER.size or payload[0] != DgramTag.MIC:
        return None
    _, seq, pts = _HEADER.unpack_from(payload)
    return seq, pts, payload[_HEADER.size :]


def encode_mic(seq: int, pts_ns: int, opus: bytes) -> bytes:
    """The datagram payload a client sends (kind AUDIO wraps it)."""
    return _HEADER.pack(DgramTag.MIC, seq & 0xFFFF_FFFF, pts_ns) + opus


MicOpener = Callable[[str, int], PulseMic | None]


class MicUplink:
    def __init__(self, session: str, opener: MicOpener = open_mic) -> None:
        self.session = session
        self.counters = MicCounters()
        self._opener = opener
        self._queue: queue.Queue[bytes | None] = queue.Queue(MIC_QUEUE)
        self._thread: threading.Thread | None = None
        self._last_seq: int | None = None
        self._closed = False
        self._lock = threading.Lock()  # offer (socket thread) against close (teardown thread)
        self.source_name: str | None = None

    def offer(self, payload: bytes) -> None:
        """Socket thread: queue one 0xCB payload; never blocks."""
        got = decode_mic(payload)
        if got is None:
            self.counters.malformed += 1
            return
        seq, _, opus = got
        if self._last_seq is not None and not 0 < (seq - self._last_seq) % 2**32 < 2**31:
            self.counters.stale += 1
            return
        self._last_seq = seq
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.session}-mic", daemon=True
                )
                self._thread.start()
        try:
            self._queue.put_nowait(opus)
        except queue.Full:
            self.counters.overflow += 1
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(opus)

    def _run(self) -> None:
        mic = self._opener(self.session, MIC_CHANNELS)
        if mic is not None:
            self.source_name = mic.source_name
            event(_log, "native.mic_open", session=self.session, source=mic.source_name)
        try:
            while (opus := self._queue.get()) is not None:
                if mic is None:
                    self.counters.unavailable += 1
                    continue
                mic.write_opus(opus)
                self.counters.packets += 1
        finally:
            if mic is not None:
                mic.close()

    def close(self) -> None:
        """Stop the uplink and release the source (from the session's teardown)."""
        with self._lock:
            self._closed, thread = True, self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        thread.join(timeout=5)
        counters = self.counters
        event(_log, "native.mic_end", session=self.session, packets=counters.packets,
              stale=counters.stale, malformed=counters.malformed, overflow=counters.overflow,
              unavailable=counters.unavailable)  # fmt: skip
