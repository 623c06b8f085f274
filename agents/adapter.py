"""Run record-at-a-time worker logic wherever mini-batch logic runs.

The runtimes (the Kafka worker and :class:`~agents.local.LocalParameterServer`) only
drive :class:`~agents.api.BatchWorkerLogic`; :func:`as_batch_logic` turns a
:class:`~agents.api.WorkerLogic` into one, so that both forms share one code path.

Per mini-batch, the wrapped logic sees: ``on_recv`` for every record, collecting its
``ps.pull(key)`` calls; then one ``await ps.pull_many(keys)`` answering all of them, and
``on_pull_recv(key, value, ps)`` for each pull in pull order (a key pulled twice is
answered twice, each time with its own copy of the value). Pulls made while answering
are answered the same way in a further round, until none is left. ``ps.push(key,
delta)`` becomes ``push_many({key: delta})`` and ``ps.output`` is passed on, so the batch
client decides how deltas to one key in a mini-batch combine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamRegistry,
    Prediction,
    TrainingRecord,
    WorkerLogic,
    WrappedLogic,
)
from kafka_ps.agents.logic import Logic, LogicAdapter

__all__ = ["RecordLogicAdapter", "as_batch_logic"]


class _RecordClient:
    """The :class:`~agents.api.ParameterServerClient` of one mini-batch of one adapter."""

    def __init__(self, registry: ParamRegistry, ps: BatchParameterServerClient) -> None:
        self._registry = registry
        self._ps = ps
        self.pending: list[bytes] = []

    def pull(self, key: bytes) -> None:
        # The pull itself waits for the end of the round; a key no parameter declares is
        # refused now, so that the error points at the code that pulled it.
        self._registry.spec_for(key)
        self.pending.append(key)

    def push(self, key: bytes, delta: np.ndarray) -> None:
        self._ps.push_many({key: delta})

    def output(self, prediction: Prediction) -> None:
        self._ps.output(prediction)


class RecordLogicAdapter(WrappedLogic):
    """A :class:`~agents.api.WorkerLogic` driven a mini-batch at a time.

    The adapter keeps no state between calls: concurrent mini-batches (one per partition
    on the Kafka runtime) each get their own client. The wrapped logic's own state is its
    business.

    Parameters
    ----------
    logic
        The record-at-a-time logic to run.
    """

    def __init__(self, logic: WorkerLogic) -> None:
        self.logic = logic
        self.params = logic.params
        self.task = logic.task
        self._registry = ParamRegistry(self.params)

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        client = _RecordClient(self._registry, ps)
        for record in records:
            self.logic.on_recv(record, client)
        while client.pending:
            keys, client.pending = client.pending, []
            values = await ps.pull_many(keys)
            for key in keys:
                self.logic.on_pull_recv(key, values[key].copy(), client)


def as_batch_logic(logic: Logic | WorkerLogic | BatchWorkerLogic) -> BatchWorkerLogic:
    """``logic`` itself if it works a mini-batch at a time, else its adapter: a
    :class:`~agents.logic.LogicAdapter` for a :class:`~agents.logic.Logic`, a
    :class:`RecordLogicAdapter` for a :class:`~agents.api.WorkerLogic`.

    Anything else raises TypeError.
    """
    if isinstance(logic, BatchWorkerLogic):
        return logic
    if isinstance(logic, Logic):
        return LogicAdapter(logic)
    if isinstance(logic, WorkerLogic):
        return RecordLogicAdapter(logic)
    raise TypeError(f"not a Logic, WorkerLogic or BatchWorkerLogic: {type(logic).__name__}")
