"""Shard logic: lazy init, exactly-once pushes by offset, and bad pushes change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from tables.codec import decode_record
from tables.init import Constant, ParamInitFunction
from tables.params import ParamRegistry, ParamSpec
from tables.shard import RejectedPush, Shard
from tables.update_rules import ParamUpdate, make_rule


def make_shard() -> tuple[Shard, dict[bytes, bytes]]:
    table: dict[bytes, bytes] = {}
    registry = ParamRegistry(
        [
            ParamSpec("w", (1,), make_rule("add"), init=Constant(0.5)),
            ParamSpec("g", (2,), make_rule("adagrad", lr=0.1)),
        ]
    )
    return Shard(table, registry), table


def test_pull_of_an_unknown_key_initialises_without_storing() -> None:
    shard, table = make_shard()
    [w, g] = shard.pull([b"w:1", b"g:1"])
    np.testing.assert_array_equal(w, [[0.5]])
    assert g.shape == (2, 2)
    assert table == {}


def test_push_applies_once_per_offset() -> None:
    shard, table = make_shard()
    result = shard.push([b"w:1"], [np.array([1.0])], offset=10)
    assert (result.applied, result.skipped) == (1, 0)
    replay = shard.push([b"w:1"], [np.array([1.0])], offset=10)
    assert (replay.applied, replay.skipped) == (0, 1)
    assert replay.written == result.written
    shard.push([b"w:1"], [np.array([2.0])], offset=11)
    record = decode_record(table[b"w:1"])
    assert record.offset == 11
    np.testing.assert_array_equal(record.value, [3.5])


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
    shard, table = make_shard()
    shard.push([b"w:1"], [np.ones(1)], offset=1)
    before = dict(table)
    with pytest.raises(RejectedPush) as raised:
        shard.push(keys, deltas, offset=2)
    assert raised.value.reason == reason
    assert table == before


def test_user_param_init_and_param_update_run_on_the_shard() -> None:
    def param_init(key: bytes) -> np.ndarray:
        return np.full(2, float(key.split(b":")[1]))

    def param_update(value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return np.maximum(value, delta)

    spec = ParamSpec("m", (2,), ParamUpdate(param_update), init=ParamInitFunction(param_init))
    table: dict[bytes, bytes] = {}
    shard = Shard(table, ParamRegistry([spec]))
    np.testing.assert_array_equal(shard.pull([b"m:3"])[0], [[3.0, 3.0]])
    shard.push([b"m:3"], [np.array([1.0, 7.0])], offset=0)
    np.testing.assert_array_equal(decode_record(table[b"m:3"]).value, [3.0, 7.0])
    with pytest.raises(RejectedPush, match="non_finite_delta"):
        shard.push([b"m:3"], [np.array([1.0, np.inf])], offset=1)
    assert decode_record(table[b"m:3"]).offset == 0


def test_a_user_param_update_that_breaks_the_shape_is_rejected() -> None:
    spec = ParamSpec("m", (2,), ParamUpdate(lambda value, delta: np.zeros(3)))
    table: dict[bytes, bytes] = {}
    with pytest.raises(RejectedPush, match="bad_delta"):
        Shard(table, ParamRegistry([spec])).push([b"m:1"], [np.ones(2)], offset=0)
    assert table == {}
