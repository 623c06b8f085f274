"""Logistic regression on hashed sparse features, trained with FTRL-Proximal.

Mini-batching the communication, not the learning (DESIGN.md, "Learning quality versus
batching"): the mini-batch's keys are pulled once, the model learns record by record on
its local copy of FTRL's ``z`` and ``n``, and the accumulated ``(Δz, Δn)`` is pushed once
per key to an ``ftrl_additive`` shard, which sums pushes from any number of workers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    Task,
    TrainingRecord,
)
from agents.models.hyper import non_negative, positive
from agents.models.maths import logistic
from agents.models.sparse import make_hasher
from tables.update_rules import FtrlAdditive, ftrl_step, ftrl_weights


class FtrlLogisticRegression(BatchWorkerLogic):
    """Binary classifier; labels > 0 are positive. Predicts P(positive) for every record."""

    task: Task = "classification"

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        l1: float = 1.0,
        l2: float = 1.0,
        buckets: int = 2**20,
        crosses: Collection[Sequence[str]] = (),
        numeric: Collection[str] = (),
    ) -> None:
        self.alpha = positive("alpha", alpha)
        self.beta = non_negative("beta", beta)
        self.l1 = non_negative("l1", l1)
        self.l2 = non_negative("l2", l2)
        self.hasher = make_hasher(buckets, crosses, numeric)
        rule = FtrlAdditive(alpha=self.alpha, beta=self.beta, l1=self.l1, l2=self.l2)
        self.params = (ParamSpec("w", (1,), rule),)

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        batch = self.hasher.encode(records)
        pulled = await ps.pull_many(batch.keys)
        state = np.stack([pulled[key] for key in batch.keys])  # (keys, 3 slots: w z n, 1)
        z0, n0 = state[:, 1, 0], state[:, 2, 0]
        z, n = z0.copy(), n0.copy()
        hyper = (self.alpha, self.beta, self.l1, self.l2)
        for r, record in enumerate(records):
            idx, x = batch.row(r)
            zi, ni = z[idx], n[idx]
            w = ftrl_weights(zi, ni, *hyper)
            p = logistic(float(w @ x))
            ps.output(Prediction(p, record.label, record.key))
            y = batch.labels[r]
            if np.isnan(y):
                continue
            g = (p - float(y > 0)) * x
            z[idx], n[idx] = ftrl_step(zi, ni, w, g, self.alpha)
        delta = np.stack([z - z0, n - n0], axis=1)[:, :, None]  # (keys, 2, 1)
        changed = np.flatnonzero(delta.any(axis=(1, 2)))
        ps.push_many({batch.keys[j]: delta[j] for j in changed})
