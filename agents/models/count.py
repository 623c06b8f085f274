"""Counting: every record adds 1 to the counter of the key it names.

Not a learner but a check of delivery: after a run, the counter of each key must equal
the number of records produced for it, whatever was killed on the way (the chaos test
and benchmark). A record names its key in ``features["key"]``; the counter is the
parameter ``count:<key>``. Each mini-batch pulls its keys' counts and outputs them, so
pulls are exercised too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    TrainingRecord,
)
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import Add

COUNT = "count"


def counter_key(name: str) -> bytes:
    return param_key(COUNT, name)


class KeyCounter(BatchWorkerLogic):
    task = "regression"

    def __init__(self) -> None:
        self.params = [ParamSpec(COUNT, (1,), Add())]

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        names = [str(record.features["key"]) for record in records]
        counts = Counter(counter_key(name) for name in names)
        before = await ps.pull_many(list(counts))
        for record, name in zip(records, names, strict=True):
            ps.output(Prediction(float(before[counter_key(name)][0, 0]), None, record.key))
        ps.push_many({key: np.array([[float(n)]]) for key, n in counts.items()})
