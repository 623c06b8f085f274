"""Logistic regression on hashed sparse features, trained with FTRL-Proximal.

Mini-batching the communication, not the learning (docs/architecture.md, "Learning
quality versus batching"): the mini-batch's keys are pulled once, the model learns record
by record on its local copy of FTRL's ``z`` and ``n``, and the accumulated ``(Δz, Δn)`` is
pushed once per key to an ``ftrl_additive`` shard, which sums pushes from any number of
workers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from kafka_ps.agents.api import BatchParameterServerClient, Task, TrainingRecord, predictions
from kafka_ps.agents.models.hashed import HashedLinearModel
from kafka_ps.agents.models.hyper import non_negative, positive
from kafka_ps.agents.models.kernels import ftrl_logistic_pass
from kafka_ps.agents.models.sparse import SparseBatch
from kafka_ps.tables.update_rules import FtrlAdditive


class FtrlLogisticRegression(HashedLinearModel):
    """Binary classifier; labels > 0 are positive. Predicts P(positive) for every record.

    Parameters
    ----------
    alpha
        FTRL-Proximal's learning rate, > 0 (see :class:`~tables.update_rules.Ftrl`). The
        default 0.3 learned better than 0.1 one record at a time on flights, phishing and
        a drifting numeric stream, and within 2% of 0.5 on each (docs/architecture.md,
        "Learning quality versus batching").
    beta
        FTRL-Proximal's smoothing, >= 0.
    l1
        L1 regularisation, >= 0; larger values keep more weights exactly 0.
    l2
        L2 regularisation, >= 0.
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

    task: Task = "classification"

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 1.0,
        l1: float = 1.0,
        l2: float = 1.0,
        buckets: int = 2**20,
        crosses: Collection[Sequence[str]] = (),
        numeric: Collection[str] = (),
        standardize: bool = True,
    ) -> None:
        self.alpha = positive("alpha", alpha)
        self.beta = non_negative("beta", beta)
        self.l1 = non_negative("l1", l1)
        self.l2 = non_negative("l2", l2)
        rule = FtrlAdditive(alpha=self.alpha, beta=self.beta, l1=self.l1, l2=self.l2)
        super().__init__(rule, buckets, crosses, numeric, standardize)

    def learn(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        z0, n0 = state[:, 1], state[:, 2]  # the slots are w, z, n
        z, n = z0.copy(), n0.copy()
        hyper = (self.alpha, self.beta, self.l1, self.l2)
        # Record by record, compiled (agents/models/kernels.py); tests/unit/test_kernels.py
        # holds the numpy loop it must equal.
        probabilities = ftrl_logistic_pass(
            batch.indices, batch.values, batch.indptr, batch.labels, z, n, *hyper
        )
        for prediction in predictions(probabilities.tolist(), records):
            ps.output(prediction)
        return np.stack([z - z0, n - n0], axis=1)  # (Δz, Δn) per key
