"""Run a training job end to end: learning processes, a data set streamed in, live metrics.

This is what ``kps train`` (and the README's main job) does: create the job's topics,
start its server and learning processes (``kps serve``, ``kps learn``), stream a named
data set into the training topic, print the progressive metrics the workers publish as they go, and,
once every record is learned and every push applied, print a summary computed from the
predictions topic.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import Consumer

from kafka_ps.agents.api import Task
from kafka_ps.agents.batches import encode_batch
from kafka_ps.agents.client import Record, read_all
from kafka_ps.agents.jobs import END_OF_INPUT
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.model_export import export_npz
from kafka_ps.agents.progress import ProgressBar
from kafka_ps.agents.records import BadRecordError, encode_fields
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.warm_start import load_warm_start
from kafka_ps.app.datasets import DATASETS, FLIGHT_CROSSES, PHISHING_FEATURES, RecordFields, load
from kafka_ps.app.feeder import Feeder
from kafka_ps.app.preflight import require_access
from kafka_ps.app.process import JobProcess, job_access, wait_first_ready
from kafka_ps.app.termination import Termination, end_offsets
from kafka_ps.tables.keys import stable_hash

DEFAULT_MODELS = {
    "flights": "logreg_ftrl",
    "phishing": "logreg_ftrl",
    "ml-100k": "mf",
    "ml-1m": "mf",
}
DEFAULT_PARAMS: dict[str, dict[str, object]] = {
    "flights": {"crosses": [list(cross) for cross in FLIGHT_CROSSES]},
    "phishing": {"numeric": list(PHISHING_FEATURES)},
}


def deal(fields: Mapping[str, Any], count: int, partitions: int, group_by: Sequence[str]) -> int:
    """The training partition of the ``count``-th record (from 0): round-robin, or with
    ``group_by`` the same for every record with the same values of those features.

    A logical worker is blind to the other workers' current mini-batch, so records that
    teach each other most (flights of one day at one airport: the day's congestion) are
    learned best by one worker, in order (docs/architecture.md, "Learning quality versus
    batching"). A record missing one of those features is dealt round-robin.
    """
    if not group_by:
        return count % partitions
    features = fields.get("features") or {}
    try:
        group = "\x1f".join([str(features[name]) for name in group_by])
    except KeyError:
        return count % partitions
    return _group_partition(group, partitions)


@lru_cache(maxsize=1 << 16)
def _group_partition(group: str, partitions: int) -> int:
    """Cached: a data set has far fewer groups than records (flights: one per day and airport)."""
    return stable_hash(group.encode()) % partitions


def training_records(
    records: Iterable[Mapping[str, Any]], partitions: int, group_by: Sequence[str] = ()
) -> Iterator[Record]:
    """Time-ordered records dealt to partitions by :func:`deal`, so every partition stays
    in time order."""
    for count, fields in enumerate(records, 1):
        key = fields.get("key")
        try:
            value = encode_fields(fields)
        except (BadRecordError, TypeError) as error:
            raise ValueError(f"record {count}: {error}") from None
        yield (key.encode() if key else None), value, deal(fields, count - 1, partitions, group_by)


#: Records per ``kps-batch`` message that :func:`batched_training_records` writes.
BATCH_RECORDS = 1000


def batched_training_records(
    records: Iterable[Mapping[str, Any]],
    partitions: int,
    per_message: int = BATCH_RECORDS,
    group_by: Sequence[str] = (),
) -> Iterator[Record]:
    """The records dealt as :func:`training_records` deals them, packed ``per_message`` to
    a ``kps-batch`` message per partition (agents/batches.py)."""
    pending: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for count, fields in enumerate(records):
        try:
            value = encode_fields(fields, "msgpack")
        except (BadRecordError, TypeError) as error:
            raise ValueError(f"record {count + 1}: {error}") from None
        partition = deal(fields, count, partitions, group_by)
        pending[partition].append(value)
        if len(pending[partition]) >= per_message:
            yield None, encode_batch(pending[partition]), partition
            pending[partition] = []
    for partition, values in pending.items():
        if values:
            yield None, encode_batch(values), partition


@dataclass(frozen=True)
class Summary:
    """What a finished job learned, from its predictions topic.

    Parameters
    ----------
    records
        Records predicted, each counted once.
    loss
        Progressive logloss (classification) or RMSE (regression).
    accuracy
        Progressive accuracy; None for regression.
    seconds
        From every process being ready to the input being learned.
    """

    records: int
    loss: float
    accuracy: float | None
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.records / self.seconds


class PredictedRecord(NamedTuple):
    """One record's entry in a predictions message (docs/formats.md)."""

    #: ``(partition, offset, index)``: the record's training offset and its index inside a
    #: ``kps-batch`` message (None for a one-record message).
    record: tuple[int, int, int | None]
    #: The record's own key, or None.
    key: str | None
    label: float | None
    value: float


def prediction_rows(body: dict[str, Any]) -> Iterator[PredictedRecord]:
    """Each record's entry in a predictions message's ``body``."""
    partition = body["partition"]
    for offset, index, key, label, value in zip(
        body["offsets"], body["indexes"], body["keys"], body["labels"], body["values"], strict=True
    ):
        yield PredictedRecord((partition, offset, index), key, label, value)


#: Seconds :func:`read_prediction_rows` may take to read the predictions topic to its end:
#: generous for a whole data set's predictions, and a broker that stops answering fails the
#: summary instead of hanging the job.
PREDICTIONS_TIMEOUT = 600.0

#: Predictions scored a numpy call at a time by :func:`read_predictions`.
SCORE_EVERY = 1 << 16


def read_prediction_rows(settings: JobSettings) -> Iterator[PredictedRecord]:
    """Every entry of every message on the job's predictions topic up to its current end,
    in each partition's order. A batch published again after a takeover appears again:
    readers count each record once by its ``record`` triple."""
    messages = read_all(
        settings.broker,
        settings.topic("predictions"),
        range(settings.partitions),
        PREDICTIONS_TIMEOUT,
    )
    for message in messages:
        yield from prediction_rows(json.loads(message.value()))


def read_predictions(settings: JobSettings, task: Task) -> tuple[int, float, float | None]:
    """Progressive loss over every prediction the job published, each record counted once,
    scored as the workers score them (:class:`~agents.metrics.ProgressiveMetrics`); a loss
    of 0 when none was scored."""
    metrics = ProgressiveMetrics(task)
    seen: set[tuple[int, int, int | None]] = set()
    fresh: list[PredictedRecord] = []
    for row in read_prediction_rows(settings):
        # A batch published again after a takeover is counted once.
        if row.record not in seen:
            seen.add(row.record)
            fresh.append(row)
            if len(fresh) == SCORE_EVERY:
                metrics.add_all(fresh)
                fresh.clear()
    metrics.add_all(fresh)
    return metrics.records, metrics.loss if metrics.records else 0.0, metrics.accuracy


def _print_metrics(consumer: Consumer, wait: float) -> None:
    """Print the metrics reports that arrived, waiting at most ``wait`` seconds for one."""
    for message in consumer.consume(100, wait):
        if message.error() is None:
            report = json.loads(message.value())
            shown = "  ".join(
                f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
                for name, value in report.items()
            )
            print(f"  metrics: {shown}", flush=True)


#: Seconds the driver waits for a metrics report while it only follows the job.
METRICS_WAIT = 0.5

#: The processes of a job, in the order they stop.
JOB_ROLES = ("worker", "server")


def job_processes(
    settings: JobSettings, workers: int, servers: int, logs: Path
) -> list[JobProcess]:
    """The job's worker and server processes, each with its own data directory and log, and
    with ``metrics_port`` set, its own metrics port: that port, the next one, and so on.

    Workers come first, so that stopping in this order lets the servers apply and publish
    every push the workers sent."""
    roles = [
        (job, i)
        for job, count in zip(JOB_ROLES, (workers, servers), strict=True)
        for i in range(count)
    ]
    base = settings.metrics_port
    return [
        JobProcess(
            job,
            settings.model_copy(
                update={
                    "data_dir": settings.data_dir / f"{job}-{i}",
                    "metrics_port": base + n if base else 0,
                }
            ),
            logs / f"{job}-{i}.log",
        )
        for n, (job, i) in enumerate(roles)
    ]


#: Given the job's processes once every one is ready, a context that is entered as the
#: clock of :attr:`Summary.seconds` starts and exited as it stops (``kps bench`` reads
#: each process's CPU time there).
Window = Callable[[Sequence[JobProcess]], AbstractContextManager[object]]


def run_job(
    settings: JobSettings,
    records: Iterable[RecordFields] | None,
    task: Task,
    workers: int = 2,
    servers: int = 1,
    logs: Path | None = None,
    feed: Iterable[Record] | None = None,
    window: Window | None = None,
    group_by: Sequence[str] = (),
) -> Summary:
    """Start ``servers`` + ``workers`` processes, stream ``records`` through, stop them all.

    ``records`` are dealt to the training partitions by :func:`deal` (round-robin, or by
    the ``group_by`` features).

    With ``records`` None the job learns what the training topic already holds, up to the
    end offsets it had at the start (``kps train --until-end``). ``feed``, if given, is
    produced instead of ``records``: Kafka records ready to send, in another encoding than
    :func:`training_records` or paced (as ``kps bench`` does). ``window``, if given, is
    entered and exited around the timed part of the job (:data:`Window`).

    Returns once every record is learned and every push applied (:mod:`app.termination`).
    Then, or when stopped by :class:`Stopped` or Ctrl-C, it stops the processes and writes
    the model to ``settings.export_on_exit`` if set; a job that failed writes nothing, so
    it never replaces a good file with a broken model.
    """
    # Before any process starts or topic is created: a principal without the ACLs the job
    # needs is told so in one line, and nothing is written.
    require_access(settings.broker, job_access(settings, JOB_ROLES), settings.connect_timeout)
    processes = job_processes(settings, workers, servers, logs or settings.data_dir)
    ended = False
    try:
        if feed is None and records is not None:
            feed = training_records(records, settings.partitions, group_by)
        seconds = _learn(settings, feed, processes, window or nullcontext)
        ended = True
        mark_end_of_input(processes)
    except (Stopped, KeyboardInterrupt):
        ended = True
        raise
    finally:
        stop_all(processes)
        if ended and settings.export_on_exit:
            export_on_exit(settings)
    return _summary(settings, task, seconds)


def mark_end_of_input(processes: list[JobProcess]) -> None:
    """Tell each worker process, before it is stopped, that the job learned its whole
    input, so that its logic's ``end_of_input()`` runs as it stops (agents/jobs.py)."""
    for process in processes:
        if process.job == "worker":
            (process.settings.data_dir / END_OF_INPUT).touch()


class Stopped(Exception):
    """The job was asked to stop (SIGTERM) before it finished."""


def stop_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Stopped` in the main thread, once, so that a job stops
    its processes and exports its model; a second SIGTERM ends this process at once."""

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Stopped

    signal.signal(signal.SIGTERM, stop)


def export_on_exit(settings: JobSettings) -> None:
    """Write the job's model, once every server has stopped: a server publishes its last
    changes to model-updates as it shuts down, so the topic is then complete."""
    count = export_npz(
        settings.broker,
        settings.topic("model-updates"),
        settings.export_on_exit,
        load_warm_start(settings),
    )
    print(f"exported {count:,} parameters to {settings.export_on_exit}", flush=True)


def _learn(
    settings: JobSettings,
    feed: Iterable[Record] | None,
    processes: list[JobProcess],
    window: Window,
) -> float:
    """Start the processes and follow the job until it has learned its input; seconds taken."""
    feeder = None if feed is None else Feeder(settings, feed)
    try:
        for process in processes:
            process.start()
        # The clock starts as the first process is ready: from then on it may learn what
        # the topic holds, while the others are still starting.
        wait_first_ready(processes)
        with window(processes):
            started = time.monotonic()
            for process in processes:
                process.wait_ready()
            if feeder is None:
                ends = end_offsets(settings.broker, settings.input_topic, settings.partitions)
                _follow(settings, None, processes, ends)
            else:
                feeder.open()
                _follow(settings, feeder, processes)
            return time.monotonic() - started
    finally:
        if feeder is not None:
            feeder.close()


def stop_all(processes: list[JobProcess], grace: float = 30.0) -> None:
    """SIGTERM each process in order; one that has not stopped within ``grace`` seconds
    (a worker still holding a BSP/SSP pull whose peers are gone) is SIGKILLed. Callers
    stop a job only once it has learned everything, so nothing is lost either way."""
    for process in processes:
        if process.running:
            with suppress(TimeoutError):
                process.terminate(grace)


def _summary(settings: JobSettings, task: Task, seconds: float) -> Summary:
    count, loss, accuracy = read_predictions(settings, task)
    return Summary(count, loss, accuracy, seconds)


def _follow(
    settings: JobSettings,
    feeder: Feeder | None,
    processes: list[JobProcess],
    ends: dict[int, int] | None = None,
) -> None:
    """Print the job's metrics until everything produced is learned and applied."""
    metrics = Consumer(
        {
            **confluent_config(settings.broker),
            "group.id": f"{settings.app_id}-cli",
            "auto.offset.reset": "earliest",
        }
    )
    metrics.subscribe([settings.topic("metrics")])
    termination = Termination(settings, ends) if ends is not None else None
    try:
        with ProgressBar("learning (input messages)") as bar:
            while termination is None or not termination.step():
                if termination is not None:
                    bar.update(*termination.progress())
                # While a termination is waited for, its steps set the pace: a wait here
                # put up to half a second between the job's end and the step that sees it.
                _print_metrics(metrics, METRICS_WAIT if termination is None else 0.0)
                for process in processes:
                    if not process.running:
                        raise process.died()
                if termination is None and feeder is not None and feeder.done:
                    ends = end_offsets(settings.broker, settings.input_topic, settings.partitions)
                    termination = Termination(settings, ends)
    finally:
        metrics.close()
        if feeder is not None:
            feeder.close()
        if termination is not None:
            termination.close()


def training_settings(dataset: str, configured: JobSettings) -> JobSettings:
    """``kps train``'s job for ``dataset``: a fresh app id, input topic and data directory,
    and ``configured`` settings otherwise.

    The data set's model stands in for the model's default when no model is configured,
    and its hyper-parameters go with its own model when none are configured."""
    run = f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    given = configured.model_fields_set
    model = configured.model if "model" in given else DEFAULT_MODELS[dataset]
    params = configured.model_params
    if "model_params" not in given and model == DEFAULT_MODELS[dataset]:
        params = DEFAULT_PARAMS.get(dataset, {})
    update = {
        "app_id": run,
        "input_topic": f"{run}-input",
        "data_dir": configured.data_dir / run,
        "model": model,
        "model_params": params,
    }
    return configured.model_copy(update=update)


def run_training(
    dataset: str,
    settings: JobSettings,
    workers: int = 2,
    servers: int = 1,
    limit: int | None = None,
) -> Summary:
    """``kps train``: a named data set through the job ``settings`` (:func:`training_settings`)
    on the configured broker."""
    print(
        f"job {settings.app_id}: {workers} worker and {servers} server processes, "
        f"{settings.partitions} training partitions, {settings.shards} shards, "
        f"model {settings.model}"
    )
    data = DATASETS[dataset]
    records = load(dataset, limit=limit)
    return run_job(settings, records, data.task, workers, servers, group_by=data.group_by)
