"""One progressive loss: the workers' metrics, the job's summary and the reference learners
score predictions alike."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.api import Prediction, Task
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app import train
from kafka_ps.tables.reals import is_real
from tests.reference import logloss, rmse


def message(partition: int, offsets: list[int], labels: list[Any], values: list[Any]) -> Any:
    body = {
        "partition": partition,
        "offsets": offsets,
        "indexes": [None] * len(offsets),
        "keys": [None] * len(offsets),
        "labels": labels,
        "values": values,
    }
    return SimpleNamespace(value=lambda: json.dumps(body).encode())


def one_by_one(task: Task, scored: list[tuple[float, float]]) -> tuple[float, float | None]:
    """The summary's loss and accuracy as it computed them before the metrics served it."""
    loss, correct = 0.0, 0
    for y, p in scored:
        if task == "classification":
            q = min(max(p, 1e-15), 1 - 1e-15)
            loss -= y * math.log(q) + (1 - y) * math.log(1 - q)
            correct += int((p >= 0.5) == (y >= 0.5))
        else:
            loss += (p - y) ** 2
    mean = loss / len(scored)
    if task == "classification":
        return mean, correct / len(scored)
    return math.sqrt(mean), None


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_summary_scores_each_record_once_as_the_workers_do(
    task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    labels: list[float | None] = [float(v) for v in rng.integers(0, 2, 40)]
    values: list[Any] = [float(v) for v in rng.uniform(0, 1, 40)]
    values[3], values[5], labels[9] = True, {"top": [1]}, None  # not scored
    values[7] = 0.0  # a sure miss, or hit, clipped
    first = message(0, list(range(20)), labels[:20], values[:20])
    again = message(0, list(range(10, 20)), labels[10:20], values[10:20])  # after a takeover
    second = message(1, list(range(20)), labels[20:], values[20:])
    monkeypatch.setattr(train, "read_all", lambda *args: iter([first, again, second]))
    monkeypatch.setattr(train, "SCORE_EVERY", 16)  # several numpy calls

    count, loss, accuracy = train.read_predictions(JobSettings(), task)

    pairs = zip(labels, values, strict=True)
    scored = [(y, p) for y, p in pairs if y is not None and is_real(p)]
    expected_loss, expected_accuracy = one_by_one(task, scored)
    assert count == len(scored) == 37
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert accuracy == expected_accuracy


@pytest.mark.parametrize(("task", "accuracy"), [("classification", 0.0), ("regression", None)])
def test_a_summary_with_nothing_scored_has_a_loss_of_0(
    task: Task, accuracy: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    unlabelled = message(0, [0, 1], [None, None], [0.5, 0.5])
    monkeypatch.setattr(train, "read_all", lambda *args: iter([unlabelled]))
    assert train.read_predictions(JobSettings(), task) == (0, 0.0, accuracy)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_reference_learners_score_as_the_workers_do(task: Task) -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 1000).astype(np.float64)
    values = rng.uniform(0, 1, 1000)
    values[:3] = [0.0, 1.0, 1e-20]  # clipped alike
    metrics = ProgressiveMetrics(task)
    metrics.add_all(Prediction(float(v), float(y)) for v, y in zip(values, labels, strict=True))
    reference = logloss if task == "classification" else rmse
    assert reference(labels, values) == metrics.loss
