"""Worker logics the integration tests load into worker processes by import path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    TrainingRecord,
)
from tables.update_rules import make_rule

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
