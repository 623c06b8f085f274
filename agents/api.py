"""The worker/server logic API, after the Flink Parameter Server.

A model is written once against these interfaces and runs unchanged on the Kafka
runtime (``agents.worker`` / ``agents.server``) and on the in-process
:class:`agents.local.LocalParameterServer` that unit tests and users' own tests use.

Two forms of worker logic:

- :class:`WorkerLogic`, record at a time: ``on_recv(record, ps)`` calls ``ps.pull(key)``;
  each pulled value arrives in ``on_pull_recv(key, value, ps)``, which may ``ps.push``
  and ``ps.output``. The runtime still sends one pull request and one push per shard per
  mini-batch underneath.
- :class:`BatchWorkerLogic`, a mini-batch at a time: ``await ps.pull_many(keys)`` and
  ``ps.push_many(deltas)``. The built-in models use this form for speed.

Server logic is the :class:`ParamSpec` of each parameter: its shape, its initialiser
and its update rule, both run by the shard that owns the key. Built-in rules are add,
SGD, AdaGrad, Adam and FTRL-Proximal (``tables.update_rules.make_rule``); a user's own
functions plug in as ``ParamSpec(..., rule=ParamUpdate(param_update),
init=ParamInitFunction(param_init))`` with ``param_update(value, delta) -> value`` and
``param_init(key) -> value``.

Within a mini-batch, deltas pushed to one key are summed and sent as one push.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from kafka_ps.tables.init import ParamInitFunction
from kafka_ps.tables.params import ParamRegistry, ParamSpec, UnknownParameterError
from kafka_ps.tables.update_rules import ParamUpdate

T = TypeVar("T")

__all__ = [
    "BatchParameterServerClient",
    "BatchWorkerLogic",
    "Hooks",
    "ParamInitFunction",
    "ParamRegistry",
    "ParamSpec",
    "ParamUpdate",
    "ParameterServerClient",
    "Prediction",
    "Task",
    "TrainingRecord",
    "UnknownParameterError",
    "WorkerLogic",
    "WrappedLogic",
    "frozen",
    "predictions",
]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class TrainingRecord:
    """One parsed training record.

    ``features`` holds sparse features by name (numbers, or strings that models hash);
    ``dense`` holds a dense feature vector. ``partition`` and ``offset`` say where the
    record was read, which is what exactly-once bookkeeping and progressive metrics key on.

    Parameters
    ----------
    features
        Sparse features by name: numbers, or strings that models hash. Empty by default.
    dense
        A dense feature vector, or None (the default).
    label
        The target, or None (the default) for a record to predict only.
    key
        The record's own identifier (its ``"key"`` field, UTF-8), or None (the default).
    timestamp
        The record's ``"ts"`` field, a number (seconds since the epoch in the bundled
        data sets), or None (the default).
    partition
        The input-topic partition the record was read from; 0 by default.
    offset
        Its offset in that partition; -1 (the default) for a record not read from Kafka.
    """

    features: Mapping[str, float | int | str] = field(default_factory=dict)
    dense: np.ndarray | None = None
    label: float | None = None
    key: bytes | None = None
    timestamp: float | None = None
    partition: int = 0
    offset: int = -1


@dataclass(frozen=True)
class Prediction:
    """What a model emits per record, before it learns from it (progressive validation).

    Parameters
    ----------
    value
        A float for the built-in models; any JSON-serialisable value for a
        :class:`~agents.logic.Logic`. Only real numbers are scored by the metrics.
    label
        The record's label, if it has one.
    record_key
        The record's key, if it has one.
    extra
        More JSON-serialisable values to publish with the prediction.
    """

    value: Any
    label: float | None
    record_key: bytes | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


def frozen(cls: type[T], **fields: Any) -> T:
    """An instance of the frozen dataclass ``cls`` with every one of its ``fields`` given.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; the
    hot paths that build one object per record (the record parser, the models' outputs)
    set them at once, several times faster. No field is checked or defaulted here.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


def predictions(values: Iterable[Any], records: Sequence[TrainingRecord]) -> list[Prediction]:
    """One :class:`Prediction` per record, with the record's label and key."""
    return [
        frozen(Prediction, value=value, label=record.label, record_key=record.key, extra=_NO_EXTRA)
        for value, record in zip(values, records, strict=True)
    ]


class ParameterServerClient(Protocol):
    """What record-at-a-time logic may call."""

    def pull(self, key: bytes) -> None: ...
    def push(self, key: bytes, delta: np.ndarray) -> None: ...
    def output(self, prediction: Prediction) -> None: ...


class BatchParameterServerClient(Protocol):
    """What mini-batch logic may call.

    ``pull_many`` returns, per key, an array of shape ``(n_slots, *shape)``: the value and
    its optimizer state. ``push_many`` takes, per key, an array of shape
    ``(rule.delta_slots, *shape)``. ``pull_rows`` and ``push_rows`` do the same for
    distinct keys of one parameter with one array of a row per key, ``(n_keys, n_slots,
    *shape)`` and ``(n_keys, rule.delta_slots, *shape)``: no array object per key.
    """

    async def pull_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]: ...
    def push_many(self, deltas: Mapping[bytes, np.ndarray]) -> None: ...
    async def pull_rows(self, keys: Sequence[bytes]) -> np.ndarray: ...
    def push_rows(self, keys: Sequence[bytes], deltas: np.ndarray) -> None: ...
    def output(self, prediction: Prediction) -> None: ...


class Hooks:
    """The lifecycle hooks every logic has; each does nothing unless overridden.

    ``open()`` runs once before the first record: per worker process on Kafka, per run
    of :class:`~agents.local.LocalParameterServer`. ``end_of_input()`` runs once a finite
    input has been learned: on Kafka when :func:`kafka_ps.run` or ``kps train
    --until-end`` stops a worker process after the job learned everything (not when a
    process is stopped for another reason), locally after the last mini-batch.
    ``close()`` runs last, also after an error. None of them can pull, push or output.
    """

    def open(self) -> None:
        """Prepare what the logic needs before its first record."""

    def end_of_input(self) -> None:
        """React to the end of a finite input."""

    def close(self) -> None:
        """Release what :meth:`open` acquired."""


class WorkerLogic(Hooks, ABC):
    """Record-at-a-time worker logic (the Flink Parameter Server's WorkerLogic).

    Parameters
    ----------
    params
        A class or instance attribute: the :class:`~tables.params.ParamSpec` of every
        parameter the logic pulls or pushes.
    task
        ``"regression"`` or ``"classification"``: how the metrics score the predictions.
    """

    params: Sequence[ParamSpec]
    task: Task

    @abstractmethod
    def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None: ...

    @abstractmethod
    def on_pull_recv(self, key: bytes, value: np.ndarray, ps: ParameterServerClient) -> None: ...


class BatchWorkerLogic(Hooks, ABC):
    """Mini-batch worker logic: pull once, learn record by record locally, push once.

    Keys are wire keys (:func:`~tables.keys.param_key`), pulls return every slot and pushes
    take the rule's delta slots; :class:`~agents.logic.Logic` is the friendlier form.

    Parameters
    ----------
    params
        Every :class:`~tables.params.ParamSpec` its keys name (class or instance attribute).
    task
        How the job's metrics score its predictions: ``"regression"`` or
        ``"classification"``.
    """

    params: Sequence[ParamSpec]
    task: Task

    @abstractmethod
    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None: ...

    def rows_to_pull(self, records: Sequence[TrainingRecord]) -> Sequence[bytes] | None:
        """The keys ``on_batch(records, ps)`` will pass to ``ps.pull_rows`` first, if the
        logic knows them beforehand (the same sequence object); None (the default) if not.

        Under ASP a worker then pulls them while the mini-batch before learns."""
        return None


class WrappedLogic(BatchWorkerLogic, ABC):
    """Mini-batch logic that runs another logic, whose hooks are its own.

    Parameters
    ----------
    logic
        The wrapped logic, set by the subclass.
    """

    logic: Hooks

    def open(self) -> None:
        self.logic.open()

    def end_of_input(self) -> None:
        self.logic.end_of_input()

    def close(self) -> None:
        self.logic.close()
