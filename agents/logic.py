"""The model author's API: parameters by name and index, in the shapes they were declared.

A :class:`Logic` declares its parameters (:class:`~tables.params.ParamSpec`: a name, the
shape of each of its elements, an update rule and an initialiser) and learns a
mini-batch at a time through :class:`Params`:

- ``await ps.pull("w", [3, 17])`` returns the values of ``w[3]`` and ``w[17]``, stacked
  as ``(2, *shape)``; ``await ps.pull("w", 3)`` returns ``w[3]`` alone, of ``shape``. The
  optimizer state stays on the shard.
- ``ps.push("w", [3, 17], deltas)`` sends ``deltas`` of shape ``(2, *shape)`` (or
  ``ps.push("w", 3, delta)``, of ``shape``): the gradient for rules that take a gradient
  (``sgd``, ``adagrad``, ``adam``, ``ftrl``), the change itself for ``add``, the ``delta``
  argument of a :class:`~tables.update_rules.ParamUpdate`.
- ``ps.output(record, value)`` emits the output of one record: any JSON-serialisable
  value. Every record of the mini-batch gets exactly one output.

:class:`LogicAdapter` runs a :class:`Logic` as a :class:`~agents.api.BatchWorkerLogic`,
so the Kafka worker and :class:`~agents.local.LocalParameterServer` drive it unchanged,
and every check here runs on both. ``docs/api.md`` is the user's guide.
"""

from __future__ import annotations

import json
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    Hooks,
    ParamRegistry,
    ParamSpec,
    Prediction,
    Task,
    TrainingRecord,
    UnknownParameterError,
    WrappedLogic,
)
from kafka_ps.tables.contract import BadPushError, as_numbers
from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.keys import param_key

__all__ = ["Index", "Logic", "LogicAdapter", "LogicError", "OutputError", "Params"]

#: One element of a parameter (an int, or a str without a colon), or several.
Index = int | str | Sequence[int] | Sequence[str] | np.ndarray


class LogicError(KafkaPsError):
    """A logic that breaks the API's rules.

    Parameters
    ----------
    message
        Which rule, and where.
    """


class OutputError(LogicError):
    """A record got no output, or two, or an output that is not JSON-serialisable.

    Parameters
    ----------
    message
        Which record (its place in the mini-batch, partition and offset).
    """


class Logic(Hooks, ABC):
    """Worker logic that sees its parameters as it declared them.

    Subclasses set ``params`` (and ``task``) and implement :meth:`learn`; the
    :class:`~agents.api.Hooks` ``open``, ``end_of_input`` and ``close`` are optional.

    Parameters
    ----------
    params
        A class or instance attribute: the :class:`~tables.params.ParamSpec` of every
        parameter the logic pulls or pushes. Each rule must take one delta per push
        (every built-in rule but ``ftrl_additive``).
    task
        ``"regression"`` (the default) or ``"classification"``: how the job's progressive
        loss scores numeric outputs against labels (squared error, or logloss of a
        probability). Outputs that are not numbers are published but not scored.
    """

    params: Sequence[ParamSpec]
    task: Task = "regression"

    @abstractmethod
    async def learn(self, records: Sequence[TrainingRecord], ps: Params) -> None:
        """Learn one mini-batch: pull, output one value per record, push.

        Parameters
        ----------
        records
            The mini-batch, in input order.
        ps
            The parameter-server client of this mini-batch.
        """


class Params:
    """What a :class:`Logic` sees of the parameter server during one mini-batch.

    Pulls in one mini-batch all see the model as it was before the mini-batch; pushes
    are summed per element and applied when the mini-batch ends.

    Parameters
    ----------
    specs
        The logic's parameters, by name.
    ps
        The runtime's batch client (Kafka worker or local server) underneath.
    records
        The mini-batch, to which :meth:`output` ties each output.
    """

    def __init__(
        self,
        specs: Mapping[str, ParamSpec],
        ps: BatchParameterServerClient,
        records: Sequence[TrainingRecord],
    ) -> None:
        self._specs = specs
        self._ps = ps
        self._records = records
        self._position = {id(record): i for i, record in enumerate(records)}
        self.outputs: list[Any] = [_MISSING] * len(records)

    def _spec(self, name: str) -> ParamSpec:
        spec = self._specs.get(name)
        if spec is None:
            declared = ", ".join(sorted(self._specs)) or "none"
            raise UnknownParameterError(f"no parameter named {name!r} (declared: {declared})")
        return spec

    @staticmethod
    def _keys(name: str, index: Index) -> tuple[list[bytes], bool]:
        """The wire keys of ``index``, and whether it was one element (not a sequence)."""
        if isinstance(index, str | int | np.integer):
            return [param_key(name, index)], True
        return [param_key(name, i) for i in np.asarray(index).tolist()], False

    async def pull(self, name: str, index: Index) -> np.ndarray:
        """The values of parameter ``name`` at ``index``, read-only.

        Parameters
        ----------
        name
            A declared parameter.
        index
            One element (an int, or a str), giving an array of the parameter's shape, or
            a sequence of them, giving ``(len(index), *shape)``.
        """
        return (await self.pull_all({name: index}))[name]

    async def pull_all(self, indexes: Mapping[str, Index]) -> dict[str, np.ndarray]:
        """:meth:`pull` of several parameters in one round trip, by name.

        Parameters
        ----------
        indexes
            Per parameter name, an index as :meth:`pull` takes it.
        """
        wanted = {}
        for name, index in indexes.items():
            spec = self._spec(name)
            wanted[name] = (spec, *self._keys(name, index))
        pulled = await self._ps.pull_many([k for _, keys, _ in wanted.values() for k in keys])
        values = {}
        for name, (spec, keys, one) in wanted.items():
            if one:
                values[name] = pulled[keys[0]][0]
                continue
            stacked = np.empty((len(keys), *spec.shape))
            for i, key in enumerate(keys):
                stacked[i] = pulled[key][0]
            stacked.flags.writeable = False
            values[name] = stacked
        return values

    def push(self, name: str, index: Index, delta: Any) -> None:
        """Push ``delta`` to parameter ``name`` at ``index``.

        Parameters
        ----------
        name
            A declared parameter.
        index
            One element, or a sequence of them (an element named twice gets the sum).
        delta
            Real numbers of the parameter's shape for one element, ``(len(index),
            *shape)`` for a sequence: the gradient, or the change for rule ``add``.
        """
        spec = self._spec(name)
        keys, one = self._keys(name, index)
        expected = spec.shape if one else (len(keys), *spec.shape)
        array = as_numbers(name, delta)
        if array.shape != expected:
            raise BadPushError(
                "wrong_shape",
                f"{name}[{index if one else 'list of ' + str(len(keys))}]: the delta has shape "
                f"{list(array.shape)}, expected {list(expected)}",
            )
        if not np.isfinite(array).all():
            raise BadPushError("non_finite_delta", f"{name}: the delta has NaN or Inf")
        rows = array.reshape(len(keys), 1, *spec.shape)
        summed: dict[bytes, np.ndarray] = {}
        for key, row in zip(keys, rows, strict=True):
            summed[key] = row if key not in summed else summed[key] + row
        self._ps.push_many(summed)

    def output(self, record: TrainingRecord, value: Any) -> None:
        """Emit the output of ``record``; exactly one per record of the mini-batch.

        Parameters
        ----------
        record
            One of the mini-batch's records (the object :meth:`Logic.learn` was given).
        value
            Any JSON-serialisable value. A number is also scored against the record's
            label by the job's progressive metrics.
        """
        position = self._position.get(id(record))
        if position is None:
            raise OutputError("output() was given a record that is not in this mini-batch")
        if self.outputs[position] is not _MISSING:
            raise OutputError(f"two outputs for record {_where(record, position)}")
        value = _number(value)
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as error:
            raise OutputError(
                f"the output for record {_where(record, position)} is not JSON-serialisable: "
                f"{error}"
            ) from None
        self.outputs[position] = value

    def finish(self) -> list[Prediction]:
        """The mini-batch's outputs in record order; :class:`OutputError` if one is missing."""
        missing = [i for i, value in enumerate(self.outputs) if value is _MISSING]
        if missing:
            shown = ", ".join(_where(self._records[i], i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise OutputError(f"no output for record {shown}{more}")
        return [
            Prediction(value, record.label, record.key)
            for record, value in zip(self._records, self.outputs, strict=True)
        ]


_MISSING = object()


def _where(record: TrainingRecord, position: int) -> str:
    where = f"#{position} of the mini-batch"
    if record.offset >= 0:
        where += f" (partition {record.partition}, offset {record.offset})"
    return where


def _number(value: Any) -> Any:
    """A real number as a float (what the metrics score), anything else as it is."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


class LogicAdapter(WrappedLogic):
    """A :class:`Logic` driven a mini-batch at a time, as every runtime drives logic.

    Parameters
    ----------
    logic
        The model author's logic. Its rules must take one delta per push.
    """

    def __init__(self, logic: Logic) -> None:
        self.logic = logic
        self.params = tuple(logic.params)
        self.task = logic.task
        registry = ParamRegistry(self.params)
        for spec in self.params:
            if spec.rule.delta_slots != 1:
                raise LogicError(
                    f"parameter {spec.name!r}: rule {spec.rule.name!r} takes "
                    f"{spec.rule.delta_slots} arrays per push; a Logic pushes one delta in "
                    "the declared shape (write a BatchWorkerLogic for this rule)"
                )
        self._specs = registry.specs

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        params = Params(self._specs, ps, records)
        await self.logic.learn(records, params)
        for prediction in params.finish():
            ps.output(prediction)
