"""Linear regression (squared loss) on hashed sparse features.

Two ways to learn, both predicting every record before learning from it:

- ``local_sgd=True`` (default): learn record by record on the local copy of the pulled
  weights (and, for AdaGrad, of its squared-gradient sums) and push the accumulated change
  once, to an ``add`` shard for SGD or an ``adagrad_additive`` one for AdaGrad. Later
  records of a mini-batch see what earlier ones taught, so with one logical worker the
  model is the same whatever the batch size (docs/architecture.md, "Learning quality
  versus batching").
- ``local_sgd=False``: predict the whole mini-batch with the pulled weights, sum the
  gradients ``(ŷ - y) x`` per key over the mini-batch and push them once to an ``sgd`` or
  ``adagrad`` shard, which takes the step: plain mini-batch SGD with summed (not
  averaged) gradients, so ``lr`` is per record. Under BSP it is exactly synchronous
  mini-batch SGD.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np

from kafka_ps.agents.api import BatchParameterServerClient, Prediction, Task, TrainingRecord
from kafka_ps.agents.models.hashed import HashedLinearModel
from kafka_ps.agents.models.hyper import one_of, positive
from kafka_ps.agents.models.kernels import linear_pass
from kafka_ps.agents.models.sparse import SparseBatch
from kafka_ps.tables.update_rules import AdaGrad, AdaGradAdditive, Add, Sgd, UpdateRule


class LinearRegression(HashedLinearModel):
    """Least-squares regression; unlabelled records are predicted only.

    Parameters
    ----------
    lr
        Step size per record, > 0. Mini-batch gradients are summed, not averaged, so it
        does not depend on the batch size.
    rule
        The step: ``"sgd"`` (``w -= lr g``) or ``"adagrad"``
        (:class:`~tables.update_rules.AdaGrad` with this ``lr``).
    local_sgd
        Take the steps record by record on the local copy of the pulled state and push the
        accumulated change (True, the default); False pushes one summed gradient per
        mini-batch, and the shard takes the step.
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
    standardize
        Standardise each numeric feature online by the running mean and variance of the
        records learned before (:mod:`agents.models.scaling`), as River's
        ``StandardScaler`` does; True by default. Without it, a numeric feature's weight
        is learned on its raw value.
    """

    task: Task = "regression"

    def __init__(
        self,
        lr: float = 0.01,
        rule: Literal["sgd", "adagrad"] = "sgd",
        local_sgd: bool = True,
        buckets: int = 2**20,
        crosses: Collection[Sequence[str]] = (),
        numeric: Collection[str] = (),
        standardize: bool = True,
    ) -> None:
        self.lr = positive("lr", lr)
        self.adagrad = one_of("rule", rule, ("sgd", "adagrad")) == "adagrad"
        self.local_sgd = bool(local_sgd)
        server_rule: UpdateRule
        if self.adagrad:
            server_rule = AdaGradAdditive(lr=self.lr) if self.local_sgd else AdaGrad(lr=self.lr)
        else:
            server_rule = Add() if self.local_sgd else Sgd(lr=self.lr)
        super().__init__(server_rule, buckets, crosses, numeric, standardize)

    def learn(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        if self.local_sgd:
            return self._learn_locally(records, batch, state, ps)
        return self._batch_gradient(records, batch, state[:, 0], ps)

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
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        """Steps record by record on a copy of the pulled state (compiled,
        agents/models/kernels.py); the change: ``Δw``, or ``(Δw, ΔG)`` for AdaGrad."""
        w0 = state[:, 0]
        acc0 = state[:, 1] if self.adagrad else np.zeros_like(w0)
        w, acc = w0.copy(), acc0.copy()
        predictions = linear_pass(
            batch.indices,
            batch.values,
            batch.indptr,
            batch.labels,
            w,
            acc,
            self.lr,
            AdaGradAdditive.eps,
            self.adagrad,
        )
        for y_hat, record in zip(predictions.tolist(), records, strict=True):
            ps.output(Prediction(y_hat, record.label, record.key))
        if self.adagrad:
            return np.stack([w - w0, acc - acc0], axis=1)
        return w - w0
