"""The compiled learning loops equal their numpy references."""

from __future__ import annotations

import numpy as np

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.models.kernels import ftrl_logistic_pass
from kafka_ps.agents.models.logreg_ftrl import ftrl_logistic_reference
from kafka_ps.agents.models.sparse import FeatureHasher


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
