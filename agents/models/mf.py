"""Online matrix factorisation for ratings (biased MF, as in Koren et al. 2009).

``r̂(u, i) = mean + b_u + b_i + p_u · q_i``, with parameters ``u:<user>`` (``p_u``),
``i:<item>`` (``q_i``), ``ub:<user>`` and ``ib:<item>`` (the biases), the user and item
read from ``record.features["user"]`` and ``["item"]`` as text (so ``7`` and ``"7"`` are
the same user, ``7.0`` is not). Factors start as ``Normal(0, init_std²)`` seeded by key,
biases at zero; ``mean`` is a fixed hyper-parameter, not learnt.

The model learns record by record with regularised SGD on its local copy of the pulled
rows and pushes the accumulated change of each row once to an ``add`` shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    Task,
    TrainingRecord,
)
from kafka_ps.agents.models.hyper import finite, non_negative, positive, positive_int
from kafka_ps.agents.models.sparse import batch_labels
from kafka_ps.tables.init import Normal
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import Add


def _entity(record: TrainingRecord, feature: str) -> str:
    value = record.features.get(feature)
    if value is None:
        raise ValueError(f"a rating record needs a {feature!r} feature")
    return str(value)


class _Rows:
    """A local copy of pulled rows: the factors and biases of some users, or of some items."""

    def __init__(
        self, factor_keys: list[bytes], bias_keys: list[bytes], pulled: dict[bytes, np.ndarray]
    ) -> None:
        self.factor_keys = factor_keys
        self.bias_keys = bias_keys
        self.factors0 = np.stack([pulled[key][0] for key in factor_keys])
        self.biases0 = np.array([pulled[key][0, 0] for key in bias_keys])
        self.factors = self.factors0.copy()
        self.biases = self.biases0.copy()

    def deltas(self) -> dict[bytes, np.ndarray]:
        """The accumulated change of every row that changed, shaped for an ``add`` push."""
        d_factors = self.factors - self.factors0
        d_biases = self.biases - self.biases0
        out = {self.factor_keys[j]: d_factors[j][None] for j in np.flatnonzero(d_factors.any(1))}
        out.update({self.bias_keys[j]: d_biases[j].reshape(1, 1) for j in np.flatnonzero(d_biases)})
        return out


class MatrixFactorisation(BatchWorkerLogic):
    """Rating regression; ``clip`` bounds the emitted prediction (``None``: no bound).

    Parameters
    ----------
    k
        Latent factors per user and per item, >= 1.
    lr
        SGD step size per rating, > 0.
    reg
        L2 regularisation of factors and biases, >= 0.
    mean
        The fixed global mean rating the biases and factors correct; 3.5 suits MovieLens.
    init_std
        Standard deviation of the initial factors (``Normal``, seeded by key), >= 0.
    seed
        Global seed of that initialiser, a non-negative int.
    clip
        ``(low, high)`` with ``low < high``: the emitted prediction is clipped into it (the
        default ``(1.0, 5.0)`` is MovieLens's star range); None for no bound. Learning uses
        the unclipped estimate.
    """

    task: Task = "regression"

    def __init__(
        self,
        k: int = 10,
        lr: float = 0.01,
        reg: float = 0.02,
        mean: float = 3.5,
        init_std: float = 0.1,
        seed: int = 0,
        clip: tuple[float, float] | None = (1.0, 5.0),
    ) -> None:
        self.k = positive_int("k", k)
        self.lr = positive("lr", lr)
        self.reg = non_negative("reg", reg)
        self.mean = finite("mean", mean)
        if clip is not None:
            low, high = finite("clip[0]", clip[0]), finite("clip[1]", clip[1])
            if low >= high:
                raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
            clip = (low, high)
        self.clip = clip
        factors = Normal(std=init_std, seed=seed)
        self.params = (
            ParamSpec("u", (self.k,), Add(), factors),
            ParamSpec("i", (self.k,), Add(), factors),
            ParamSpec("ub", (1,), Add()),
            ParamSpec("ib", (1,), Add()),
        )

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        user_pos: dict[str, int] = {}
        item_pos: dict[str, int] = {}
        pairs = [
            (
                user_pos.setdefault(_entity(r, "user"), len(user_pos)),
                item_pos.setdefault(_entity(r, "item"), len(item_pos)),
            )
            for r in records
        ]
        labels = batch_labels(records)
        user_keys = [param_key("u", u) for u in user_pos], [param_key("ub", u) for u in user_pos]
        item_keys = [param_key("i", i) for i in item_pos], [param_key("ib", i) for i in item_pos]
        pulled = await ps.pull_many([*user_keys[0], *user_keys[1], *item_keys[0], *item_keys[1]])
        users = _Rows(*user_keys, pulled)
        items = _Rows(*item_keys, pulled)
        lr, reg = self.lr, self.reg
        low, high = self.clip or (-math.inf, math.inf)
        for (a, b), record, y in zip(pairs, records, labels.tolist(), strict=True):
            p, q = users.factors[a].copy(), items.factors[b].copy()
            estimate = self.mean + users.biases[a] + items.biases[b] + float(p @ q)
            ps.output(Prediction(min(max(estimate, low), high), record.label, record.key))
            if math.isnan(y):
                continue
            error = y - estimate
            users.factors[a] += lr * (error * q - reg * p)
            items.factors[b] += lr * (error * p - reg * q)
            users.biases[a] += lr * (error - reg * users.biases[a])
            items.biases[b] += lr * (error - reg * items.biases[b])
        ps.push_many(users.deltas() | items.deltas())
