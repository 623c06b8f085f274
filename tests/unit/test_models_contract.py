"""One contract every built-in model meets, run on each through LocalParameterServer.

Each model in ``MODELS`` needs a :class:`Case` here: hyper-parameters, a small synthetic
stream it should learn from, and one bad hyper-parameter it must refuse.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.api import ParamRegistry, Prediction, TrainingRecord
from kafka_ps.agents.local import LocalParameterServer
from kafka_ps.agents.metrics import losses
from kafka_ps.agents.models import MODELS, Mlp, make_model
from kafka_ps.tables.codec import ParamRecord, decode_record, encode_record
from kafka_ps.tables.init import ParamInit
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import UpdateRule

BATCH = 32


def _categorical(n: int, seed: int) -> tuple[list[dict[str, str]], np.ndarray]:
    """``n`` records of three categorical features, and each record's summed true effect."""
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, 1.5, (3, 8))
    values = rng.integers(8, size=(n, 3))
    features = [{name: f"v{v}" for name, v in zip("abc", row, strict=True)} for row in values]
    return features, effects[np.arange(3), values].sum(axis=1)


def sparse_classification(n: int = 2000) -> list[TrainingRecord]:
    features, margin = _categorical(n, seed=0)
    labels = np.random.default_rng(10).random(n) < 1.0 / (1.0 + np.exp(-margin))
    return [
        TrainingRecord(features=f, label=float(y), key=b"r%d" % t)
        for t, (f, y) in enumerate(zip(features, labels, strict=True))
    ]


def sparse_regression(n: int = 2000) -> list[TrainingRecord]:
    """Categorical effects plus one numeric feature ``x``, hashed by name."""
    features, effect = _categorical(n, seed=1)
    rng = np.random.default_rng(11)
    x = rng.normal(size=n)
    labels = 2.0 + effect / 2.0 + 0.5 * x + rng.normal(0.0, 0.1, n)
    return [
        TrainingRecord(features={**f, "x": float(x[t])}, label=float(labels[t]), key=b"r%d" % t)
        for t, f in enumerate(features)
    ]


def ratings(n: int = 3000) -> list[TrainingRecord]:
    rng = np.random.default_rng(2)
    users, items = rng.normal(0.0, 0.7, (30, 2)), rng.normal(0.0, 0.7, (30, 2))
    user_bias, item_bias = rng.normal(0.0, 0.5, 30), rng.normal(0.0, 0.5, 30)
    records = []
    for t in range(n):
        u, i = int(rng.integers(30)), int(rng.integers(30))
        rating = 3.5 + user_bias[u] + item_bias[i] + users[u] @ items[i] + rng.normal(0.0, 0.2)
        records.append(
            TrainingRecord(
                features={"user": u, "item": f"m{i}"},
                label=float(np.clip(rating, 1.0, 5.0)),
                key=b"r%d" % t,
            )
        )
    return records


def dense_classification(n: int = 3000) -> list[TrainingRecord]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] * x[:, 1] + 0.7 * x[:, 2] - 0.3 * x[:, 3] > 0).astype(np.float64)
    return [TrainingRecord(dense=x[t], label=float(y[t]), key=b"r%d" % t) for t in range(n)]


@dataclass(frozen=True)
class Case:
    hyper: dict[str, Any]
    stream: Callable[[], list[TrainingRecord]]
    bad_hyper: dict[str, Any]


CASES: dict[str, Case] = {
    "logreg_ftrl": Case({"buckets": 2**12}, sparse_classification, {"alpha": 0.0}),
    "linear": Case(
        {"buckets": 2**12, "numeric": ["x"], "lr": 0.01}, sparse_regression, {"lr": -1.0}
    ),
    "passive_aggressive": Case({"buckets": 2**12, "C": 0.01}, sparse_classification, {"C": 0}),
    "mf": Case({"k": 4, "lr": 0.05}, ratings, {"k": 0}),
    # block_size 24 cuts fc1.weight (64 elements) into blocks 24, 24 and a padded 16.
    "mlp": Case({"n_inputs": 4, "lr": 0.02, "block_size": 24}, dense_classification, {"hidden": 0}),
}
NAMES = sorted(MODELS)


@functools.cache
def stream(name: str) -> list[TrainingRecord]:
    return CASES[name].stream()


@functools.cache
def trained(name: str) -> tuple[LocalParameterServer, list[Prediction]]:
    """A fresh model run over its whole stream (shared by tests that only read it)."""
    model = make_model(name, **CASES[name].hyper)
    server = LocalParameterServer(model.params)
    return server, server.run(model, stream(name), BATCH)


def unlabelled(record: TrainingRecord) -> TrainingRecord:
    return dataclasses.replace(record, label=None)


def test_every_model_has_a_case() -> None:
    assert set(CASES) == set(MODELS)


def test_unknown_models_and_missing_hyper_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        make_model("nope")
    with pytest.raises(ValueError, match="bad hyper-parameters"):
        make_model("logreg_ftrl", learning_rate=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_hyper_parameters_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        make_model(name, **(CASES[name].hyper | CASES[name].bad_hyper))


@pytest.mark.parametrize("name", NAMES)
def test_params_are_unique_and_valid(name: str) -> None:
    model = make_model(name, **CASES[name].hyper)
    assert model.task in ("classification", "regression")
    assert len(ParamRegistry(model.params).specs) == len(model.params) > 0
    for spec in model.params:
        assert isinstance(spec.rule, UpdateRule)
        assert isinstance(spec.init, ParamInit)
        assert spec.shape and all(isinstance(d, int) and d >= 1 for d in spec.shape)
        slots = spec.initial_slots(param_key(spec.name, 0))
        assert len(slots) == spec.n_slots
        for slot in slots:
            assert slot.shape == spec.shape and slot.dtype == spec.dtype
            assert np.isfinite(slot).all()


@pytest.mark.parametrize("name", NAMES)
def test_one_finite_prediction_per_record_in_order(name: str) -> None:
    records = stream(name)
    _, predictions = trained(name)
    assert [p.record_key for p in predictions] == [r.key for r in records]
    assert [p.label for p in predictions] == [r.label for r in records]
    values = np.array([p.value for p in predictions])
    assert np.isfinite(values).all()
    if make_model(name, **CASES[name].hyper).task == "classification":
        assert ((values >= 0.0) & (values <= 1.0)).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [0, 1, BATCH + 5])
def test_predicts_before_learning(name: str, t: int) -> None:
    """Record ``t``'s prediction does not depend on its own label.

    The same mini-batches up to ``t``'s, with ``t``'s label removed: a model that learned
    from ``t`` before predicting it would predict differently. At ``t = 0`` this is the
    prediction of the untrained model. (The mini-batches are kept whole, so that the
    arithmetic, down to the BLAS kernels, is the same.)
    """
    records = stream(name)
    end = (t // BATCH + 1) * BATCH
    probe_records = [*records[:t], unlabelled(records[t]), *records[t + 1 : end]]
    model = make_model(name, **CASES[name].hyper)
    probe = LocalParameterServer(model.params).run(model, probe_records, BATCH)
    assert probe[t].value == trained(name)[1][t].value


@pytest.mark.parametrize("name", NAMES)
def test_unlabelled_records_are_predicted_but_not_learnt(name: str) -> None:
    model = make_model(name, **CASES[name].hyper)
    server = LocalParameterServer(model.params)
    predictions = server.run(model, [unlabelled(r) for r in stream(name)[:100]], BATCH)
    assert len(predictions) == 100
    assert server.counters.pushes == 0
    assert server.snapshot() == {}


@pytest.mark.parametrize("name", NAMES)
def test_parameters_stay_finite_and_round_trip_through_the_codec(name: str) -> None:
    server, _ = trained(name)
    registry = server.registry
    stored = [(key, slots) for shard in server.shards for key, slots in shard.items()]
    assert stored
    for key, slots in stored:
        assert all(np.isfinite(slot).all() for slot in slots)
        rule_id = registry.spec_for(key).rule.rule_id
        decoded = decode_record(encode_record(ParamRecord(slots, rule_id=rule_id)))
        assert decoded.rule_id == rule_id
        assert len(decoded.slots) == len(slots)
        for before, after in zip(slots, decoded.slots, strict=True):
            assert before.dtype == after.dtype
            np.testing.assert_array_equal(before, after, strict=True)


@pytest.mark.parametrize("name", NAMES)
def test_learning_lowers_the_progressive_loss(name: str) -> None:
    records = stream(name)
    model = make_model(name, **CASES[name].hyper)
    labels = [r.label for r in records]
    _, predictions = trained(name)
    untrained = LocalParameterServer(model.params).run(
        model, [unlabelled(r) for r in records], BATCH
    )
    y = np.array(labels, dtype=np.float64)
    loss = losses(model.task, y, np.array([p.value for p in predictions]))
    baseline = losses(model.task, y, np.array([p.value for p in untrained]))
    half = len(records) // 2
    assert loss[half:].mean() < loss[:half].mean()
    assert loss[half:].mean() < 0.9 * baseline[half:].mean()


@pytest.mark.parametrize("name", NAMES)
def test_results_do_not_depend_on_the_number_of_shards(name: str) -> None:
    records = stream(name)[:200]
    runs = []
    for partitions in (1, 3):
        model = make_model(name, **CASES[name].hyper)
        server = LocalParameterServer(model.params, partitions=partitions)
        predictions = [p.value for p in server.run(model, records, BATCH)]
        runs.append((predictions, server.snapshot()))
    (values_1, snapshot_1), (values_3, snapshot_3) = runs
    assert values_1 == values_3
    assert snapshot_1.keys() == snapshot_3.keys()
    for key, value in snapshot_1.items():
        np.testing.assert_array_equal(value, snapshot_3[key])


def test_mlp_blocks_have_one_length_per_tensor_and_pad_only_the_last() -> None:
    model = make_model("mlp", n_inputs=4, hidden=16, block_size=24)
    assert isinstance(model, Mlp)
    shapes = {spec.name: spec.shape for spec in model.params}
    assert shapes == {
        "fc1.weight": (24,),  # 64 elements: blocks of 24, 24 and 16 padded to 24
        "fc1.bias": (16,),  # fits in one block: stored at its exact size
        "fc2.weight": (16,),
        "fc2.bias": (1,),
    }
    fc1 = model.tensors[0]
    tensor = np.arange(64.0).reshape(16, 4)
    deltas = fc1.split(tensor)
    assert list(deltas) == [param_key("fc1.weight", i) for i in range(3)]
    assert all(delta.shape == (1, 24) for delta in deltas.values())
    np.testing.assert_array_equal(deltas[param_key("fc1.weight", 2)][0, 16:], 0.0)
    padded = {key: np.concatenate([delta, delta + 1.0]) for key, delta in deltas.items()}
    np.testing.assert_array_equal(fc1.join(padded), tensor)
