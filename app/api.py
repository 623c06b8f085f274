"""``kafka_ps.run``: train a logic on Kafka from Python (``docs/api.md``).

It composes what ``kps train`` does (:func:`app.train.run_job`: topics, worker and server
processes, the input streamed in, termination, summary) and adds what a Python caller
needs: the logic object reaches the child processes, the logic's own errors are raised
here, and the summary is returned.
"""

from __future__ import annotations

import itertools
import pickle
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka_ps.agents.api import BatchWorkerLogic, TrainingRecord, WorkerLogic
from kafka_ps.agents.checks import check_logic, pickle_logic
from kafka_ps.agents.client import read_all
from kafka_ps.agents.jobs import PICKLED, load_logic
from kafka_ps.agents.logic import Logic, LogicError
from kafka_ps.agents.records import BadRecordError, parse_record
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import ProcessDied
from kafka_ps.app.train import Summary, run_job
from kafka_ps.tables.clocks import Consistency
from kafka_ps.tables.dead_letters import Blame

__all__ = ["JobError", "LogicFailed", "run"]

AnyLogic = Logic | WorkerLogic | BatchWorkerLogic


class JobError(ProcessDied):
    """A process of the job died.

    Parameters
    ----------
    message
        Which process, and the end of its log.
    """


class LogicFailed(LogicError):
    """The logic raised on some records on Kafka; they went to dead letters.

    Parameters
    ----------
    counts
        Dead letters per reason the logic is to blame for.
    details
        The first few errors, as the workers recorded them.
    summary
        The job's summary (the other records were learned).
    """

    def __init__(self, counts: dict[str, int], details: list[str], summary: Summary) -> None:
        shown = "; ".join(details)
        super().__init__(f"the logic failed on {sum(counts.values())} records ({counts}): {shown}")
        self.counts = counts
        self.details = details
        self.summary = summary


def run(
    logic: AnyLogic | str,
    source: Iterable[Mapping[str, Any] | TrainingRecord] | str,
    *,
    params: Mapping[str, Any] | None = None,
    worker_processes: int = 1,
    server_processes: int = 1,
    consistency: str = "asp",
    partitions: int | None = None,
    shards: int | None = None,
    batch_size: int | None = None,
    settings: JobSettings | None = None,
    check: bool = True,
    logs: Path | None = None,
    workers: int | None = None,
    servers: int | None = None,
) -> Summary:
    """Train ``logic`` on ``source`` through Kafka; return the job's summary.

    Parameters
    ----------
    logic
        A :class:`~agents.logic.Logic` (or low-level logic) object, pickled for the child
        processes, so its class must be importable (not defined in ``__main__``); or a
        built-in model's name or ``"package.module:factory"``, built with ``params``.
    source
        Training records: mappings with the fields of ``encode_record`` (``features``,
        ``dense``, ``label``, ``key``, ``ts``) or :class:`~agents.api.TrainingRecord`
        objects; or the name of a topic that holds training records, learned up to the
        end it has when the job starts.
    params
        The factory's keyword arguments when ``logic`` is a name.
    worker_processes
        Worker processes (the logical workers, ``partitions``, are spread over them).
    server_processes
        Server processes (the ``shards`` are spread over them).
    consistency
        ``"asp"``, ``"bsp"`` or ``"ssp:<s>"``.
    partitions
        Logical workers (training partitions); default: the settings' (``KPS_PARTITIONS``).
    shards
        Server shards; default: the settings'.
    batch_size
        Records per mini-batch; default: the settings'.
    settings
        The job's base settings (broker, security, ...); default: ``KPS_*`` variables.
        Every run gets an app id of its own (``<app_id>-run-<time>-<random>``), an input
        topic named after it and a data directory under the settings'.
    check
        Run :func:`~agents.checks.check_logic` on a copy of the logic over the first two
        mini-batches first, so that a mistake raises here before any process starts.
    logs
        Where the processes' logs go; default: the job's data directory.
    workers, servers
        Deprecated names of ``worker_processes`` and ``server_processes`` (they count
        processes, not logical workers or shards); they warn, and go in the next release.

    Raises
    ------
    UnknownParameterError, BadPushError, OutputError, LogicError
        The check found a mistake (or the logic's own exception, from the check).
    LogicFailed
        The logic raised on records while the job ran on Kafka. Its ``__cause__`` is the
        logic's own exception, raised again in the caller on the first such record, when
        it fails there again.
    JobError
        A process of the job died.
    """
    worker_processes = _renamed("workers", workers, "worker_processes", worker_processes)
    server_processes = _renamed("servers", servers, "server_processes", server_processes)
    base = settings or JobSettings()
    run_id = f"{base.app_id}-run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    data_dir = base.data_dir / run_id
    update: dict[str, Any] = {
        "app_id": run_id,
        "input_topic": source if isinstance(source, str) else f"{run_id}-input",
        "data_dir": data_dir,
        "consistency": consistency,
    }
    for name, value in (("partitions", partitions), ("shards", shards), ("batch_size", batch_size)):
        if value is not None:
            update[name] = value
    job = base.model_copy(update=update)
    Consistency.parse(consistency)  # a bad one fails here, before anything starts
    model, model_params, fresh = _ship(logic, params, data_dir)
    job = job.model_copy(update={"model": model, "model_params": model_params})

    records: Iterable[Mapping[str, Any]] | None = None
    if not isinstance(source, str):
        fields = (_fields(item) for item in source)
        head = list(itertools.islice(fields, 2 * job.batch_size))
        if check and head:
            # _ship has pickled a logic object; one given by name is never pickled.
            check_logic(fresh(), head, job.batch_size, picklable=False)
        records = itertools.chain(head, fields)
    task = fresh().task
    try:
        summary = run_job(job, records, task, worker_processes, server_processes, logs)
    except ProcessDied as error:
        raise JobError(str(error)) from None
    letters = _logic_dead_letters(job)
    if letters.counts:
        failed = LogicFailed(letters.counts, letters.details, summary)
        raise failed from _reproduce(fresh, letters.first)
    return summary


def _renamed(old_name: str, old: int | None, new_name: str, new: int) -> int:
    """``new``, or ``old`` given by its deprecated keyword, with a warning."""
    if old is None:
        return new
    if new != 1:
        raise TypeError(f"run() got both {old_name}= and {new_name}=; {old_name} is its old name")
    warnings.warn(
        f"run({old_name}=) is deprecated: use {new_name}= (it counts processes)",
        DeprecationWarning,
        stacklevel=3,
    )
    return old


def _reproduce(fresh: Any, record: TrainingRecord | None) -> BaseException | None:
    """The logic's own exception, raised again here on the first record it failed on
    (learned alone, as the worker tried it), or None if it does not fail again."""
    if record is None:
        return None
    try:
        check_logic(fresh(), [record], 1, picklable=False)
    except Exception as error:
        error.add_note(
            f"raised again in the caller on the record the job's worker failed on "
            f"(partition {record.partition}, offset {record.offset})"
        )
        return error
    return None


def _ship(
    logic: AnyLogic | str, params: Mapping[str, Any] | None, data_dir: Path
) -> tuple[str, dict[str, Any], Any]:
    """The job's ``model`` and ``model_params`` settings for ``logic``, and a function
    that builds a fresh copy of it in this process."""
    if isinstance(logic, str):
        kwargs = dict(params or {})
        load_logic(logic, kwargs)  # a bad name or parameter fails here
        return logic, kwargs, lambda: load_logic(logic, kwargs)
    if params:
        raise TypeError("params is for a logic given by name; this logic is an object")
    data = pickle_logic(logic)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "logic.pickle"
    path.write_bytes(data)
    return f"{PICKLED}{path}", {}, lambda: pickle.loads(data)


def _fields(item: Mapping[str, Any] | TrainingRecord) -> dict[str, Any]:
    """``encode_record``'s keyword arguments for one source item."""
    if isinstance(item, TrainingRecord):
        return {
            "features": dict(item.features),
            "dense": item.dense,
            "label": item.label,
            "key": item.key.decode() if item.key is not None else None,
            "ts": item.timestamp,
        }
    return dict(item)


@dataclass
class _DeadLetters:
    """The dead letters the logic is to blame for."""

    counts: dict[str, int] = field(default_factory=dict)
    #: The first few details, as the workers recorded them.
    details: list[str] = field(default_factory=list)
    #: The first record the logic failed on.
    first: TrainingRecord | None = None


def _logic_dead_letters(settings: JobSettings, shown: int = 3) -> _DeadLetters:
    """Dead letters the logic is to blame for, per reason, the first few details, and the
    first such record."""
    found = _DeadLetters()
    for message in read_all(settings.broker, settings.topic("dead-letters")):
        headers = dict(message.headers() or [])
        if headers.get("kps-blame") != Blame.LOGIC.encode():
            continue
        reason = headers.get("kps-reason", b"").decode()
        found.counts[reason] = found.counts.get(reason, 0) + 1
        if len(found.details) < shown:
            found.details.append(headers.get("kps-detail", b"").decode(errors="replace"))
        if found.first is None:
            with suppress(BadRecordError, ValueError):
                found.first = parse_record(
                    message.value(),
                    int(headers.get("kps-partition", b"0")),
                    int(headers.get("kps-offset", b"-1")),
                )
    return found
