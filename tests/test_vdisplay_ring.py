"""The frame ring: slot handoff, the generation check on every read, drop-on-full."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from multiprocessing.sharedctypes import Synchronized as Value
from multiprocessing.synchronize import Event

import numpy as np
import pytest

from punktfunk.proto.frame import FrameToken, PixelFormat, SlotState, shm_name
from punktfunk.vdisplay.ring import SHM_DIR, FrameRing, RingError, RingReader, RingWriter


@pytest.fixture
def ring_pair():
    """A host-created ring and the driver's view of it (a second mapping)."""
    monitor = 900 + os.getpid() % 50
    name = shm_name(monitor, int(uuid.uuid4().int % 10_000) + 1)
    host = FrameRing.create(name, 640, 480, PixelFormat.BGRA8, generation=7)
    driver = FrameRing.open(name)
    yield host, driver
    driver.close()
    host.close()
    assert not (SHM_DIR / name).exists()


def _publish(writer: RingWriter, generation: int, seq: int, fill: int) -> bool:
    slot = writer.try_acquire()
    if slot is None:
        return False
    writer.ring.pixels[slot].fill(fill)
    writer.publish(slot, FrameToken(generation, seq, slot), capture_ns=seq)
    return True


def test_create_open_and_validate(ring_pair, tmp_path) -> None:
    host, driver = ring_pair
    assert (driver.width, driver.height, driver.pixel_format) == (640, 480, PixelFormat.BGRA8)
    assert driver.generation == 7 and driver.slot_count == 3
    assert all(s.state == SlotState.FREE for s in driver.slots)
    with pytest.raises(RingError, match="cannot open"):
        FrameRing.open("pfvd-999-999999")
    bogus = SHM_DIR / f"pfvd-998-{os.getpid()}"
    bogus.write_bytes(b"\x00" * 4096)
    try:
        with pytest.raises(RingError, match="bad magic"):
            FrameRing.open(bogus.name)
    finally:
        bogus.unlink()
    with pytest.raises(RingError, match="already exists"):
        FrameRing.create(host.name, 640, 480, PixelFormat.BGRA8, generation=1)


def test_publish_then_take_latest(ring_pair) -> None:
    host, driver = ring_pair
    writer, reader = RingWriter(driver), RingReader(host)
    assert reader.take_latest() is None
    assert _publish(writer, 7, 1, 11)
    assert _publish(writer, 7, 2, 22)
    taken = reader.take_latest()
    assert taken is not None and taken.token.seq == 2 and int(taken.pixels[0, 0, 0]) == 22
    # The superseded frame went back to the producer; the taken one is being read.
    states = sorted(s.state for s in host.slots)
    assert states == [SlotState.FREE, SlotState.FREE, SlotState.READING]
    reader.release(taken)
    assert reader.take_latest() is None


def test_a_stale_generation_is_never_delivered_and_its_slot_recycled(ring_pair) -> None:
    host, driver = ring_pair
    writer, reader = RingWriter(driver), RingReader(host)
    assert _publish(writer, 6, 1, 99)  # produced for the ring before a mode change
    assert reader.take_latest() is None
    assert reader.stale == 1
    assert all(s.state == SlotState.FREE for s in host.slots)
    assert _publish(writer, 7, 2, 5)
    taken = reader.take_latest()
    assert taken is not None and taken.token.generation == 7


def test_full_ring_drops_and_never_blocks_the_producer(ring_pair) -> None:
    host, driver = ring_pair
    writer, reader = RingWriter(driver), RingReader(host)
    assert _publish(writer, 7, 1, 1)
    held = reader.take_latest()  # a slow consumer holding its frame
    assert held is not None
    results: list[bool] = []

    def produce() -> None:
        results.extend(_publish(writer, 7, seq, seq % 256) for seq in range(2, 1002))

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(60)
    assert not producer.is_alive(), "the producer blocked on a full ring"
    assert results.count(True) == 2  # the two slots the consumer does not hold
    assert driver.header.dropped == 998
    assert int(held.pixels[0, 0, 0]) == 1  # the held frame was never overwritten
    reader.release(held)
    newest = reader.take_latest()
    assert newest is not None and newest.token.seq == 3


def _produce_until(name: str, stop: Event, attempts: Value) -> None:  # type: ignore[valid-type]
    ring = FrameRing.open(name)
    writer = RingWriter(ring)
    seq = 0
    while not stop.is_set():
        seq += 1
        generation = 6 if seq % 3 == 0 else 7  # every third frame is stale
        _publish(writer, generation, seq, seq % 251)
        attempts.value += 1  # type: ignore[attr-defined]
    ring.close()


def test_producer_process_and_slow_consumer_see_whole_frames_of_their_generation(
    ring_pair,
) -> None:
    host, _ = ring_pair
    reader = RingReader(host)
    ctx = multiprocessing.get_context("fork")
    stop, attempts = ctx.Event(), ctx.Value("q", 0)
    producer = ctx.Process(target=_produce_until, args=(host.name, stop, attempts))
    producer.start()
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 100 and time.monotonic() < deadline:
            taken = reader.take_latest()
            if taken is None:
                time.sleep(0.0005)
                continue
            assert taken.token.generation == 7
            # A torn frame would mix two fills; the producer never writes a READING slot.
            values = np.unique(taken.pixels[::7, ::9])
            assert values.tolist() == [taken.token.seq % 251], values
            seen.append(taken.token.seq)
            time.sleep(0.002)  # a slow consumer
            reader.release(taken)
    finally:
        stop.set()
        producer.join(60)
    assert producer.exitcode == 0
    assert len(seen) == 100
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert all(seq % 3 for seq in seen)
    assert host.header.dropped > 0 and reader.stale > 0
    assert attempts.value > len(seen)


def test_sequence_wraps(ring_pair) -> None:
    host, driver = ring_pair
    writer, reader = RingWriter(driver), RingReader(host)
    for seq in ((1 << 32) - 2, (1 << 32) - 1, 0):
        assert _publish(writer, 7, seq, seq % 256)
    taken = reader.take_latest()
    assert taken is not None and taken.token.seq == 0
    assert sorted(s.state for s in host.slots) == [
        SlotState.FREE,
        SlotState.FREE,
        SlotState.READING,
    ]


def test_the_driver_notices_an_unlinked_ring(ring_pair) -> None:
    host, driver = ring_pair
    assert not driver.unlinked()
    (SHM_DIR / host.name).unlink()
    assert driver.unlinked()
    host.owner = False  # already unlinked above


def test_fp16_ring_views_are_float16() -> None:
    name = shm_name(997, os.getpid())
    ring = FrameRing.create(name, 640, 480, PixelFormat.FP16_RGBA, generation=1)
    try:
        assert ring.pixels[0].dtype == np.float16 and ring.pixels[0].shape == (480, 640, 4)
        assert ring.slot_size >= 640 * 480 * 8
    finally:
        ring.close()
