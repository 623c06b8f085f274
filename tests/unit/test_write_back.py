"""The write-back view that keeps a shard's bookkeeping behind its pages."""

from __future__ import annotations

import pytest

from kafka_ps.tables.write_back import WriteBack


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
    order: list[bytes] = []

    class Recording(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            order.append(key)
            super().__setitem__(key, value)

    view = WriteBack(Recording())
    view[b"x"], view[b"y"], view[b"x"] = b"1", b"2", b"3"
    view.flush()
    assert order == [b"y", b"x"]


def test_a_key_written_and_deleted_between_flushes_never_reaches_the_table() -> None:
    table: dict[bytes, bytes] = {}
    view = WriteBack(table)
    view[b"k"] = b"v"
    del view[b"k"]
    view.flush()
    assert table == {}
    with pytest.raises(KeyError):
        del view[b"missing"]
