"""Linear regression (squared loss) on hashed sparse features.

Two ways to learn, both predicting every record before learning from it:

- mini-batch (default): predict the whole mini-batch with the pulled weights, sum the
  gradients ``(ŷ - y) x`` per key over the mini-batch and push them once to an ``sgd`` or
  ``adagrad`` shard, which takes the step. Vectorised over the mini-batch; it is plain
  mini-batch SGD with summed (not averaged) gradients, so ``lr`` is per record.
- ``local_sgd=True``: learn record by record on the local copy of the weights, with
  step ``lr``, and push the accumulated change to an ``add`` shard. Later records of a
  mini-batch then see what earlier ones taught (see docs/architecture.md,
  "Learning quality versus batching").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from kafka_ps.agents.api import BatchParameterServerClient, Prediction, Task, TrainingRecord
from kafka_ps.agents.models.hashed import HashedLinearModel
from kafka_ps.agents.models.hyper import one_of, positive
from kafka_ps.agents.models.sparse import SparseBatch
from kafka_ps.tables.update_rules import AdaGrad, Add, Sgd, UpdateRule


class LinearRegression(HashedLinearModel):
    """Least-squares regression; unlabelled records are predicted only.

    Parameters
    ----------
    lr
        Step size per record, > 0. Mini-batch gradients are summed, not averaged, so it
        does not depend on the batch size.
    rule
        The shard's rule when learning by mini-batch: ``"sgd"`` (``w -= lr g``) or
        ``"adagrad"`` (:class:`~tables.update_rules.AdaGrad` with this ``lr``).
    local_sgd
        Learn record by record on the local copy of the weights with step ``lr`` and push
        the accumulated change to an ``add`` shard; needs ``rule="sgd"``. False by default
        (one summed gradient per mini-batch).
    buckets
        Hash buckets of parameter ``w`` (keys ``w:0`` to ``w:<buckets - 1>``, plus
        ``w:bias``), >= 1; the default 2**20 keeps collisions rare for millions of distinct
        features.
    crosses
        Feature crosses, each a non-empty sequence of feature names; a record holding all
        of them gets one extra categorical feature per cross. None by default.
    numeric
        Names of features that hash by name alone and carry their numeric value; every
        other feature is categorical (``name=value`` with value 1). None by default.
    """

    task: Task = "regression"

    def __init__(
        self,
        lr: float = 0.01,
        rule: Literal["sgd", "adagrad"] = "sgd",
        local_sgd: bool = False,
        buckets: int = 2**20,
        crosses: Collection[Sequence[str]] = (),
        numeric: Collection[str] = (),
    ) -> None:
        self.lr = positive("lr", lr)
        one_of("rule", rule, ("sgd", "adagrad"))
        if local_sgd and rule != "sgd":
            raise ValueError("local_sgd pushes plain SGD deltas; it cannot use rule 'adagrad'")
        self.local_sgd = bool(local_sgd)
        server_rule: UpdateRule
        if self.local_sgd:
            server_rule = Add()
        elif rule == "sgd":
            server_rule = Sgd(lr=self.lr)
        else:
            server_rule = AdaGrad(lr=self.lr)
        super().__init__(server_rule, buckets, crosses, numeric)

    def learn(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        w0 = state[:, 0]
        if self.local_sgd:
            return self._learn_locally(records, batch, w0, ps) - w0
        return self._batch_gradient(records, batch, w0, ps)

    def _batch_gradient(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        w: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        """Predict with the pulled weights; the summed gradient per key."""
        predictions = batch.margins(w)
        for record, y_hat in zip(records, predictions.tolist(), strict=True):
            ps.output(Prediction(y_hat, record.label, record.key))
        residuals = np.nan_to_num(predictions - batch.labels, nan=0.0)
        return batch.feature_sums(residuals)

    def _learn_locally(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        w0: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        """SGD record by record on a copy of the pulled weights; the final weights."""
        w = w0.copy()
        for r, record in enumerate(records):
            idx, x = batch.row(r)
            y_hat = float(w[idx] @ x)
            ps.output(Prediction(y_hat, record.label, record.key))
            y = batch.labels[r]
            if not np.isnan(y):
                w[idx] -= self.lr * (y_hat - y) * x
        return w
