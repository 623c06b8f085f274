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
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import make_rule

WEIGHTS = b"w:0"


def squared_loss_gradient(
    weights: np.ndarray, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
) -> np.ndarray:
    """The mini-batch's gradient of the squared loss at ``weights``; each prediction output."""
    gradient = np.zeros(len(weights))
    for record in records:
        assert record.dense is not None and record.label is not None
        prediction = float(weights @ record.dense)
        ps.output(Prediction(prediction, record.label))
        gradient += (prediction - record.label) * record.dense
    return gradient


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
        ps.push_many({WEIGHTS: squared_loss_gradient(weights, records, ps)[None, :]})


class SpreadSgd(DenseSgd):
    """:class:`DenseSgd` with each weight a key of its own (``w:0``..), so that a mini-batch
    pulls from several shards at once."""

    def __init__(self, dim: int = 4, lr: float = 0.01) -> None:
        self.dim = dim
        self.params = [ParamSpec("w", (1,), make_rule("sgd", lr=lr))]
        self.keys = [param_key("w", i) for i in range(dim)]

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        pulled = await ps.pull_many(self.keys)
        weights = np.array([float(pulled[key].ravel()[0]) for key in self.keys])
        gradient = squared_loss_gradient(weights, records, ps)
        ps.push_many({key: np.array([g]) for key, g in zip(self.keys, gradient, strict=True)})


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
