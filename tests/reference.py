"""Reference learners: sequential, one record at a time, pure numpy, no Kafka.

Tests and benchmarks hold the distributed models to these. Each predicts a record
before it learns from it (progressive validation), in the order given, and uses the
project's own hashing (:mod:`tables.keys`), initialisers (:mod:`tables.init`) and FTRL
maths (:mod:`tables.update_rules`), so that a distributed model can match it exactly.

Records are :class:`agents.api.TrainingRecord` objects or mappings with ``features`` and
``label`` (what :mod:`app.datasets` yields); every record needs a label. Sparse features
are categorical: ``name=value`` hashes to one bucket with value 1, whatever the value's
type. A bucket that several of a record's features hash to gets their sum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike

from kafka_ps.agents.api import Task, TrainingRecord
from kafka_ps.agents.metrics import losses
from kafka_ps.tables.init import Normal
from kafka_ps.tables.keys import hash_cross, hash_feature
from kafka_ps.tables.update_rules import ftrl_step, ftrl_weights

Record = TrainingRecord | Mapping[str, Any]
#: Logits are clipped to this magnitude before the sigmoid, as River does.
MAX_LOGIT = 35.0

_hash_feature = lru_cache(maxsize=1 << 20)(hash_feature)
_hash_cross = lru_cache(maxsize=1 << 20)(hash_cross)


def _features_label(record: Record) -> tuple[Mapping[str, Any], float]:
    if isinstance(record, TrainingRecord):
        features, label = record.features, record.label
    else:
        features, label = record.get("features") or {}, record.get("label")
    if label is None:
        raise ValueError("reference learners need a label on every record")
    return features, float(label)


def hashed_indices(
    features: Mapping[str, Any], buckets: int, crosses: Sequence[Sequence[str]] = ()
) -> list[int]:
    """Buckets of a record's features, then of its crosses (a cross whose parts are not
    all present is left out)."""
    indices = [_hash_feature(name, value, buckets) for name, value in features.items()]
    for cross in crosses:
        if all(name in features for name in cross):
            parts = tuple((name, features[name]) for name in cross)
            indices.append(_hash_cross(parts, buckets))
    return indices


def _unique(indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct indices and how often each occurs (the feature value of a bucket)."""
    if len(set(indices)) == len(indices):
        return np.array(indices, dtype=np.int64), np.ones(len(indices))
    unique, counts = np.unique(np.array(indices, dtype=np.int64), return_counts=True)
    return unique, counts.astype(np.float64)


def sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-MAX_LOGIT, min(MAX_LOGIT, logit))))


def _mean_loss(task: Task, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The mean loss as kafka-ps's own metrics score each prediction (:func:`losses`)."""
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean(losses(task, y, np.asarray(predictions, dtype=np.float64))))


def logloss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return _mean_loss("classification", labels, probabilities)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula; ties count half."""
    y = np.asarray(labels) > 0.5
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both classes")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # Give tied scores their mean rank.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def rmse(labels: np.ndarray, predictions: np.ndarray) -> float:
    return math.sqrt(_mean_loss("regression", labels, predictions))


@dataclass(frozen=True)
class Progressive:
    """Predictions made before learning from each record, and the records' labels."""

    predictions: np.ndarray
    labels: np.ndarray

    @property
    def logloss(self) -> float:
        return logloss(self.labels, self.predictions)

    @property
    def auc(self) -> float:
        return roc_auc(self.labels, self.predictions)

    @property
    def rmse(self) -> float:
        return rmse(self.labels, self.predictions)


@dataclass(frozen=True)
class LinearResult(Progressive):
    """A hashed linear model's progressive predictions and its final weights."""

    #: Non-zero weights by bucket.
    weights: dict[int, float]
    bias: float


def ftrl_logloss(
    records: Iterable[Record],
    alpha: float = 0.1,
    beta: float = 1.0,
    l1: float = 1.0,
    l2: float = 1.0,
    buckets: int = 1 << 20,
    crosses: Sequence[Sequence[str]] = (),
    bias: bool = True,
) -> LinearResult:
    """Per-coordinate FTRL-Proximal logistic regression (McMahan et al. 2013).

    The bias, if any, is one more FTRL coordinate with the same hyper-parameters.
    ``predictions`` are probabilities.
    """
    z = np.zeros(buckets + 1)  # slot ``buckets`` is the bias
    n = np.zeros(buckets + 1)
    predictions: list[float] = []
    labels: list[float] = []
    for record in records:
        features, label = _features_label(record)
        indices = hashed_indices(features, buckets, crosses)
        if bias:
            indices.append(buckets)
        idx, x = _unique(indices)
        zi, ni = z[idx], n[idx]
        w = ftrl_weights(zi, ni, alpha, beta, l1, l2)
        p = sigmoid(float(w @ x))
        z[idx], n[idx] = ftrl_step(zi, ni, w, (p - label) * x, alpha)
        predictions.append(p)
        labels.append(label)
    weights = ftrl_weights(z, n, alpha, beta, l1, l2)
    return LinearResult(
        predictions=np.array(predictions),
        labels=np.array(labels),
        weights={int(i): float(weights[i]) for i in np.flatnonzero(weights[:buckets])},
        bias=float(weights[buckets]),
    )


def sgd_linear(
    records: Iterable[Record],
    lr: float = 0.01,
    l2: float = 0.0,
    buckets: int = 1 << 20,
    crosses: Sequence[Sequence[str]] = (),
    loss: Literal["squared", "log"] = "squared",
    bias: bool = True,
) -> LinearResult:
    """Hashed linear model trained by plain SGD from zero weights.

    ``loss="squared"`` is linear regression; ``loss="log"`` is logistic regression, the
    same as River's ``LogisticRegression`` with its default ``SGD(lr)`` on one-hot features
    (up to hash collisions). Each step is ``w -= lr * (g x + l2 w)`` on the record's
    buckets; the bias is not regularised.
    """
    if loss not in ("squared", "log"):
        raise ValueError(f"loss must be 'squared' or 'log', got {loss!r}")
    w = np.zeros(buckets)
    b = 0.0
    predictions: list[float] = []
    labels: list[float] = []
    for record in records:
        features, label = _features_label(record)
        idx, x = _unique(hashed_indices(features, buckets, crosses))
        wi = w[idx]
        raw = float(wi @ x) + b
        prediction = sigmoid(raw) if loss == "log" else raw
        g = prediction - label  # d loss / d raw, for both losses
        w[idx] = wi - lr * (g * x + l2 * wi)
        if bias:
            b -= lr * g
        predictions.append(prediction)
        labels.append(label)
    return LinearResult(
        predictions=np.array(predictions),
        labels=np.array(labels),
        weights={int(i): float(w[i]) for i in np.flatnonzero(w)},
        bias=b,
    )


@dataclass(frozen=True)
class MfResult(Progressive):
    """Matrix factorisation's progressive predictions and its final parameters."""

    users: dict[str, np.ndarray]
    items: dict[str, np.ndarray]
    user_bias: dict[str, float]
    item_bias: dict[str, float]


def sequential_mf(
    records: Iterable[Record],
    k: int = 16,
    lr: float = 0.01,
    reg: float = 0.02,
    init_std: float = 0.1,
    seed: int = 0,
    biases: bool = True,
    global_mean: float = 0.0,
    dtype: DTypeLike = np.float64,
) -> MfResult:
    """Matrix factorisation by SGD: predict ``mean + b_u + b_i + p_u · q_i``, then learn.

    Records carry ``features["user"]`` and ``features["item"]``. A factor starts as
    ``Normal(init_std, seed)`` of key ``b"u:<user>"`` or ``b"i:<item>"`` and shape ``(k,)``
    in ``dtype``; biases start at zero. ``global_mean`` is a fixed offset (e.g. the mean
    rating), so that a distributed model can use the same one. With error
    ``e = y - prediction``, one step is::

        b_u += lr (e - reg b_u)            b_i += lr (e - reg b_i)
        p_u += lr (e q_i - reg p_u)        q_i += lr (e p_u - reg q_i)

    with both factor updates computed from the old factors.
    """
    init = Normal(init_std, seed)
    users: dict[str, np.ndarray] = {}
    items: dict[str, np.ndarray] = {}
    user_bias: dict[str, float] = {}
    item_bias: dict[str, float] = {}
    predictions: list[float] = []
    labels: list[float] = []
    for record in records:
        features, label = _features_label(record)
        user, item = str(features["user"]), str(features["item"])
        if user not in users:
            users[user] = init(f"u:{user}".encode(), (k,), dtype)
            user_bias[user] = 0.0
        if item not in items:
            items[item] = init(f"i:{item}".encode(), (k,), dtype)
            item_bias[item] = 0.0
        p, q = users[user], items[item]
        bu, bi = user_bias[user], item_bias[item]
        prediction = global_mean + float(p @ q) + (bu + bi if biases else 0.0)
        error = label - prediction
        users[user] = p + lr * (error * q - reg * p)
        items[item] = q + lr * (error * p - reg * q)
        if biases:
            user_bias[user] = bu + lr * (error - reg * bu)
            item_bias[item] = bi + lr * (error - reg * bi)
        predictions.append(prediction)
        labels.append(label)
    return MfResult(
        predictions=np.array(predictions),
        labels=np.array(labels),
        users=users,
        items=items,
        user_bias=user_bias,
        item_bias=item_bias,
    )


def river_logistic(records: Iterable[Record], crosses: Sequence[Sequence[str]] = ()) -> Progressive:
    """River's ``LogisticRegression`` (default SGD) on one-hot features plus crosses."""
    from river import linear_model

    model = linear_model.LogisticRegression()
    predictions: list[float] = []
    labels: list[float] = []
    for record in records:
        features, label = _features_label(record)
        x = {f"{name}={value}": 1.0 for name, value in features.items()}
        for cross in crosses:
            x["&".join(f"{name}={features[name]}" for name in cross)] = 1.0
        predictions.append(model.predict_proba_one(x).get(True, 0.5))
        model.learn_one(x, label > 0)
        labels.append(label)
    return Progressive(predictions=np.array(predictions), labels=np.array(labels))
