"""Checks a model author runs on their own logic in a unit test, as ``river.checks`` does.

:func:`check_logic` runs the logic on the in-process server
(:class:`~agents.local.LocalParameterServer`), which validates every pull and push by the
same rules as the Kafka worker's client (``tables/contract.py``), and adds the rules a
runtime cannot afford to check on every mini-batch of low-level logic. Each mistake
raises its own error (``docs/api.md`` lists them):

- an undeclared parameter, pulled or pushed: :class:`~tables.params.UnknownParameterError`;
- a delta of the wrong shape, of non-numbers, or with NaN or Inf:
  :class:`~tables.contract.BadPushError` (``reason`` ``wrong_shape``, ``wrong_type`` or
  ``non_finite_delta``);
- a record with no output, or two, or an output that is not JSON-serialisable, or, for
  a classification task, a numeric output that is not a probability in [0, 1]:
  :class:`~agents.logic.OutputError`;
- parameters that are not declared properly, or a logic object that
  :func:`kafka_ps.run` cannot pickle for the job's processes:
  :class:`~agents.logic.LogicError`.

The error says which mini-batch it happened in (in a note).
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kafka_ps.agents.adapter import as_batch_logic
from kafka_ps.agents.api import (
    BatchWorkerLogic,
    ParamSpec,
    TrainingRecord,
    WorkerLogic,
)
from kafka_ps.agents.local import LocalParameterServer, Session
from kafka_ps.agents.logic import Logic, LogicError, OutputError
from kafka_ps.agents.records import record_from_fields
from kafka_ps.tables.reals import is_real

__all__ = ["check_logic", "pickle_logic", "sample_records"]

TASKS = ("classification", "regression")


def sample_records(
    logic: Logic | WorkerLogic | BatchWorkerLogic, n: int = 64, seed: int = 0
) -> list[TrainingRecord]:
    """A small synthetic stream for logic that takes any features.

    Each record has numeric features ``x0``..``x3``, a categorical feature ``c``, a dense
    vector as long as the logic's first one-dimensional parameter (4 if it has none), and
    a label: 0 or 1 for classification, a real number for regression.
    """
    rng = np.random.default_rng(seed)
    dims = [spec.shape[0] for spec in logic.params if len(spec.shape) == 1]
    dim = dims[0] if dims else 4
    x = rng.normal(size=(n, dim))
    margin = x @ rng.normal(size=dim)
    if getattr(logic, "task", "regression") == "classification":
        labels = (margin > 0).astype(np.float64)
    else:
        labels = margin + rng.normal(0.0, 0.1, n)
    return [
        TrainingRecord(
            features={**{f"x{j}": float(x[t, j % dim]) for j in range(4)}, "c": f"v{t % 5}"},
            dense=x[t],
            label=float(labels[t]),
            key=b"r%d" % t,
            offset=t,
        )
        for t in range(n)
    ]


def _check_declarations(logic: Logic | WorkerLogic | BatchWorkerLogic) -> None:
    params = getattr(logic, "params", None)
    if not isinstance(params, Sequence) or not params:
        raise LogicError("the logic declares no parameters: set params to a list of ParamSpec")
    for spec in params:
        if not isinstance(spec, ParamSpec):
            raise LogicError(f"params holds a {type(spec).__name__}, not a ParamSpec")
    names = [spec.name for spec in params]
    if len(set(names)) != len(names):
        raise LogicError(f"parameter names must be unique: {names}")
    task = getattr(logic, "task", None)
    if task not in TASKS:
        raise LogicError(f"task must be one of {TASKS}, got {task!r}")


def pickle_logic(logic: Logic | WorkerLogic | BatchWorkerLogic) -> bytes:
    """``logic`` pickled, as :func:`kafka_ps.run` ships it to the job's processes.

    Raises :class:`~agents.logic.LogicError` if it cannot be pickled (a lock, a lambda or a
    local class in it) or could not be unpickled there: a class defined in ``__main__``
    pickles by a name that the processes' ``__main__`` does not have.
    """
    cls = type(logic)
    if cls.__module__ == "__main__":
        raise LogicError(
            f"{cls.__qualname__} is defined in __main__, which the job's processes cannot "
            "import: define it in a module, or pass 'module:factory'"
        )
    try:
        return pickle.dumps(logic)
    except Exception as error:
        raise LogicError(f"the logic cannot be pickled for the job's processes: {error}") from error


def check_logic(
    logic: Logic | WorkerLogic | BatchWorkerLogic,
    records: Sequence[Mapping[str, Any] | TrainingRecord] | None = None,
    batch_size: int = 16,
    *,
    picklable: bool = True,
) -> LocalParameterServer:
    """Run ``logic`` over ``records`` in process and raise at its first mistake.

    Parameters
    ----------
    logic
        A :class:`~agents.logic.Logic`, :class:`~agents.api.WorkerLogic` or
        :class:`~agents.api.BatchWorkerLogic` instance. Its hooks run as on a runtime.
    records
        Records it should learn from, as :func:`kafka_ps.run` takes them: mappings with
        the fields of :func:`~agents.records.encode_record` (parsed as a worker parses
        them) or :class:`~agents.api.TrainingRecord` objects; by default
        :func:`sample_records`.
    batch_size
        Records per mini-batch.
    picklable
        Check that the logic pickles for the job's processes (:func:`pickle_logic`), as
        :func:`kafka_ps.run` needs of a logic object. False for a logic only ever given
        by name (``module:factory``), which every process builds itself.

    Returns
    -------
    LocalParameterServer
        The server it ran on: ``snapshot()`` holds the learned values, ``outputs`` the
        outputs.
    """
    _check_declarations(logic)
    batch_logic = as_batch_logic(logic)  # a Logic's rules are checked here (LogicError)
    if picklable:
        pickle_logic(logic)
    if records is None:
        records = sample_records(logic)
    if not records:
        raise ValueError("check_logic needs at least one record")
    parsed = [
        item if isinstance(item, TrainingRecord) else record_from_fields(item, offset)
        for offset, item in enumerate(records)
    ]
    server = LocalParameterServer(batch_logic.params)
    asyncio.run(_run(server, batch_logic, parsed, batch_size))
    return server


async def _run(
    server: LocalParameterServer,
    logic: BatchWorkerLogic,
    records: Sequence[TrainingRecord],
    batch_size: int,
) -> None:
    """:meth:`LocalParameterServer.arun`, checking every mini-batch's outputs."""
    logic.open()
    try:
        for number, start in enumerate(range(0, len(records), batch_size)):
            batch = records[start : start + batch_size]
            session = Session(server)
            try:
                await logic.on_batch(batch, session)
                _check_outputs(batch, session, logic.task)
                server.apply(session.pushes)
            except Exception as error:
                error.add_note(
                    f"check_logic: in mini-batch {number} (records {start} to "
                    f"{start + len(batch) - 1})"
                )
                raise
            server.outputs.extend(session.outputs)
        logic.end_of_input()
    finally:
        logic.close()


def _check_outputs(batch: Sequence[TrainingRecord], session: Session, task: str) -> None:
    """As many outputs as records, each JSON-serialisable (a :class:`~agents.logic.Logic`'s
    adapter checks each record's output itself, on every runtime), and for classification
    each numeric one a probability: the metrics score it by logloss, which a raw score or
    logit would make meaningless (or infinite) without any error on Kafka."""
    outputs = session.outputs
    if len(outputs) != len(batch):
        raise OutputError(
            f"{len(outputs)} outputs for {len(batch)} records: every record needs exactly one"
        )
    for t, output in enumerate(outputs):
        try:
            json.dumps({"value": output.value, "extra": dict(output.extra)})
        except (TypeError, ValueError) as error:
            raise OutputError(f"output {t} is not JSON-serialisable: {error}") from None
        value = output.value
        # NaN fails the comparison too.
        if task == "classification" and is_real(value) and not 0.0 <= value <= 1.0:
            raise OutputError(
                f"output {t} is {value!r}, not a probability in [0, 1]: a classification "
                "logic outputs the probability of label 1 (a logit needs a sigmoid)"
            )
