"""Worker logics the integration tests load into learning processes by import path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    TrainingRecord,
)
from kafka_ps.tables.update_rules import make_rule

WEIGHTS = b"w:0"


class DenseSgd(BatchWorkerLogic):
    """Linear regression on dense features: one gradient per mini-batch, applied by the shard."""

    task = "regression"

    def __init__(self, dim: int = 4, lr: float = 0.01) -> None:
        self.dim = dim
        self.params = [ParamSpec("w", (dim,), make_rule("sgd", lr=lr))]

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        weights = (await ps.pull_many([WEIGHTS]))[WEIGHTS][0]
        gradient = np.zeros(self.dim)
        for record in records:
            assert record.dense is not None and record.label is not None
            prediction = float(weights @ record.dense)
            ps.output(Prediction(prediction, record.label))
            gradient += (prediction - record.label) * record.dense
        ps.push_many({WEIGHTS: gradient[None, :]})


class BuggySum(BatchWorkerLogic):
    """Sums ``label * dense`` into ``w`` (rule ``add``), so the learned ``w`` does not depend
    on how records are batched; misbehaves on records whose feature ``bug`` says how."""

    task = "regression"
    dim = 3
    params = (ParamSpec("w", (dim,), make_rule("add")),)

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        weights = (await ps.pull_many([WEIGHTS]))[WEIGHTS][0]
        delta = np.zeros(self.dim)
        for record in records:
            assert record.dense is not None and record.label is not None
            ps.output(Prediction(float(weights @ record.dense), record.label))
            bug = record.features.get("bug")
            if bug == "unknown_parameter":
                await ps.pull_many([b"nope:0"])
            elif bug == "wrong_shape":
                ps.push_many({WEIGHTS: np.ones((1, self.dim + 1))})
            elif bug == "non_finite_delta":
                delta[0] += np.inf
            elif bug == "model_error":
                raise ValueError("this logic cannot learn from this record")
            delta += record.label * record.dense
        ps.push_many({WEIGHTS: delta[None, :]})
