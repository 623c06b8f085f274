"""The compiled learning loops equal their numpy references."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.models.kernels import ftrl_logistic_pass, linear_pass, mlp_pass
from kafka_ps.agents.models.maths import logistic
from kafka_ps.agents.models.sparse import FeatureHasher, SparseBatch
from kafka_ps.tables.update_rules import ftrl_step, ftrl_weights


def test_the_compiled_ftrl_pass_equals_the_numpy_loop_to_1e_9() -> None:
    rng = np.random.default_rng(7)
    records = [
        TrainingRecord(
            features={f"f{j}": int(rng.integers(0, 30)) for j in range(6)},
            label=None if r % 17 == 0 else float(rng.integers(0, 2)),
        )
        for r in range(500)
    ]
    batch = FeatureHasher(buckets=64, crosses=(("f0", "f1"),)).encode(records)
    z0 = rng.normal(0, 2, len(batch.keys))
    n0 = rng.uniform(0, 5, len(batch.keys))
    hyper = (0.1, 1.0, 1.0, 1.0)
    z, n = z0.copy(), n0.copy()
    expected = ftrl_logistic_reference(batch, z, n, hyper)
    z_fast, n_fast = z0.copy(), n0.copy()
    got = ftrl_logistic_pass(
        batch.indices, batch.values, batch.indptr, batch.labels, z_fast, n_fast, *hyper
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(z_fast, z, rtol=0, atol=1e-9)
    np.testing.assert_allclose(n_fast, n, rtol=0, atol=1e-9)
    assert not np.allclose(z, z0)  # it learned something


def ftrl_logistic_reference(
    batch: SparseBatch, z: np.ndarray, n: np.ndarray, hyper: tuple[float, float, float, float]
) -> np.ndarray:
    """The numpy loop the compiled kernel must equal: predict, then learn, per record."""
    out = np.empty(len(batch))
    for r in range(len(batch)):
        idx, x = batch.row(r)
        zi, ni = z[idx], n[idx]
        w = ftrl_weights(zi, ni, *hyper)
        out[r] = p = logistic(float(w @ x))
        y = batch.labels[r]
        if np.isnan(y):
            continue
        g = (p - float(y > 0)) * x
        z[idx], n[idx] = ftrl_step(zi, ni, w, g, hyper[0])
    return out


def test_the_compiled_linear_pass_equals_the_numpy_loop_to_1e_9() -> None:
    rng = np.random.default_rng(9)
    records = [
        TrainingRecord(
            features={"a": f"v{rng.integers(0, 20)}", "x": float(rng.normal())},
            label=None if r % 13 == 0 else float(rng.normal()),
        )
        for r in range(400)
    ]
    batch = FeatureHasher(buckets=64, numeric=frozenset({"x"})).encode(records)
    w0 = rng.normal(0, 0.1, len(batch.keys))
    acc0 = rng.uniform(0, 2, len(batch.keys))
    for adagrad in (False, True):
        w, acc = w0.copy(), acc0.copy()
        expected = np.empty(len(batch))
        for r in range(len(batch)):
            idx, x = batch.row(r)
            expected[r] = y_hat = float(w[idx] @ x)
            if np.isnan(batch.labels[r]):
                continue
            g = (y_hat - batch.labels[r]) * x
            if adagrad:
                acc[idx] += g * g
                w[idx] -= 0.05 * g / (np.sqrt(acc[idx]) + 1e-8)
            else:
                w[idx] -= 0.05 * g
        w_fast, acc_fast = w0.copy(), acc0.copy()
        got = linear_pass(
            batch.indices, batch.values, batch.indptr, batch.labels, w_fast, acc_fast,
            0.05, 1e-8, adagrad,
        )  # fmt: skip
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(w_fast, w, rtol=0, atol=1e-9)
        np.testing.assert_allclose(acc_fast, acc, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("tanh", "classification"), [(True, True), (False, False)])
def test_the_compiled_mlp_pass_equals_the_numpy_loop_to_1e_9(
    tanh: bool, classification: bool
) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 5))
    labels = (x[:, 0] * x[:, 1] > 0).astype(float) if classification else x @ rng.normal(size=5)
    labels[::23] = np.nan
    weights0 = (rng.normal(0, 0.5, (6, 5)), rng.normal(0, 0.1, 6), rng.normal(0, 0.5, 6), [0.1])
    sums0 = tuple(rng.uniform(0, 1, np.shape(w)) for w in weights0)
    lr, eps = 0.05, 1e-8
    w1, b1, w2, b2 = (np.array(w, dtype=float) for w in weights0)
    s1, sb1, s2, sb2 = (s.copy() for s in sums0)
    expected = np.empty(len(x))
    for r, (xr, y) in enumerate(zip(x, labels, strict=True)):
        pre = w1 @ xr + b1
        h = np.tanh(pre) if tanh else np.maximum(pre, 0.0)
        out = float(h @ w2 + b2[0])
        expected[r] = y_hat = logistic(out) if classification else out
        if np.isnan(y):
            continue
        d_out = y_hat - float(y > 0 if classification else y)
        d_pre = d_out * w2 * ((1.0 - h * h) if tanh else (pre > 0.0))
        grads = (np.outer(d_pre, xr), d_pre, d_out * h, np.array([d_out]))
        for w, s, g in zip((w1, b1, w2, b2), (s1, sb1, s2, sb2), grads, strict=True):
            s += g * g
            w -= lr * g / (np.sqrt(s) + eps)
    weights = tuple(np.array(w, dtype=float) for w in weights0)
    sums = tuple(s.copy() for s in sums0)
    got = mlp_pass(x, labels, weights, sums, lr, eps, tanh, classification)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    for fast, slow in zip((*weights, *sums), (w1, b1, w2, b2, s1, sb1, s2, sb2), strict=True):
        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


#: Run in a fresh interpreter: in this one, earlier tests have compiled the kernels already.
FIRST_BATCH = """
from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.local import LocalParameterServer
from kafka_ps.agents.models import make_model
from kafka_ps.agents.models import kernels

kernels.warm_up()
compiled = [kernels.ftrl_logistic_pass, kernels.linear_pass, kernels.mlp_pass]
ready = [list(kernel.signatures) for kernel in compiled]
sparse = [
    TrainingRecord(features={"a": str(i % 3), "x": i / 7}, label=float(i % 2)) for i in range(9)
]
dense = [TrainingRecord(dense=[i / 9, 1.0], label=float(i % 2)) for i in range(9)]
for name, hyper, records in [
    ("logreg_ftrl", {"numeric": ["x"]}, sparse),
    ("linear", {"rule": "adagrad", "numeric": ["x"]}, sparse),
    ("linear", {"rule": "sgd"}, sparse),
    ("mlp", {"n_inputs": 2}, dense),
    ("mlp", {"n_inputs": 2, "task": "regression", "activation": "relu"}, dense),
]:
    model = make_model(name, **hyper)
    LocalParameterServer(model.params).run(model, records, batch_size=4)
print([list(kernel.signatures) == signatures for kernel, signatures in zip(compiled, ready)])
"""


def test_warm_up_readies_the_specialisation_every_model_calls() -> None:
    """A worker opening its model loads the kernels' code before its first mini-batch
    (``warm_up``): the models' real calls then find it ready instead of compiling."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BATCH], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["[True,", "True,", "True]"], done.stdout + done.stderr


OPEN_SOON = """
import threading
from kafka_ps.agents.models import kernels, make_model

make_model("logreg_ftrl").open()
(loading,) = [t for t in threading.enumerate() if t.name == "kps-kernels"]
loading.join()
print(all(kernel.signatures for kernel in (kernels.ftrl_logistic_pass, kernels.mlp_pass)))
"""


def test_opening_a_model_loads_its_kernels_in_a_thread_beside_the_start() -> None:
    """``open()`` returns while the kernels load (about a second of numba's own start-up),
    so a worker's Faust app starts meanwhile; the thread leaves them loaded."""
    done = subprocess.run([sys.executable, "-c", OPEN_SOON], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"], done.stdout + done.stderr
