"""Compiled per-record learning loops (numba): the same arithmetic as the numpy references
(:func:`tables.update_rules.ftrl_weights` and :func:`~tables.update_rules.ftrl_step`; the
steps :class:`~tables.update_rules.Sgd` and :class:`~tables.update_rules.AdaGrad` take),
without a Python round trip per record. ``tests/unit/test_kernels.py`` holds them equal to
the reference to 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kafka_ps.agents.models.maths import MAX_MARGIN


@njit(cache=True, nogil=True)
def ftrl_logistic_pass(
    indices: np.ndarray,
    values: np.ndarray,
    indptr: np.ndarray,
    labels: np.ndarray,
    z: np.ndarray,
    n: np.ndarray,
    alpha: float,
    beta: float,
    l1: float,
    l2: float,
) -> np.ndarray:  # pragma: no cover - compiled; tested against the reference
    """Predict each CSR row, then learn it, updating ``z`` and ``n`` in place; a NaN label
    is predicted only. Returns P(positive) per row."""
    rows = len(indptr) - 1
    out = np.empty(rows)
    for r in range(rows):
        start, stop = indptr[r], indptr[r + 1]
        margin = 0.0
        for k in range(start, stop):
            j = indices[k]
            zj = z[j]
            if abs(zj) > l1:
                shrunk = zj - l1 if zj > 0 else zj + l1
                margin += -shrunk / ((beta + math.sqrt(n[j])) / alpha + l2) * values[k]
        margin = min(max(margin, -MAX_MARGIN), MAX_MARGIN)
        p = 1.0 / (1.0 + math.exp(-margin))
        out[r] = p
        y = labels[r]
        if math.isnan(y):
            continue
        error = p - (1.0 if y > 0 else 0.0)
        for k in range(start, stop):
            j = indices[k]
            zj, nj = z[j], n[j]
            w = 0.0
            if abs(zj) > l1:
                shrunk = zj - l1 if zj > 0 else zj + l1
                w = -shrunk / ((beta + math.sqrt(nj)) / alpha + l2)
            g = error * values[k]
            n_new = nj + g * g
            z[j] = zj + g - (math.sqrt(n_new) - math.sqrt(nj)) / alpha * w
            n[j] = n_new
    return out


@njit(cache=True, nogil=True)
def linear_pass(
    indices: np.ndarray,
    values: np.ndarray,
    indptr: np.ndarray,
    labels: np.ndarray,
    w: np.ndarray,
    acc: np.ndarray,
    lr: float,
    eps: float,
    adagrad: bool,
) -> np.ndarray:  # pragma: no cover - compiled; tested against the reference
    """Predict each CSR row ``w · x``, then take a squared-loss step on it, updating ``w``
    (and, with ``adagrad``, the squared-gradient sums ``acc``) in place: plain SGD
    ``w -= lr g``, or AdaGrad ``acc += g²; w -= lr g / (√acc + eps)``, for ``g = (ŷ - y) x``.
    A NaN label is predicted only. Returns the predictions."""
    rows = len(indptr) - 1
    out = np.empty(rows)
    for r in range(rows):
        start, stop = indptr[r], indptr[r + 1]
        y_hat = 0.0
        for k in range(start, stop):
            y_hat += w[indices[k]] * values[k]
        out[r] = y_hat
        y = labels[r]
        if math.isnan(y):
            continue
        error = y_hat - y
        for k in range(start, stop):
            j = indices[k]
            g = error * values[k]
            if adagrad:
                acc[j] += g * g
                w[j] -= lr * g / (math.sqrt(acc[j]) + eps)
            else:
                w[j] -= lr * g
    return out
