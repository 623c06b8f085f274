"""PA-I binary classifier (Crammer et al., "Online Passive-Aggressive Algorithms", 2006).

Labels > 0 are +1, others -1. Per record with margin ``m = w · x`` and hinge loss
``l = max(0, 1 - y m)``, PA-I steps ``w += τ y x`` with ``τ = min(C, l / ‖x‖²)``. The
model learns record by record on its local copy of the pulled weights and pushes the
accumulated change once per key to an ``add`` shard.

PA predicts the sign of the margin; :class:`~agents.api.Prediction` ``value`` is
``1 / (1 + exp(-m))`` so that probability metrics such as logloss are defined, and
``extra["margin"]`` carries ``m``. That value is a squashed margin, not a calibrated
probability.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from kafka_ps.agents.api import BatchParameterServerClient, Prediction, Task, TrainingRecord
from kafka_ps.agents.models.hashed import HashedLinearModel
from kafka_ps.agents.models.hyper import positive
from kafka_ps.agents.models.maths import logistic
from kafka_ps.agents.models.sparse import SparseBatch
from kafka_ps.tables.update_rules import Add


class PassiveAggressive(HashedLinearModel):
    """PA-I with aggressiveness ``C``: the largest step any one record may take.

    Parameters
    ----------
    C
        Aggressiveness, > 0: the step ``τ = min(C, l / ‖x‖²)`` never exceeds it. Smaller
        values learn more cautiously from noisy labels; 1 by default.
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
        C: float = 1.0,
        buckets: int = 2**20,
        crosses: Collection[Sequence[str]] = (),
        numeric: Collection[str] = (),
        standardize: bool = True,
    ) -> None:
        self.C = positive("C", C)
        super().__init__(Add(), buckets, crosses, numeric, standardize)

    def learn(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        w0 = state[:, 0]
        w = w0.copy()
        for r, record in enumerate(records):
            idx, x = batch.row(r)
            margin = float(w[idx] @ x)
            ps.output(Prediction(logistic(margin), record.label, record.key, {"margin": margin}))
            label = batch.labels[r]
            if np.isnan(label):
                continue
            y = 1.0 if label > 0 else -1.0
            loss = 1.0 - y * margin
            if loss > 0.0:
                # ‖x‖² >= 1: the bias feature is always there.
                tau = min(self.C, loss / float(x @ x))
                w[idx] += tau * y * x
        return w - w0
