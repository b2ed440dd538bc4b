"""Video and audio codes end to end: any D of D+P shards recover the data, on every backend.

Property tests draw random block shapes, shard lengths and erasure patterns; the native and
numpy backends must produce identical parity and identical recoveries. Bad arguments are
ValueErrors with a message; blocks with too few shards raise UnrecoverableBlock.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from punktfunk.fec import (
    MAX_SHARDS,
    FecError,
    UnrecoverableBlock,
    audio_parity,
    audio_recover,
    available_backends,
    video_parity,
    video_parity_count,
    video_parity_into,
    video_recover,
)

BACKENDS = available_backends()
FAST = [name for name in ("native", "numpy") if name in BACKENDS]


@st.composite
def blocks(draw: st.DrawFn, max_data: int = 60, max_parity: int = 30, max_length: int = 300):
    """(data shards, parity count, erased slot indices) with at most P erasures."""
    data_count = draw(st.integers(1, max_data))
    parity_count = draw(st.integers(1, min(max_parity, MAX_SHARDS - data_count)))
    length = draw(st.integers(1, max_length))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    data = [rng.integers(0, 256, length, dtype=np.uint8).tobytes() for _ in range(data_count)]
    # Half the time exactly P erasures: the hardest case, which a uniform draw rarely hits.
    count = draw(st.one_of(st.just(parity_count), st.integers(0, parity_count)))
    order = draw(st.permutations(range(data_count + parity_count)))
    return data, parity_count, sorted(order[:count])


@settings(max_examples=250, deadline=None)
@given(block=blocks())
def test_any_erasures_up_to_parity_recover(block) -> None:
    data, parity_count, erased = block
    parities = {name: video_parity(data, parity_count, backend=name) for name in FAST}
    reference = parities[FAST[0]]
    assert all(parity == reference for parity in parities.values())
    assert len(reference) == parity_count
    slots: list[bytes | None] = [*data, *reference]
    for index in erased:
        slots[index] = None
    for name in FAST:
        assert video_recover(slots, len(data), backend=name) == data


@settings(max_examples=30, deadline=None)
@given(block=blocks(max_data=20, max_parity=10, max_length=64), extra=st.integers(1, 5))
def test_more_erasures_than_parity_is_unrecoverable(block, extra: int) -> None:
    data, parity_count, _ = block
    slots: list[bytes | None] = [*data, *video_parity(data, parity_count)]
    lost = min(parity_count + extra, len(slots))
    for index in range(lost):
        slots[index] = None
    with pytest.raises(UnrecoverableBlock) as info:
        video_recover(slots, len(data))
    assert info.value.present == len(slots) - lost
    assert info.value.needed == len(data)
    assert isinstance(info.value, FecError)
    assert f"{len(slots) - lost} of {len(slots)} shards present" in str(info.value)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(("data_count", "parity_count"), [(1, 254), (254, 1), (128, 127)])
def test_largest_blocks_recover(name: str, data_count: int, parity_count: int) -> None:
    rng = np.random.default_rng(data_count)
    data = [rng.integers(0, 256, 24, dtype=np.uint8).tobytes() for _ in range(data_count)]
    slots: list[bytes | None] = [*data, *video_parity(data, parity_count, backend=name)]
    lost = rng.choice(len(slots), parity_count, replace=False)
    for index in lost:
        slots[index] = None
    assert video_recover(slots, data_count, backend=name) == data


@pytest.mark.parametrize("name", FAST)
def test_zero_copy_inputs_and_parity_into(name: str) -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (12, 1392), dtype=np.uint8)  # e.g. one packetised frame
    expected = video_parity([row.tobytes() for row in frame], 3, backend=name)
    assert video_parity(list(frame), 3, backend=name) == expected
    assert video_parity([memoryview(row) for row in frame], 3, backend=name) == expected
    out = np.zeros((3, 1392), dtype=np.uint8)
    video_parity_into(list(frame), list(out), backend=name)
    assert [row.tobytes() for row in out] == expected
    slots = [*list(frame), *[bytearray(p) for p in expected]]
    slots[0] = slots[5] = None
    assert video_recover(slots, 12, backend=name) == [row.tobytes() for row in frame]


def test_invalid_video_arguments() -> None:
    shard = b"x" * 8
    with pytest.raises(ValueError, match="at least 1 data shard"):
        video_parity([], 2)
    with pytest.raises(ValueError, match="at least 1 parity shard"):
        video_parity([shard], 0)
    with pytest.raises(ValueError, match="255"):
        video_parity([shard] * 200, 56)
    with pytest.raises(ValueError, match="same length"):
        video_parity([shard, shard, b"short"], 2)
    with pytest.raises(ValueError, match="empty"):
        video_parity([b"", b""], 1)
    with pytest.raises(ValueError, match="shard slots"):
        video_recover([shard, shard], 2)
    with pytest.raises(ValueError, match="same length"):
        video_recover([shard, None, b"short", shard], 2)
    with pytest.raises(ValueError, match="unknown FEC backend"):
        video_parity([shard], 1, backend="gpu")


def test_recover_without_losses_returns_data_as_bytes() -> None:
    data = [b"abcd", b"efgh"]
    parity = video_parity(data, 1)
    assert video_recover([bytearray(data[0]), data[1], None], 2) == data
    assert video_recover([*data, *parity], 2) == data


def test_parity_count_follows_the_host_rule() -> None:
    assert video_parity_count(10, 20) == 2
    assert video_parity_count(11, 20) == 3  # ceil(2.2)
    assert video_parity_count(212, 20) == 43
    assert video_parity_count(3, 20, min_parity=2) == 2  # ceil(0.6) = 1, raised to the minimum
    assert video_parity_count(3, 0, min_parity=2) == 0  # FEC off stays off
    with pytest.raises(ValueError):
        video_parity_count(0, 20)


def random_payloads(length: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, length, dtype=np.uint8).tobytes() for _ in range(4)]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("length", [1, 16, 17, 64, 1392])
def test_audio_any_two_of_six_lost(name: str, length: int) -> None:
    data = random_payloads(length, length)
    parity = audio_parity(data, backend=name)
    assert len(parity) == 2
    full = [*data, *parity]
    for count in (0, 1, 2):
        for lost in itertools.combinations(range(6), count):
            slots = [None if i in lost else shard for i, shard in enumerate(full)]
            assert audio_recover(slots, backend=name) == data, lost


def test_audio_three_lost_is_unrecoverable() -> None:
    data = random_payloads(32, 1)
    full = [*data, *audio_parity(data)]
    for lost in itertools.combinations(range(6), 3):
        slots = [None if i in lost else shard for i, shard in enumerate(full)]
        with pytest.raises(UnrecoverableBlock, match="3 of 6 shards present, at least 4 needed"):
            audio_recover(slots)


def test_invalid_audio_arguments() -> None:
    with pytest.raises(ValueError, match="exactly 4"):
        audio_parity([b"ab"] * 3)
    with pytest.raises(ValueError, match="exactly 4"):
        audio_parity([b"ab"] * 5)
    with pytest.raises(ValueError, match="same length"):
        audio_parity([b"ab", b"ab", b"ab", b"abc"])
    with pytest.raises(ValueError, match="6 shard slots"):
        audio_recover([b"ab"] * 4)
