"""Learning does not depend on the mini-batch size (docs/architecture.md, "Learning quality
versus batching"), and holds its own against River on the same stream.

With one logical worker every built-in linear model learns record by record inside a
mini-batch, so the mini-batch of 1,024 predicts what one record at a time predicts. With two
logical workers each is blind to the other's current mini-batch; what that costs is
measured here and bounded, not zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.api import Prediction, TrainingRecord
from kafka_ps.agents.local import LocalParameterServer
from kafka_ps.agents.models import FtrlLogisticRegression, LinearRegression, make_model
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import (
    DATASETS,
    FLIGHT_CROSSES,
    FLIGHTS_DENSE_DIM,
    PHISHING_FEATURES,
    flights,
    flights_dense,
    phishing,
)
from kafka_ps.app.train import DEFAULT_PARAMS, deal
from kafka_ps.tables.update_rules import ftrl_step, ftrl_weights
from tests.reference import ftrl_logloss, logloss, river_logistic

FLIGHTS = 20_000
#: The drifting numeric stream: River's rotating hyperplane, 8 features in [0, 1].
DRIFT = {"seed": 42, "n_features": 8, "mag_change": 0.001, "noise_percentage": 0.05}
DRIFT_RECORDS = 18_000


def progressive_logloss(outputs: list[Prediction]) -> float:
    return logloss(np.array([o.label for o in outputs]), np.array([o.value for o in outputs]))


def run(
    hyper: dict[str, Any],
    records: list[TrainingRecord],
    batch: int,
    workers: int = 1,
    deal: Callable[[int, TrainingRecord], int] | None = None,
) -> float:
    model = make_model("logreg_ftrl", **hyper)
    server = LocalParameterServer(model.params)
    return progressive_logloss(server.run(model, records, batch, workers=workers, deal=deal))


def river_scaled(records: list[TrainingRecord]) -> float:
    """River's ``StandardScaler | LogisticRegression``, what River users run on numbers."""
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    predictions = []
    for record in records:
        predictions.append(model.predict_proba_one(record.features).get(True, 0.5))
        model.learn_one(record.features, bool(record.label))
    return logloss(np.array([r.label for r in records]), np.array(predictions))


@functools.cache
def drift_stream() -> list[TrainingRecord]:
    from river.datasets import synth

    return [
        TrainingRecord(features={f"x{j}": float(v) for j, v in x.items()}, label=float(y))
        for x, y in synth.Hyperplane(**DRIFT).take(DRIFT_RECORDS)
    ]


def running_scaled(x: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """The standardised values one record at a time: each by the mean and (population)
    variance of the labelled records before it; 0 before two of them or with no spread.
    ``x`` is NaN where a record lacks the feature."""
    out = np.zeros_like(x)
    count = np.zeros(x.shape[1])
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for t, row in enumerate(x):
        for j, value in enumerate(row):
            if np.isnan(value):
                continue
            if count[j] >= 2:
                mean = total[j] / count[j]
                variance = squares[j] / count[j] - mean * mean
                if variance > 1e-12 * squares[j] / count[j]:
                    out[t, j] = (value - mean) / np.sqrt(variance)
            if labelled[t]:
                count[j] += 1
                total[j] += value
                squares[j] += value * value
    return out


def numeric_stream(n: int = 700) -> tuple[np.ndarray, np.ndarray, list[TrainingRecord]]:
    """Numeric features of very different scales, some missing, every 9th record
    unlabelled; the raw values (NaN where missing), the labels and the records."""
    rng = np.random.default_rng(8)
    x = rng.normal(size=(n, 4)) * [1.0, 1e3, 1e-2, 5.0] + [0.0, 5e3, 1.0, -20.0]
    x[rng.random((n, 4)) < 0.1] = np.nan
    margin = np.nansum((x - [0.0, 5e3, 1.0, -20.0]) / [1.0, 1e3, 1e-2, 5.0] * [1, -1, 2, 0.5], 1)
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(float)
    y[::9] = np.nan
    records = [
        TrainingRecord(
            features={f"x{j}": float(v) for j, v in enumerate(row) if not np.isnan(v)},
            label=None if np.isnan(label) else float(label),
        )
        for row, label in zip(x, y, strict=True)
    ]
    return x, y, records


@pytest.mark.parametrize("batch_size", [1, 7, 1024])
def test_standardised_ftrl_is_sequential_ftrl_on_running_scaled_values(batch_size: int) -> None:
    x, y, records = numeric_stream()
    scaled = running_scaled(x, ~np.isnan(y))
    hyper = {"alpha": 0.3, "beta": 1.0, "l1": 0.5, "l2": 1.0}
    design = np.hstack([np.ones((len(x), 1)), scaled])  # the bias, then the features
    z = n = np.zeros(design.shape[1])
    expected = []
    for xt, yt in zip(design, y, strict=True):
        w = ftrl_weights(z, n, **hyper)
        expected.append(p := 1.0 / (1.0 + np.exp(-(xt @ w))))
        if not np.isnan(yt):
            z, n = ftrl_step(z, n, w, (p - yt) * xt, hyper["alpha"])
    model = FtrlLogisticRegression(buckets=2**16, numeric=[f"x{j}" for j in range(4)], **hyper)
    server = LocalParameterServer(model.params)
    got = [p.value for p in server.run(model, records, batch_size)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # The moments kept by the shards are the labelled records' count, sum and squares.
    assert model.scaler is not None
    for j, key in enumerate(model.scaler.keys):
        column = x[~np.isnan(y), j]
        column = column[~np.isnan(column)]
        moments = [len(column), column.sum(), (column * column).sum()]
        np.testing.assert_allclose(server.snapshot()[key], moments, rtol=1e-12)


@pytest.mark.parametrize("rule", ["sgd", "adagrad"])
def test_linear_regression_learns_record_by_record_with_either_rule(rule: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(600, 3))
    y = x @ [1.0, -2.0, 0.5] + 3.0 + rng.normal(0.0, 0.1, 600)
    records = [
        TrainingRecord(features={f"x{j}": float(v) for j, v in enumerate(row)}, label=float(t))
        for row, t in zip(x, y, strict=True)
    ]
    lr = 0.05
    w, acc = np.zeros(4), np.zeros(4)
    expected = []
    for xt, yt in zip(np.hstack([np.ones((600, 1)), x]), y, strict=True):
        expected.append(xt @ w)
        g = (xt @ w - yt) * xt
        if rule == "sgd":
            w = w - lr * g
        else:
            acc = acc + g * g
            w = w - lr * g / (np.sqrt(acc) + 1e-8)
    names = ["x0", "x1", "x2"]
    for batch_size in (1, 64, 1024):
        model = LinearRegression(lr=lr, rule=rule, numeric=names, standardize=False)
        predictions = LocalParameterServer(model.params).run(model, records, batch_size)
        np.testing.assert_allclose([p.value for p in predictions], expected, rtol=0, atol=1e-9)


def test_flights_at_batch_1024_learns_what_one_record_at_a_time_learns_and_beats_river() -> None:
    fields = list(flights(limit=FLIGHTS))
    records = [TrainingRecord(features=f["features"], label=f["label"]) for f in fields]
    hyper = DEFAULT_PARAMS["flights"]
    batched = run(hyper, records, 1024)
    one_at_a_time = ftrl_logloss(fields, alpha=0.3, crosses=FLIGHT_CROSSES).logloss
    river = river_logistic(fields, crosses=FLIGHT_CROSSES).logloss
    assert batched == pytest.approx(one_at_a_time, rel=1e-9)
    assert batched <= 1.01 * river, (batched, river)
    # Two logical workers, each blind to the other's current mini-batch: dealt round-robin,
    # each learns half of every day's flights at every airport, late; dealt by day and
    # airport (as kps train deals flights), each learns all of them, in order.
    assert run(hyper, records, 1024, workers=2) <= 1.04 * river
    grouped = run(hyper, records, 1024, workers=2, deal=by_flight_group)
    assert grouped <= 1.01 * river, (grouped, river)
    assert grouped <= 1.005 * one_at_a_time, (grouped, one_at_a_time)


def by_flight_group(i: int, record: TrainingRecord) -> int:
    return deal({"features": record.features}, i, 2, DATASETS["flights"].group_by)


def test_dealing_by_group_keeps_a_group_in_one_partition_and_the_rest_round_robin() -> None:
    group = ("month", "day")
    days = [{"features": {"month": "1", "day": str(d % 5), "x": str(d)}} for d in range(200)]
    for partitions in (2, 3):
        dealt = [deal(fields, i, partitions, group) for i, fields in enumerate(days)]
        by_day: dict[str, set[int]] = {}
        for fields, partition in zip(days, dealt, strict=True):
            by_day.setdefault(fields["features"]["day"], set()).add(partition)
        assert all(len(partitions_of_day) == 1 for partitions_of_day in by_day.values())
    assert [deal({"features": {"month": "1"}}, i, 3, group) for i in range(4)] == [0, 1, 2, 0]
    assert [deal({}, i, 2, ()) for i in range(3)] == [0, 1, 0]


def test_phishing_at_batch_1024_learns_what_one_record_at_a_time_learns_and_beats_river() -> None:
    records = [TrainingRecord(features=f["features"], label=f["label"]) for f in phishing()]
    hyper = DEFAULT_PARAMS["phishing"]
    assert hyper["numeric"] == list(PHISHING_FEATURES)
    batched, one_at_a_time = run(hyper, records, 1024), run(hyper, records, 1)
    river = river_scaled(records)
    assert batched == pytest.approx(one_at_a_time, rel=1e-9)
    assert batched <= 1.02 * river, (batched, river)
    # Without the scaling, the raw values cost FTRL more than River's scaler gives it.
    assert run({**hyper, "standardize": False}, records, 1024) > 1.1 * river


def test_a_drifting_numeric_stream_at_batch_1024_beats_river_with_two_workers() -> None:
    records = drift_stream()
    hyper = {"numeric": [f"x{j}" for j in range(DRIFT["n_features"])]}
    river = river_scaled(records)
    one_worker = run(hyper, records, 1024)
    two_workers = run(hyper, records, 1024, workers=2)
    assert one_worker <= 0.98 * river, (one_worker, river)
    assert two_workers <= 1.02 * river, (two_workers, river)
    # The staleness between the two: under 3% on 18,000 drifting records.
    assert two_workers <= 1.03 * one_worker, (two_workers, one_worker)


def test_a_drifting_numeric_stream_at_the_default_batch_stays_within_river_reach() -> None:
    """The issue's bar for the default mini-batch: two workers within 1.02 x River."""
    records = drift_stream()
    hyper = {"numeric": [f"x{j}" for j in range(DRIFT["n_features"])]}
    default = JobSettings.model_fields["batch_size"].default
    assert default > 1024  # else the test above says it all
    two_workers = run(hyper, records, default, workers=2)
    assert two_workers <= 1.02 * river_scaled(records), two_workers


def test_the_mlp_at_batch_1024_learns_what_it_learns_one_record_at_a_time() -> None:
    records = [
        TrainingRecord(dense=np.array(f["dense"]), label=f["label"])
        for f in flights_dense(limit=4_000)
    ]
    losses = []
    for batch in (1, 1024):
        model = make_model("mlp", n_inputs=FLIGHTS_DENSE_DIM)
        losses.append(
            progressive_logloss(LocalParameterServer(model.params).run(model, records, batch))
        )
    assert losses[1] == pytest.approx(losses[0], rel=1e-9)
