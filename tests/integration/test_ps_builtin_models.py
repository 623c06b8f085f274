"""Every built-in model, trained end to end through Kafka on real data, beats the base rate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import FLIGHTS_DENSE_DIM, RecordFields, flights, flights_dense
from kafka_ps.app.train import run_job

RECORDS = 20_000


def prior_loss(records: list[RecordFields], task: str) -> float:
    """Progressive loss of predicting the running mean of the labels seen so far."""
    labels = np.array([record["label"] for record in records], dtype=float)
    seen = np.arange(len(labels))
    running = np.concatenate([[labels[0]], np.cumsum(labels)[:-1] / np.maximum(seen[1:], 1)])
    if task == "classification":
        p = np.clip(running, 1e-3, 1 - 1e-3)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    return math.sqrt(float(np.mean((labels - running) ** 2)))


CASES: dict[str, tuple[str, dict[str, Any], Any]] = {
    "linear": (
        "regression",
        {"rule": "adagrad", "lr": 0.5},
        lambda: flights("regression", limit=RECORDS),
    ),
    "passive_aggressive": ("classification", {"C": 0.01}, lambda: flights(limit=RECORDS)),
    "mlp": (
        "classification",
        {"n_inputs": FLIGHTS_DENSE_DIM, "hidden": 16, "lr": 0.01},
        lambda: flights_dense(limit=RECORDS),
    ),
}


@pytest.mark.parametrize("model", sorted(CASES))
def test_builtin_model_learns_through_kafka(
    model: str, job_settings: JobSettings, tmp_path: Path
) -> None:
    task, params, stream = CASES[model]
    records = list(stream())
    settings = job_settings.model_copy(
        update={
            "partitions": 2,
            "shards": 2,
            "batch_size": 64,
            "model": model,
            "model_params": params,
        }
    )
    summary = run_job(settings, records, task, workers=1, servers=1, logs=tmp_path)
    assert summary.records == len(records)
    assert math.isfinite(summary.loss)
    assert summary.loss < prior_loss(records, task), (summary.loss, prior_loss(records, task))
