"""The write-back view that keeps a shard's bookkeeping behind its pages."""

from __future__ import annotations

import pytest

from kafka_ps.tables.replay import VOUCHING, DeferredPushes, HighWaterMarks, ReadPosition
from kafka_ps.tables.write_back import WriteBack


class Recording(dict[bytes, bytes]):
    """A table that remembers every write, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, bytes]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append((key, value))
        super().__setitem__(key, value)

    @property
    def order(self) -> list[bytes]:
        return [key for key, _ in self.writes]


def test_reads_see_pending_writes_and_the_table_sees_them_only_after_flush() -> None:
    table = {b"a": b"1", b"b": b"2"}
    view = WriteBack(table)
    view[b"a"] = b"10"
    del view[b"b"]
    view[b"c"] = b"3"
    assert (view[b"a"], view[b"c"]) == (b"10", b"3")
    with pytest.raises(KeyError):
        view[b"b"]
    assert table == {b"a": b"1", b"b": b"2"}
    assert view.flush() == 3
    assert table == {b"a": b"10", b"c": b"3"}
    assert view.flush() == 0


def test_flush_writes_in_the_order_of_the_last_write_to_each_key() -> None:
    view = WriteBack(table := Recording())
    view[b"x"], view[b"y"], view[b"x"] = b"1", b"2", b"3"
    view.flush()
    assert table.order == [b"y", b"x"]


def test_a_key_written_and_deleted_between_flushes_never_reaches_the_table() -> None:
    table: dict[bytes, bytes] = {}
    view = WriteBack(table)
    view[b"k"] = b"v"
    del view[b"k"]
    view.flush()
    assert table == {}
    with pytest.raises(KeyError):
        del view[b"missing"]


def test_keys_under_last_are_written_after_every_other_key_group_by_group() -> None:
    view = WriteBack(table := Recording(), last=(b"m:", b"p"))
    view[b"p"], view[b"m:1"], view[b"a"], view[b"m:2"], view[b"b"] = b"", b"", b"", b"", b""
    view[b"a"] = b"again"
    view.flush()
    assert table.order == [b"b", b"a", b"m:1", b"m:2", b"p"]


def test_a_crash_anywhere_in_a_flush_never_leaves_a_mark_over_a_held_push_it_lost() -> None:
    """Two BSP pushes held in one flush interval: the second rewrites the index, which then
    used to reach the changelog after the first push's mark. Every prefix of the flush's
    writes (a SIGKILL after any of them) must keep what each durable mark vouches for."""
    book = WriteBack(table := Recording(), last=VOUCHING)
    marks, held = HighWaterMarks(book), DeferredPushes(book)
    held.add(32, 423, b"push of worker 3")
    marks.raise_to(3, 764)
    held.add(32, 430, b"push of worker 1")
    marks.raise_to(1, 800)
    ReadPosition(book).set(431)
    book.flush()
    writes = table.writes
    for crash in range(len(writes) + 1):
        changelog = dict(writes[:crash])
        survived = DeferredPushes(changelog).take_due(33)
        kept = [offset for offset, _ in survived]
        for worker, trained, offset in ((3, 764, 423), (1, 800, 430)):
            if HighWaterMarks(changelog).covers(worker, trained):
                assert offset in kept, (crash, writes[:crash])
