"""Warm start: saved values replace the initialiser on the lazy path, and only there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kafka_ps.agents.model_export import read_npz, write_npz
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.warm_start import load_warm_start
from kafka_ps.tables.init import Constant
from kafka_ps.tables.pages import params_in_table
from kafka_ps.tables.params import ParamRegistry, ParamSpec
from kafka_ps.tables.shard import Shard
from kafka_ps.tables.update_rules import ftrl_weights, make_rule
from kafka_ps.tables.warm_start import WarmStartError, warm_registry

FTRL = {"alpha": 0.1, "beta": 1.0, "l1": 1.0, "l2": 1.0}


def registry() -> ParamRegistry:
    return ParamRegistry(
        [
            ParamSpec("w", (1,), make_rule("add"), init=Constant(0.5)),
            ParamSpec("f", (3,), make_rule("ftrl_additive", **FTRL)),
            ParamSpec("cold", (1,), make_rule("add")),
        ]
    )


WARM = {b"w:1": np.array([2.0]), b"f:1": np.array([0.75, 0.0, -3.0])}


def test_warm_keys_start_from_their_values_and_the_rest_from_the_initialiser() -> None:
    shard = Shard(warm_registry(registry(), WARM))
    w1, w2, cold = shard.pull([b"w:1", b"w:2", b"cold:1"])
    np.testing.assert_array_equal(w1, [[2.0]])
    np.testing.assert_array_equal(w2, [[0.5]])
    np.testing.assert_array_equal(cold, [[0.0]])


def test_ftrl_state_is_derived_so_that_its_weights_are_the_warm_value() -> None:
    shard = Shard(warm_registry(registry(), WARM))
    [(w, z, n)] = shard.pull([b"f:1"])
    np.testing.assert_allclose(w, WARM[b"f:1"], rtol=1e-15)
    np.testing.assert_array_equal(n, 0.0)
    np.testing.assert_allclose(ftrl_weights(z, n, **FTRL), WARM[b"f:1"], rtol=1e-15)


def test_a_warm_value_is_applied_once_and_never_overwrites_a_trained_one() -> None:
    table: dict[bytes, bytes] = {}
    shard = Shard(warm_registry(registry(), WARM))
    shard.push([b"w:1"], [np.array([1.0])], offset=7)
    shard.flush(table)
    assert params_in_table(table)[b"w:1"][0].tolist() == [3.0]
    # A restarted server builds its registry from the same source over the same table.
    restarted = Shard(warm_registry(registry(), WARM))
    restarted.load(table)
    np.testing.assert_array_equal(restarted.pull([b"w:1"])[0], [[3.0]])
    replay = restarted.push([b"w:1"], [np.array([1.0])], offset=7)
    assert (replay.applied, replay.skipped) == (0, 1)
    restarted.push([b"w:1"], [np.array([1.0])], offset=8)
    restarted.flush(table)
    assert params_in_table(table)[b"w:1"][0].tolist() == [4.0]


def test_pulls_do_not_change_the_saved_values() -> None:
    values = {b"w:1": np.array([2.0])}
    shard = Shard(warm_registry(registry(), values))
    shard.pull([b"w:1"])[0][0] += 100.0
    shard.push([b"w:1"], [np.array([1.0])], offset=0)
    assert values[b"w:1"].tolist() == [2.0]
    np.testing.assert_array_equal(shard.pull([b"w:1"])[0], [[3.0]])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({b"gone:1": np.array([1.0])}, "no parameter named 'gone'"),
        ({b"w:1": np.array([1.0, 2.0])}, "shape"),
        ({b"w:1": np.array(1.0)}, "shape"),
        ({b"w:1": np.array([np.nan])}, "NaN or infinite"),
        ({b"w:1": np.array(["x"])}, "not numbers"),
    ],
)
def test_a_source_that_does_not_fit_the_job_fails_at_start(
    values: dict[bytes, np.ndarray], message: str
) -> None:
    with pytest.raises(WarmStartError, match=message):
        warm_registry(registry(), values)


def test_npz_round_trip_and_loading_a_warm_start_from_it(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    write_npz(WARM, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    loaded = load_warm_start(JobSettings(warm_start=str(path)))
    assert loaded.keys() == WARM.keys()
    for key, value in WARM.items():
        np.testing.assert_array_equal(loaded[key], value)
    assert load_warm_start(JobSettings(warm_start="")) == {}


def test_an_empty_source_is_an_error_not_a_cold_start(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    write_npz({}, path)
    assert read_npz(path) == {}
    with pytest.raises(WarmStartError, match="holds no parameters"):
        load_warm_start(JobSettings(warm_start=str(path)))
