"""Compiled per-record learning loops (numba): the same arithmetic as the numpy references
(:func:`tables.update_rules.ftrl_weights` and :func:`~tables.update_rules.ftrl_step`; the
steps :class:`~tables.update_rules.Sgd` and :class:`~tables.update_rules.AdaGrad` take),
without a Python round trip per record. ``tests/unit/test_kernels.py`` holds them equal to
the reference to 1e-9.
"""

from __future__ import annotations

import math
import threading

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


@njit(cache=True, nogil=True)
def mlp_pass(
    x: np.ndarray,
    labels: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sums: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    lr: float,
    eps: float,
    tanh: bool,
    classification: bool,
) -> np.ndarray:  # pragma: no cover - compiled; tested against the reference
    """A one-hidden-layer perceptron, record by record: predict row ``x[r]``, then take an
    AdaGrad step on its loss (logloss after a sigmoid, or squared loss), updating
    ``weights = (W1, b1, w2, b2)`` and their squared-gradient ``sums`` in place. Every
    gradient of a step is taken at the weights before it. A NaN label is predicted only.
    Returns the predictions."""
    w1, b1, w2, b2 = weights
    s1, sb1, s2, sb2 = sums
    rows, inputs = x.shape
    hidden = len(b1)
    out = np.empty(rows)
    h = np.empty(hidden)
    d_pre = np.empty(hidden)
    for r in range(rows):
        total = b2[0]
        for i in range(hidden):
            pre = b1[i]
            for k in range(inputs):
                pre += w1[i, k] * x[r, k]
            if tanh:
                h[i] = math.tanh(pre)
                d_pre[i] = 1.0 - h[i] * h[i]
            else:
                h[i] = max(pre, 0.0)
                d_pre[i] = 1.0 if pre > 0.0 else 0.0
            total += w2[i] * h[i]
        if classification:
            total = min(max(total, -MAX_MARGIN), MAX_MARGIN)
            y_hat = 1.0 / (1.0 + math.exp(-total))
        else:
            y_hat = total
        out[r] = y_hat
        y = labels[r]
        if math.isnan(y):
            continue
        if classification:
            y = 1.0 if y > 0 else 0.0
        # d(loss)/d(out), for logloss after a sigmoid and for squared loss alike.
        d_out = y_hat - y
        for i in range(hidden):
            d_pre[i] *= d_out * w2[i]
            g = d_out * h[i]
            s2[i] += g * g
            w2[i] -= lr * g / (math.sqrt(s2[i]) + eps)
            g = d_pre[i]
            sb1[i] += g * g
            b1[i] -= lr * g / (math.sqrt(sb1[i]) + eps)
            for k in range(inputs):
                g = d_pre[i] * x[r, k]
                s1[i, k] += g * g
                w1[i, k] -= lr * g / (math.sqrt(s1[i, k]) + eps)
        sb2[0] += d_out * d_out
        b2[0] -= lr * d_out / (math.sqrt(sb2[0]) + eps)
    return out


def warm_up() -> None:
    """Load every kernel's machine code now (from numba's on-disk cache, or compiled).

    A kernel's first call otherwise pays it inside the first mini-batch: about 0.4 s of a
    worker's CPU, a stall in its first freshness figures. The arguments have the types the
    models pass (``intp`` indices, ``float64`` arrays, C-contiguous), so the real calls find
    their specialisation ready; ``tests/unit/test_kernels.py`` checks that.
    """
    index = np.zeros(1, dtype=np.intp)
    bounds = np.array([0, 1], dtype=np.intp)
    one, label = np.ones(1), np.ones(1)
    ftrl_logistic_pass(index, one, bounds, label, np.zeros(1), np.zeros(1), 0.1, 1.0, 0.0, 0.0)
    linear_pass(index, one, bounds, label, np.zeros(1), np.zeros(1), 0.1, 1e-8, True)
    weights = (np.zeros((1, 1)), np.zeros(1), np.zeros(1), np.zeros(1))
    sums = tuple(w.copy() for w in weights)
    mlp_pass(np.zeros((1, 1)), label, weights, sums, 0.1, 1e-8, True, True)


def warm_up_soon() -> threading.Thread:
    """:func:`warm_up` in a thread of its own, started now; the thread.

    A worker process opens its model before its Faust app starts, and loading the kernels
    (numba's own start-up, about a second) held back the process's start by as much. The
    app's start mostly waits on the broker, so the two overlap. A mini-batch that comes
    before the thread is done waits for it at its first kernel call (numba compiles and
    loads under one lock), and never pays twice.
    """
    thread = threading.Thread(target=warm_up, name="kps-kernels", daemon=True)
    thread.start()
    return thread
