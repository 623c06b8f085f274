"""Shard logic: lazy init, exactly-once pushes by page stamps, bad pushes change nothing,
and pages that survive a flush and a reload."""

from __future__ import annotations

import numpy as np
import pytest

from kafka_ps.tables.codec import decode_record, encode_value, encode_values
from kafka_ps.tables.init import Constant, ParamInitFunction
from kafka_ps.tables.pages import page_key, params_in_table
from kafka_ps.tables.params import ParamRegistry, ParamSpec
from kafka_ps.tables.shard import FlushResult, RejectedPush, Shard
from kafka_ps.tables.update_rules import ParamUpdate, make_rule


def registry() -> ParamRegistry:
    return ParamRegistry(
        [
            ParamSpec("w", (1,), make_rule("add"), init=Constant(0.5)),
            ParamSpec("g", (2,), make_rule("adagrad", lr=0.1)),
        ]
    )


def stored(table: dict[bytes, bytes], key: bytes) -> np.ndarray:
    """Slot 0 of ``key`` as the table holds it."""
    return params_in_table(table)[key][0]


def test_pull_of_an_unknown_key_initialises_without_storing() -> None:
    shard, table = Shard(registry()), {}
    [w, g] = shard.pull([b"w:1", b"g:1"])
    np.testing.assert_array_equal(w, [[0.5]])
    assert g.shape == (2, 2)
    shard.flush(table)
    assert table == {}


def test_push_applies_once_per_offset() -> None:
    shard, table = Shard(registry()), {}
    result = shard.push([b"w:1"], [np.array([1.0])], offset=10)
    assert (result.applied, result.skipped) == (1, 0)
    replay = shard.push([b"w:1"], [np.array([1.0])], offset=10)
    assert (replay.applied, replay.skipped) == (0, 1)
    shard.push([b"w:1"], [np.array([2.0])], offset=11)
    shard.flush(table)
    np.testing.assert_array_equal(stored(table, b"w:1"), [3.5])


def test_a_reloaded_shard_skips_what_its_table_holds_and_applies_what_a_crash_lost() -> None:
    shard, table = Shard(registry()), {}
    shard.push([b"w:1"], [np.array([1.0])], offset=10)
    shard.flush(table)
    shard.push([b"w:1"], [np.array([2.0])], offset=11)  # never flushed: lost in a crash
    restarted = Shard(registry())
    restarted.load(table)
    np.testing.assert_array_equal(restarted.pull([b"w:1"])[0], [[1.5]])
    # The replay from the committed offset brings both pushes again.
    assert restarted.push([b"w:1"], [np.array([1.0])], offset=10).skipped == 1
    assert restarted.push([b"w:1"], [np.array([2.0])], offset=11).applied == 1
    np.testing.assert_array_equal(restarted.pull([b"w:1"])[0], [[3.5]])


def test_each_page_keeps_its_own_stamp_through_a_partly_written_flush() -> None:
    """A crash in the middle of a flush leaves some pages new and some old: the replayed
    push skips the new pages and applies itself to the old ones."""
    keys = [b"w:%d" % i for i in range(4)]
    shard, before = Shard(registry(), page_size=2), {}
    shard.push(keys, [np.ones(1)] * 4, offset=1)
    shard.flush(before)
    shard.push(keys, [np.ones(1)] * 4, offset=2)
    after: dict[bytes, bytes] = {}
    shard.flush(after)
    partial = {**before, page_key(0, "w", 0): after[page_key(0, "w", 0)]}
    restarted = Shard(registry(), page_size=2)
    restarted.load(partial)
    result = restarted.push(keys, [np.ones(1)] * 4, offset=2)
    assert (result.applied, result.skipped) == (2, 2)
    values = [restarted.pull([key])[0][0][0] for key in keys]
    assert values == [2.5] * 4


def test_flush_writes_only_the_pages_changed_since_the_last_one() -> None:
    shard, table = Shard(registry(), page_size=2), {}
    shard.push([b"w:%d" % i for i in range(5)], [np.ones(1)] * 5, offset=0)
    first = shard.flush(table)
    assert first == FlushResult(3, sum(len(value) for value in table.values()))
    assert shard.flush(table) == FlushResult(0, 0)
    shard.push([b"w:4"], [np.ones(1)], offset=1)
    assert shard.flush(table).pages == 1
    assert len(table) == 3


def test_changed_values_are_published_once_with_their_page_stamp() -> None:
    shard = Shard(registry())
    shard.push([b"w:1", b"w:2"], [np.ones(1), np.full(1, 2.0)], offset=7)
    slab = shard.slabs["w"]
    keys, values, stamps = slab.take_changed()
    assert keys == [b"w:1", b"w:2"]
    assert encode_values(values, stamps) == [
        encode_value(np.array([1.5]), offset=7),
        encode_value(np.array([2.5]), offset=7),
    ]
    assert slab.take_changed()[0] == []
    assert decode_record(encode_values(values, stamps)[0]).offset == 7


@pytest.mark.parametrize(
    ("keys", "deltas", "reason"),
    [
        ([b"w:1", b"x:1"], [np.ones(1), np.ones(1)], "unknown_parameter"),
        ([b"w:1", b"g:1"], [np.ones(1), np.ones(3)], "wrong_shape"),
        ([b"w:1", b"g:1"], [np.ones(1), np.array([1.0, np.nan])], "non_finite_delta"),
        ([b"w:1", b"w:1"], [np.ones(1), np.ones(1)], "malformed"),
        ([b"no-colon"], [np.ones(1)], "unknown_parameter"),
    ],
)
def test_a_bad_push_is_rejected_whole(
    keys: list[bytes], deltas: list[np.ndarray], reason: str
) -> None:
    shard, table = Shard(registry()), {}
    shard.push([b"w:1"], [np.ones(1)], offset=1)
    with pytest.raises(RejectedPush) as raised:
        shard.push(keys, deltas, offset=2)
    assert raised.value.reason == reason
    np.testing.assert_array_equal(shard.pull([b"w:1"])[0], [[1.5]])
    shard.flush(table)
    assert set(params_in_table(table)) == {b"w:1"}


def test_user_param_init_and_param_update_run_on_the_shard() -> None:
    def param_init(key: bytes) -> np.ndarray:
        return np.full(2, float(key.split(b":")[1]))

    def param_update(value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return np.maximum(value, delta)

    spec = ParamSpec("m", (2,), ParamUpdate(param_update), init=ParamInitFunction(param_init))
    shard = Shard(ParamRegistry([spec]))
    np.testing.assert_array_equal(shard.pull([b"m:3"])[0], [[3.0, 3.0]])
    shard.push([b"m:3"], [np.array([1.0, 7.0])], offset=0)
    np.testing.assert_array_equal(shard.pull([b"m:3"])[0], [[3.0, 7.0]])
    with pytest.raises(RejectedPush, match="non_finite_delta"):
        shard.push([b"m:3"], [np.array([1.0, np.inf])], offset=1)
    np.testing.assert_array_equal(shard.pull([b"m:3"])[0], [[3.0, 7.0]])


def test_a_user_param_update_that_breaks_the_shape_is_rejected() -> None:
    spec = ParamSpec("m", (2,), ParamUpdate(lambda value, delta: np.zeros(3)))
    shard, table = Shard(ParamRegistry([spec])), {}
    with pytest.raises(RejectedPush, match="bad_delta"):
        shard.push([b"m:1"], [np.ones(2)], offset=0)
    shard.flush(table)
    assert params_in_table(table) == {b"m:1": pytest.approx(np.zeros((1, 2)))}
