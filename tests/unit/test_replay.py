"""High-water marks, durable deferred pushes and the cutting of replayed batches."""

from __future__ import annotations

import numpy as np
import pytest

from kafka_ps.tables.clocks import is_reserved
from kafka_ps.tables.codec import CodecError
from kafka_ps.tables.replay import (
    DEFERRED_INDEX,
    POSITION_KEY,
    DeferredPushes,
    HighWaterMarks,
    ReadPosition,
    deferred_key,
    hwm_key,
    replay_segments,
)


class CountingTable(dict[bytes, bytes]):
    """A dict that counts writes, as a changelog would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)


def test_marks_start_below_every_offset_and_only_rise() -> None:
    table = CountingTable()
    marks = HighWaterMarks(table)
    assert marks.get(3) == -1
    assert not marks.covers(3, 0)
    marks.raise_to(3, 41)
    marks.raise_to(3, 7)
    assert marks.get(3) == 41
    assert marks.covers(3, 41) and marks.covers(3, 0) and not marks.covers(3, 42)
    assert marks.get(2) == -1
    assert table.writes == [hwm_key(3)]


def test_offsetless_pushes_are_never_old_work() -> None:
    marks = HighWaterMarks({})
    marks.raise_to(0, 10)
    assert not marks.covers(0, -1)
    assert not marks.straddles(0, -1, -1)


def test_straddling_is_a_partial_overlap() -> None:
    marks = HighWaterMarks({})
    marks.raise_to(0, 10)
    assert marks.straddles(0, 5, 15)
    assert not marks.straddles(0, 11, 15)
    assert not marks.straddles(0, 3, 10)


def test_marks_are_durable_and_reserved() -> None:
    table: dict[bytes, bytes] = {}
    HighWaterMarks(table).raise_to(1, 99)
    assert HighWaterMarks(dict(table)).get(1) == 99
    assert is_reserved(hwm_key(1)) and is_reserved(deferred_key(5)) and is_reserved(DEFERRED_INDEX)
    table[hwm_key(2)] = b"\x00" * 3
    with pytest.raises(CodecError):
        HighWaterMarks(table).get(2)
    with pytest.raises(ValueError):
        hwm_key(-1)


def test_read_position_is_durable_int64_le_and_written_only_when_it_moves() -> None:
    table = CountingTable()
    position = ReadPosition(table)
    assert position.get() is None
    position.set(41)
    position.set(41)
    assert table.writes == [POSITION_KEY]
    assert table[POSITION_KEY] == (41).to_bytes(8, "little", signed=True)
    assert ReadPosition(dict(table)).get() == 41 and is_reserved(POSITION_KEY)
    table[POSITION_KEY] = b"\x01"
    with pytest.raises(CodecError):
        position.get()


def test_deferred_pushes_come_due_by_clock_then_offset() -> None:
    table: dict[bytes, bytes] = {}
    deferred = DeferredPushes(table)
    deferred.add(2, 30, b"c")
    deferred.add(1, 50, b"b")
    deferred.add(1, 20, b"a")
    deferred.add(1, 20, b"a")  # read twice: held once
    assert len(deferred) == 3
    assert deferred.take_due(1) == []
    due = deferred.take_due(2)
    assert due == [(20, b"a"), (50, b"b")]
    # Until done() they stay, so a crash before applying them loses nothing.
    assert len(DeferredPushes(dict(table))) == 3
    deferred.done([offset for offset, _ in due])
    assert deferred.take_due(np.inf) == [(30, b"c")]
    deferred.done([30])
    assert len(deferred) == 0
    assert set(table) == {DEFERRED_INDEX}


@pytest.mark.parametrize(
    ("offsets", "marks", "pieces"),
    [
        ([10, 11, 12, 13], [-1], [[10, 11, 12, 13]]),
        ([10, 11, 12, 13], [], [[10, 11, 12, 13]]),
        ([10, 11, 12, 13], [11, 11], [[12, 13]]),
        ([10, 11, 12, 13], [13, 20], []),
        ([10, 11, 12, 13], [-1, 11], [[10, 11], [12, 13]]),
        ([10, 11, 12, 13], [10, 12, 30], [[11, 12], [13]]),
        ([10, 12, 14], [11, 13, 5], [[10], [12], [14]]),
        ([], [3], []),
    ],
)
def test_replayed_batches_are_cut_at_every_mark(
    offsets: list[int], marks: list[int], pieces: list[list[int]]
) -> None:
    assert [offsets[s] for s in replay_segments(offsets, marks)] == pieces


def test_no_piece_straddles_a_mark_and_none_is_lost() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        offsets = sorted(rng.choice(100, size=rng.integers(1, 30), replace=False).tolist())
        marks = rng.integers(-1, 100, size=rng.integers(1, 5)).tolist()
        pieces = [offsets[s] for s in replay_segments(offsets, marks)]
        assert [o for piece in pieces for o in piece] == [o for o in offsets if o > min(marks)]
        for piece in pieces:
            for mark in marks:
                assert piece[-1] <= mark or piece[0] > mark
