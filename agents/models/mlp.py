"""A one-hidden-layer perceptron on dense features (``record.dense``), trained with AdaGrad.

``ŷ = out(w2 · act(W1 x + b1) + b2)`` with ``act`` tanh or ReLU and ``out`` the sigmoid
(classification, logloss) or the identity (regression, squared loss). Every tensor is
stored in blocks (:mod:`agents.models.dense`). A mini-batch pulls every block, weights and
squared-gradient sums, once; learns record by record on its local copy, each record
predicted before its AdaGrad step (compiled, :func:`agents.models.kernels.mlp_pass`); and
pushes the accumulated ``(Δw, ΔG)`` of each block once to an ``adagrad_additive`` shard.
With one logical worker the model is the same whatever the batch size (docs/architecture.md,
"Learning quality versus batching"). AdaGrad, not Adam: its state is a sum, so pushes from
any number of workers merge.
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
from kafka_ps.agents.models.kernels import mlp_pass, warm_up_soon
from kafka_ps.agents.models.sparse import batch_labels
from kafka_ps.tables.init import Uniform, Zeros
from kafka_ps.tables.keys import DenseLayout
from kafka_ps.tables.update_rules import AdaGradAdditive

Activation = Literal["tanh", "relu"]
#: AdaGrad's default learning rate for this model.
LR = 0.05


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
        AdaGrad's learning rate, > 0: a step is ``lr g / (√G + eps)`` (see
        :class:`~tables.update_rules.AdaGradAdditive`).
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
        lr: float = LR,
        block_size: int = 1024,
        seed: int = 0,
    ) -> None:
        self.n_inputs = positive_int("n_inputs", n_inputs)
        self.hidden = positive_int("hidden", hidden)
        self.activation = one_of("activation", activation, ("tanh", "relu"))
        self.task = one_of("task", task, ("classification", "regression"))
        positive_int("block_size", block_size)
        self.lr = positive("lr", lr)
        adagrad = AdaGradAdditive(lr=self.lr)

        def weights(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int) -> BlockedTensor:
            # Glorot/Xavier uniform, seeded by each block's key.
            scale = math.sqrt(6.0 / (fan_in + fan_out))
            return BlockedTensor(
                DenseLayout(name, shape, block_size), adagrad, Uniform(scale=scale, seed=seed)
            )

        def bias(name: str, size: int) -> BlockedTensor:
            return BlockedTensor(DenseLayout(name, (size,), block_size), adagrad, Zeros())

        self.tensors = (
            weights("fc1.weight", (self.hidden, self.n_inputs), self.n_inputs, self.hidden),
            bias("fc1.bias", self.hidden),
            weights("fc2.weight", (self.hidden,), self.hidden, 1),
            bias("fc2.bias", 1),
        )
        self.params: tuple[ParamSpec, ...] = tuple(t.spec for t in self.tensors)
        self.keys = [key for t in self.tensors for key in t.keys]

    def open(self) -> None:
        warm_up_soon()

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
        weights0 = tuple(t.join(pulled) for t in self.tensors)
        sums0 = tuple(t.join(pulled, slot=1) for t in self.tensors)
        weights = tuple(w.copy() for w in weights0)
        sums = tuple(g.copy() for g in sums0)
        y_hat = mlp_pass(
            x,
            labels,
            weights,
            sums,
            self.lr,
            AdaGradAdditive.eps,
            self.activation == "tanh",
            self.task == "classification",
        )
        for record, value in zip(records, y_hat.tolist(), strict=True):
            ps.output(Prediction(value, record.label, record.key))
        if np.isnan(labels).all():
            return
        deltas: dict[bytes, np.ndarray] = {}
        for tensor, w, w0, g, g0 in zip(self.tensors, weights, weights0, sums, sums0, strict=True):
            deltas.update(tensor.split(w - w0, g - g0))
        ps.push_many(deltas)
