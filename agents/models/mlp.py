"""A one-hidden-layer perceptron on dense features (``record.dense``), trained with Adam.

``ŷ = out(w2 · act(W1 x + b1) + b2)`` with ``act`` tanh or ReLU and ``out`` the sigmoid
(classification, logloss) or the identity (regression, squared loss). Every tensor is
stored in blocks (:mod:`agents.models.dense`). A mini-batch pulls every block once,
predicts all its records with the pulled weights, and pushes one mean gradient per block
to an ``adam`` shard: Adam's state is not additive, so this model does not learn record
by record locally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    Task,
    TrainingRecord,
)
from kafka_ps.agents.models.dense import BlockedTensor
from kafka_ps.agents.models.hyper import one_of, positive, positive_int
from kafka_ps.agents.models.maths import sigmoid
from kafka_ps.agents.models.sparse import batch_labels
from kafka_ps.tables.init import Uniform, Zeros
from kafka_ps.tables.keys import DenseLayout
from kafka_ps.tables.update_rules import Adam

Activation = Literal["tanh", "relu"]


class Mlp(BatchWorkerLogic):
    """Inputs ``n_inputs`` -> ``hidden`` units -> one output.

    Parameters
    ----------
    n_inputs
        Length of every record's ``dense`` vector, >= 1.
    hidden
        Hidden units, >= 1.
    activation
        The hidden layer's activation, ``"tanh"`` or ``"relu"``.
    task
        ``"classification"`` (sigmoid output, logloss; labels > 0 are positive) or
        ``"regression"`` (identity output, squared loss).
    lr
        Adam's learning rate, > 0 (see :class:`~tables.update_rules.Adam`).
    block_size
        Elements per stored block (per key) of each tensor, >= 1.
    seed
        Global seed of the weights' Glorot-uniform initialiser, a non-negative int.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: int = 16,
        activation: Activation = "tanh",
        task: Task = "classification",
        lr: float = 0.01,
        block_size: int = 1024,
        seed: int = 0,
    ) -> None:
        self.n_inputs = positive_int("n_inputs", n_inputs)
        self.hidden = positive_int("hidden", hidden)
        self.activation = one_of("activation", activation, ("tanh", "relu"))
        self.task = one_of("task", task, ("classification", "regression"))
        positive_int("block_size", block_size)
        adam = Adam(lr=positive("lr", lr))

        def weights(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int) -> BlockedTensor:
            # Glorot/Xavier uniform, seeded by each block's key.
            scale = math.sqrt(6.0 / (fan_in + fan_out))
            return BlockedTensor(
                DenseLayout(name, shape, block_size), adam, Uniform(scale=scale, seed=seed)
            )

        def bias(name: str, size: int) -> BlockedTensor:
            return BlockedTensor(DenseLayout(name, (size,), block_size), adam, Zeros())

        self.tensors = (
            weights("fc1.weight", (self.hidden, self.n_inputs), self.n_inputs, self.hidden),
            bias("fc1.bias", self.hidden),
            weights("fc2.weight", (self.hidden,), self.hidden, 1),
            bias("fc2.bias", 1),
        )
        self.params: tuple[ParamSpec, ...] = tuple(t.spec for t in self.tensors)
        self.keys = [key for t in self.tensors for key in t.keys]

    def _inputs(self, records: Sequence[TrainingRecord]) -> np.ndarray:
        try:
            x = np.array([r.dense for r in records], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"dense features must be numbers: {error}") from error
        if x.shape != (len(records), self.n_inputs):
            raise ValueError(f"every record needs {self.n_inputs} dense features")
        if not np.isfinite(x).all():
            raise ValueError("dense features must be finite")
        return x

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        x = self._inputs(records)
        labels = batch_labels(records)
        pulled = await ps.pull_many(self.keys)
        w1, b1, w2, b2 = (t.join(pulled) for t in self.tensors)

        pre = x @ w1.T + b1
        h = np.tanh(pre) if self.activation == "tanh" else np.maximum(pre, 0.0)
        out = h @ w2 + b2
        y_hat = sigmoid(out) if self.task == "classification" else out
        for record, value in zip(records, y_hat.tolist(), strict=True):
            ps.output(Prediction(value, record.label, record.key))

        labelled = ~np.isnan(labels)
        n = int(labelled.sum())
        if n == 0:
            return
        y = labels if self.task == "regression" else (labels > 0).astype(np.float64)
        # d(loss)/d(out), for logloss after a sigmoid and for squared loss alike.
        d_out = np.where(labelled, y_hat - y, 0.0) / n
        d_h = np.outer(d_out, w2)
        d_pre = d_h * (1.0 - h * h) if self.activation == "tanh" else d_h * (pre > 0.0)
        gradients = (d_pre.T @ x, d_pre.sum(axis=0), h.T @ d_out, d_out.sum(keepdims=True))
        deltas: dict[bytes, np.ndarray] = {}
        for tensor, gradient in zip(self.tensors, gradients, strict=True):
            deltas.update(tensor.split(gradient))
        ps.push_many(deltas)
