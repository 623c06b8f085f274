"""Run a training job end to end: worker processes, a data set streamed in, live metrics.

This is what ``kps train`` (and the README's main job) does: create the job's topics,
start N worker processes hosting worker and shard agents, stream a named data set into
the training topic, print the progressive metrics the workers publish as they go, and,
once every record is learned and every push applied, print a summary computed from the
predictions topic.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from app.client import Record, group_lag, produce
from app.datasets import DATASETS, RecordFields, load
from app.records import encode_record
from app.settings import REPO_ROOT, JobSettings
from app.worker import WorkerProcess

DEFAULT_MODELS = {"flights": "logreg_ftrl", "ml-100k": "mf", "ml-1m": "mf"}


def training_records(
    records: Iterable[RecordFields], partitions: int, progress_every: int = 0
) -> Iterator[Record]:
    """Time-ordered records dealt round-robin, so every partition stays in time order."""
    for i, fields in enumerate(records):
        if progress_every and i and i % progress_every == 0:
            print(f"  produced {i:,} records", file=sys.stderr, flush=True)
        key = fields.get("key")
        yield (key.encode() if key else None), encode_record(**fields), i % partitions


@dataclass(frozen=True)
class Summary:
    records: int
    loss: float
    accuracy: float | None
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.records / self.seconds


def read_predictions(settings: JobSettings, task: str) -> tuple[int, float, float | None]:
    """Progressive loss over every prediction the job published."""
    consumer = Consumer(
        {"bootstrap.servers": settings.broker, "group.id": f"kps-summary-{uuid.uuid4().hex}"}
    )
    topic = settings.topic("predictions")
    ends = {}
    for p in range(settings.partitions):
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
        if end:
            ends[p] = end
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    n, loss, correct = 0, 0.0, 0
    while ends:
        for message in consumer.consume(5000, 1.0):
            body = json.loads(message.value())
            if message.offset() + 1 >= ends.get(message.partition(), math.inf):
                del ends[message.partition()]
            if body["label"] is None:
                continue
            y, p = body["label"], body["value"]
            n += 1
            if task == "classification":
                q = min(max(p, 1e-15), 1 - 1e-15)
                loss -= y * math.log(q) + (1 - y) * math.log(1 - q)
                correct += int((p >= 0.5) == (y >= 0.5))
            else:
                loss += (p - y) ** 2
    consumer.close()
    mean = loss / max(n, 1)
    if task == "classification":
        return n, mean, correct / max(n, 1)
    return n, math.sqrt(mean), None


def _print_metrics(consumer: Consumer) -> None:
    for message in consumer.consume(100, 0.5):
        if message.error() is None:
            report = json.loads(message.value())
            shown = "  ".join(
                f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
                for name, value in report.items()
            )
            print(f"  metrics: {shown}", flush=True)


def run_training(
    dataset: str,
    workers: int = 2,
    servers: int = 1,
    limit: int | None = None,
    **overrides: object,
) -> Summary:
    spec = DATASETS[dataset]
    run = f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    settings = JobSettings(
        app_id=run,
        input_topic=f"{run}-training",
        data_dir=REPO_ROOT / ".kps" / run,
        model=DEFAULT_MODELS[dataset],
        metrics_window=20_000,
    ).model_copy(update=overrides)
    processes = [
        WorkerProcess(
            job,
            settings.model_copy(update={"data_dir": settings.data_dir / f"{job}-{i}"}),
            settings.data_dir / f"{job}-{i}.log",
        )
        for job, count in (("server", servers), ("worker", workers))
        for i in range(count)
    ]
    print(
        f"job {run}: {workers} worker and {servers} server processes, "
        f"{settings.partitions} training partitions, {settings.shards} shards, "
        f"model {settings.model}"
    )
    for process in processes:
        process.start()
    for process in processes:
        process.wait_ready()
    started = time.monotonic()
    feeder = threading.Thread(
        target=produce,
        args=(
            settings.broker,
            settings.input_topic,
            training_records(load(dataset, limit=limit), settings.partitions, 50_000),
        ),
    )
    feeder.start()
    metrics = Consumer(
        {
            "bootstrap.servers": settings.broker,
            "group.id": f"{run}-cli",
            "auto.offset.reset": "earliest",
        }
    )
    metrics.subscribe([settings.topic("metrics")])
    try:
        while feeder.is_alive() or any(
            group_lag(settings.broker, settings.group(role), topic)
            for role, topic in (
                ("worker", settings.input_topic),
                ("server", settings.topic("shard")),
            )
        ):
            _print_metrics(metrics)
            if not all(process.running for process in processes):
                raise RuntimeError(f"a worker process died:\n{processes[0].log_tail()}")
    finally:
        metrics.close()
        feeder.join()
        seconds = time.monotonic() - started
        for process in processes:
            process.terminate()
    records, loss, accuracy = read_predictions(settings, spec.task)
    return Summary(records, loss, accuracy, seconds)
