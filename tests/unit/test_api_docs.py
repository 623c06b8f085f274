"""The model docs/api.md shows an author passes check_logic, as its test there says."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kafka_ps import check_logic
from kafka_ps.tables.keys import param_key

API_MD = Path(__file__).parents[2] / "docs" / "api.md"


@pytest.fixture
def mymodels() -> Iterator[types.ModuleType]:
    """The docs' ``mymodels.py``, importable by name, so that it pickles as on a job."""
    blocks = re.findall(r"```python\n(.*?)```", API_MD.read_text(), re.DOTALL)
    (source,) = [block for block in blocks if block.startswith("# mymodels.py")]
    module = types.ModuleType("mymodels")
    sys.modules["mymodels"] = module
    try:
        exec(compile(source, str(API_MD), "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules["mymodels"]


def test_the_docs_model_learns_and_only_predicts_unlabelled_records(
    mymodels: types.ModuleType,
) -> None:
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=5), 0.7
    records = []
    for t in range(2000):
        x = rng.normal(size=5)
        label = None if t % 4 == 0 else float(x @ w + b)
        records.append({"dense": x, "label": label, "key": f"r{t}"})
    records[:16] = [{**record, "label": None} for record in records[:16]]  # a batch of none
    server = check_logic(mymodels.make(dim=5), records, batch_size=16)
    assert len(server.outputs) == len(records)
    assert all(p.label is None for p in server.outputs[:16])
    snapshot = server.snapshot()
    np.testing.assert_allclose(snapshot[param_key("w", 0)], w, atol=0.05)
    np.testing.assert_allclose(snapshot[param_key("b", 0)], [b], atol=0.05)
