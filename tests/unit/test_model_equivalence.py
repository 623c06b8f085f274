"""With one worker, the parameter server computes what plain sequential numpy computes.

Numeric features are taken raw here (``standardize=False``); tests/unit/test_batching.py
holds the standardised models to their own sequential reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.local import LocalParameterServer
from kafka_ps.agents.models import FtrlLogisticRegression, LinearRegression
from kafka_ps.tables.update_rules import ftrl_step, ftrl_weights

NAMES = [f"x{j}" for j in range(5)]
LR = 0.02


def regression_stream(n: int = 600) -> tuple[np.ndarray, np.ndarray, list[TrainingRecord]]:
    """Numeric features, and the design matrix with its bias column; every 7th unlabelled."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, len(NAMES)))
    y = x @ rng.normal(size=len(NAMES)) + 1.5 + rng.normal(0.0, 0.1, n)
    y[::7] = np.nan
    records = [
        TrainingRecord(
            features=dict(zip(NAMES, x[t].tolist(), strict=True)),
            label=None if np.isnan(y[t]) else float(y[t]),
        )
        for t in range(n)
    ]
    return np.hstack([np.ones((n, 1)), x]), y, records


def model_weights(model: LinearRegression, server: LocalParameterServer) -> np.ndarray:
    snapshot = server.snapshot()
    keys = [model.hasher.bias_key, *(model.hasher.feature_key(name) for name in NAMES)]
    assert len(set(keys)) == len(keys)
    return np.array([snapshot[key][0] for key in keys])


@pytest.mark.parametrize("batch_size", [1, 16, 50])
def test_mini_batch_sgd_equals_numpy(batch_size: int) -> None:
    design, y, records = regression_stream()
    model = LinearRegression(
        lr=LR, rule="sgd", local_sgd=False, buckets=2**16, numeric=NAMES, standardize=False
    )
    server = LocalParameterServer(model.params)
    predictions = [p.value for p in server.run(model, records, batch_size)]

    w = np.zeros(design.shape[1])
    expected: list[float] = []
    for start in range(0, len(records), batch_size):
        xb, yb = design[start : start + batch_size], y[start : start + batch_size]
        y_hat = xb @ w
        expected.extend(y_hat.tolist())
        labelled = ~np.isnan(yb)
        w = w - LR * xb[labelled].T @ (y_hat[labelled] - yb[labelled])

    np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model_weights(model, server), w, rtol=0, atol=1e-12)


def test_local_sgd_equals_sequential_sgd_whatever_the_batch_size() -> None:
    design, y, records = regression_stream()
    w = np.zeros(design.shape[1])
    expected = []
    for xt, yt in zip(design, y, strict=True):
        expected.append(xt @ w)
        if not np.isnan(yt):
            w = w - LR * (xt @ w - yt) * xt
    for batch_size in (1, 64):
        model = LinearRegression(lr=LR, buckets=2**16, numeric=NAMES, standardize=False)
        server = LocalParameterServer(model.params)
        predictions = [p.value for p in server.run(model, records, batch_size)]
        np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(model_weights(model, server), w, rtol=0, atol=1e-12)


def test_ftrl_learns_record_by_record_whatever_the_batch_size() -> None:
    """Pull once, learn locally, push (Δz, Δn) once: the same model as one record at a time."""
    design, y, records = regression_stream()
    labels = (y > 1.5).astype(np.float64)
    records = [
        TrainingRecord(features=r.features, label=float(label))
        for r, label in zip(records, labels, strict=True)
    ]
    hyper: dict[str, Any] = {"alpha": 0.1, "beta": 1.0, "l1": 1.0, "l2": 1.0}
    z = n = np.zeros(design.shape[1])
    expected = []
    for xt, yt in zip(design, labels, strict=True):
        w = ftrl_weights(z, n, **hyper)
        p = 1.0 / (1.0 + np.exp(-(xt @ w)))
        expected.append(p)
        z, n = ftrl_step(z, n, w, (p - yt) * xt, hyper["alpha"])
    for batch_size in (1, 100):
        model = FtrlLogisticRegression(buckets=2**16, numeric=NAMES, standardize=False, **hyper)
        predictions = LocalParameterServer(model.params).run(model, records, batch_size)
        np.testing.assert_allclose([p.value for p in predictions], expected, rtol=0, atol=1e-12)
