"""An in-process parameter server, for unit tests and for testing your own worker logic.

:class:`LocalParameterServer` runs a :class:`~agents.logic.Logic`, a
:class:`~agents.api.WorkerLogic` or a :class:`~agents.api.BatchWorkerLogic` over a list
of records the way the Kafka runtime does, without a broker: records are cut into
mini-batches; every pull in a mini-batch sees the state from before the mini-batch;
pushes are applied at the end of the mini-batch. Every form runs through
:func:`agents.adapter.as_batch_logic`, so all take one code path, and pulls and pushes
are checked, and arrays handed over, by the contract the Kafka worker's client uses
(:mod:`tables.contract`). :func:`agents.checks.check_logic` runs on this server.

Like the runtime, which sends one push message per shard per mini-batch naming each key
once, the deltas pushed to one key during a mini-batch are summed and applied as one, keys
in the order of their first push. (For ``add``, ``sgd`` and ``ftrl_additive`` that equals
applying them one by one; for ``adagrad``, ``adam`` and ``ftrl`` it does not.)

Shards are plain dicts ``key -> slots``. A key that was only pulled is not stored: its
value is created from :meth:`~agents.api.ParamSpec.initial_slots` whenever it is read,
which gives the same value every time, as a real shard does.

Usage::

    model = make_model("logreg_ftrl")
    server = LocalParameterServer(model.params)
    predictions = server.run(model, records, batch_size=256)
    weights = server.snapshot()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kafka_ps.agents.adapter import as_batch_logic
from kafka_ps.agents.api import (
    BatchWorkerLogic,
    ParamRegistry,
    ParamSpec,
    Prediction,
    TrainingRecord,
    WorkerLogic,
)
from kafka_ps.agents.logic import Logic
from kafka_ps.tables.contract import (
    add_deltas,
    as_delta_rows,
    pull_specs,
    pulled_rows,
    pulled_value,
    rows_spec,
)
from kafka_ps.tables.keys import shard_of
from kafka_ps.tables.update_rules import Slots


@dataclass
class Counters:
    """Traffic a Kafka runtime would have sent for the same run.

    ``pulls`` counts keys requested and ``pushes`` keys updated, each key once per
    request or per mini-batch; the ``*_messages`` fields count shard messages, one per
    shard per request and one per shard per mini-batch with pushes.

    Parameters
    ----------
    pulls
        Keys requested, each key once per request; 0 to start.
    pushes
        Keys updated, each key once per mini-batch; 0 to start.
    pull_messages
        Pull messages, one per shard per request; 0 to start.
    push_messages
        Push messages, one per shard per mini-batch with pushes; 0 to start.
    """

    pulls: int = 0
    pushes: int = 0
    pull_messages: int = 0
    push_messages: int = 0


class Session:
    """The batch client a logic sees during one mini-batch of a local run.

    Parameters
    ----------
    server
        The server whose state the mini-batch's pulls read; the caller applies
        ``pushes`` to it (:meth:`LocalParameterServer.apply`) when the mini-batch ends.
    """

    def __init__(self, server: LocalParameterServer) -> None:
        self._server = server
        #: Per key, the sum of this mini-batch's deltas.
        self.pushes: dict[bytes, np.ndarray] = {}
        self.outputs: list[Prediction] = []

    async def pull_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        return self._server.read(keys)

    def push_many(self, deltas: Mapping[bytes, np.ndarray]) -> None:
        """Add each delta to its key's push for this mini-batch, by the rule the Kafka
        worker's client applies (tables/contract.py); the update rule checks the rest when
        the push is applied."""
        add_deltas(self._server.registry, self.pushes, deltas)

    async def pull_rows(self, keys: Sequence[bytes]) -> np.ndarray:
        spec = rows_spec(self._server.registry, keys)
        values = self._server.read(keys)
        return pulled_rows(spec, np.stack([values[key] for key in keys]))

    def push_rows(self, keys: Sequence[bytes], deltas: np.ndarray) -> None:
        rows = as_delta_rows(rows_spec(self._server.registry, keys), keys, deltas)
        self.push_many(dict(zip(keys, rows, strict=True)))

    def output(self, prediction: Prediction) -> None:
        self.outputs.append(prediction)


class LocalParameterServer:
    """Parameter shards in memory, and a runner for worker logic against them.

    Parameters
    ----------
    params
        The parameters of the logic that will run.
    partitions
        The number of shards the keys are spread over (as on Kafka, by
        :func:`~tables.keys.shard_of`); results do not depend on it.
    """

    def __init__(self, params: Sequence[ParamSpec], partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.registry = ParamRegistry(params)
        self.partitions = partitions
        self.shards: list[dict[bytes, Slots]] = [{} for _ in range(partitions)]
        self.counters = Counters()
        #: Every prediction output so far, in output order.
        self.outputs: list[Prediction] = []

    def run(
        self,
        logic: Logic | WorkerLogic | BatchWorkerLogic,
        records: Sequence[TrainingRecord],
        batch_size: int = 256,
        workers: int = 1,
        deal: Callable[[int, TrainingRecord], int] | None = None,
    ) -> list[Prediction]:
        """Feed ``records`` to ``logic`` in mini-batches; return the predictions output.

        With ``workers`` > 1 the records are dealt to that many logical workers, the
        ``i``-th to ``deal(i, record)`` (round-robin by default, as ``kps train`` deals
        them to training partitions unless a data set groups them), and each cuts its own
        into mini-batches. In each round every logical worker learns its next mini-batch
        from the state before the round, and then the round's pushes are applied, worker
        by worker: what BSP computes on Kafka, and the staleness ASP has when the logical
        workers keep pace. Outputs come round by round, worker by worker.

        The logic's ``open()`` runs first, ``end_of_input()`` after the last mini-batch
        and ``close()`` last, also when the logic raises.
        """
        return asyncio.run(self.arun(logic, records, batch_size, workers, deal))

    async def arun(
        self,
        logic: Logic | WorkerLogic | BatchWorkerLogic,
        records: Sequence[TrainingRecord],
        batch_size: int = 256,
        workers: int = 1,
        deal: Callable[[int, TrainingRecord], int] | None = None,
    ) -> list[Prediction]:
        """:meth:`run` for callers already inside an event loop."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        batch_logic = as_batch_logic(logic)
        dealt: list[Sequence[TrainingRecord]] = [records]
        if workers > 1:
            parts: list[list[TrainingRecord]] = [[] for _ in range(workers)]
            for i, record in enumerate(records):
                parts[deal(i, record) if deal else i % workers].append(record)
            dealt = list(parts)
        outputs: list[Prediction] = []
        batch_logic.open()
        try:
            for start in range(0, max(map(len, dealt)), batch_size):
                sessions = []
                for part in dealt:
                    if start < len(part):
                        session = Session(self)
                        await batch_logic.on_batch(part[start : start + batch_size], session)
                        sessions.append(session)
                for session in sessions:
                    self.apply(session.pushes)
                    outputs.extend(session.outputs)
            batch_logic.end_of_input()
        finally:
            self.outputs.extend(outputs)
            batch_logic.close()
        return outputs

    def read(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """What a pull of ``keys`` returns: per key, its slots stacked as ``(n_slots, *shape)``.

        Counted as one pull request to every shard the keys live on.
        """
        unique = pull_specs(self.registry, keys)
        values = {
            key: pulled_value(spec, np.stack(self.slots(key))) for key, spec in unique.items()
        }
        self.counters.pulls += len(unique)
        self.counters.pull_messages += len({shard_of(key, self.partitions) for key in unique})
        return values

    def slots(self, key: bytes) -> Slots:
        """The stored slots of ``key``, or its initial slots (not stored) if never pushed."""
        spec = self.registry.spec_for(key)
        stored = self.shards[shard_of(key, self.partitions)].get(key)
        return stored if stored is not None else spec.initial_slots(key)

    def snapshot(self) -> dict[bytes, np.ndarray]:
        """Copies of the value (slot 0) of every stored key."""
        return {key: slots[0].copy() for shard in self.shards for key, slots in shard.items()}

    def apply(self, pushes: Mapping[bytes, np.ndarray]) -> None:
        """Apply one mini-batch's summed deltas, all or none.

        Every new state is computed before any is stored, so a bad delta raises
        :class:`BadDeltaError` and leaves every shard as it was.
        """
        staged = {}
        for key, delta in pushes.items():
            spec = self.registry.spec_for(key)
            # As a shard does: deltas travel as float64 and are applied in the value's dtype.
            staged[key] = spec.rule.apply(self.slots(key), delta.astype(spec.dtype, copy=False))
        for key, slots in staged.items():
            self.shards[shard_of(key, self.partitions)][key] = slots
        self.counters.pushes += len(pushes)
        self.counters.push_messages += len({shard_of(key, self.partitions) for key in pushes})
