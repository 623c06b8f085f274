"""Each process's own Prometheus metrics, served on ``KPS_METRICS_PORT`` (prometheus-client).

``kps exporter`` (app/exporter.py) serves a job's metrics as its metrics topic and consumer
groups show them, from anywhere; these are what one worker or server process measures
itself: pull and push latencies, flush times, clocks, table sizes, and lag as its consumer
sees it. Updates cost once per mini-batch, pull, push message or flush, never per record or
key; what a process counts anyway (dead letters, progressive metrics) is read only when
Prometheus scrapes. Every metric is listed in docs/operations.md#metrics.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar, TypeVar

import faust
from faust.types import TP, ConsumerT
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase

from kafka_ps.agents.faust_compat import read_offset
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.errors import UsageError
from kafka_ps.tables.shard import FlushResult, PushResult, Shard

#: Seconds: from a round trip on one machine to a pull timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

M = TypeVar("M", bound=MetricWrapperBase)


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class ProcessTelemetry:
    """What every process measures: its consumer's lag and its dead letters by reason.

    Parameters
    ----------
    job
        The job's app id: the ``job`` label of every metric.
    dead_letters
        The process's dead-letter counts by reason (``DeadLetters.counts``), read at scrape.
    registry
        Where the metrics live; one of the process's own by default.
    """

    role: ClassVar[str]

    def __init__(
        self,
        job: str,
        dead_letters: Mapping[str, int],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.job = job
        self.registry = registry or CollectorRegistry()
        self._dead_letters = dead_letters
        self._lag = self.metric(
            Gauge,
            "consumer_lag",
            "Records between what this process has read of a partition and its end",
            ["topic", "partition"],
        )
        self._lagging: set[tuple[str, str]] = set()
        self.registry.register(self)

    def metric(self, kind: type[M], name: str, text: str, labels: Sequence[str], **kw: object) -> M:
        """A metric of this process's role, labelled ``job`` first."""
        return kind(f"kps_{self.role}_{name}", text, ["job", *labels], registry=self.registry, **kw)

    def per(
        self, kind: type[M], name: str, text: str, label: str, **kw: object
    ) -> Callable[[int], M]:
        """A metric labelled ``job`` and ``label``, as a function from a value of ``label``
        (a shard or a logical worker) to its child: labels() takes a lock and checks its
        arguments, so each child is looked up once."""
        metric = self.metric(kind, name, text, [label], **kw)
        return functools.cache(lambda value: metric.labels(self.job, str(value)))

    def update_lag(self, lag: Mapping[TP, int]) -> None:
        """Set the lag of the partitions assigned now; drop those no longer assigned."""
        now = {(tp.topic, str(tp.partition)): records for tp, records in lag.items()}
        for topic, partition in self._lagging - now.keys():
            _remove(self._lag, self.job, topic, partition)
        for (topic, partition), records in now.items():
            self._lag.labels(self.job, topic, partition).set(records)
        self._lagging = set(now)

    def collect(self) -> Iterator[Metric]:
        """The metrics read at scrape time (the registry calls this)."""
        dead = CounterMetricFamily(
            f"kps_{self.role}_dead_letters",
            "Input sent to the dead-letter topic, by reason",
            labels=["job", "reason"],
        )
        for reason, count in dict(self._dead_letters).items():
            dead.add_metric([self.job, reason], count)
        yield dead


class WorkerTelemetry(ProcessTelemetry):
    """A learning process: records learned, pull and push times, progressive metrics.

    Parameters
    ----------
    job
        The job's app id: the ``job`` label of every metric.
    dead_letters
        The process's dead-letter counts by reason (``DeadLetters.counts``), read at scrape.
    progress
        Each logical worker's progressive metrics, read at scrape.
    registry
        Where the metrics live; one of the process's own by default.
    """

    role = "worker"

    def __init__(
        self,
        job: str,
        dead_letters: Mapping[str, int],
        progress: Mapping[int, ProgressiveMetrics],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._progress = progress
        super().__init__(job, dead_letters, registry)
        self._learned = self.per(Counter, "records_learned", "Records learned", "worker")
        self._pull = self.per(
            Histogram,
            "pull_seconds",
            "From sending a pull request to a shard to its reply",
            "shard",
            buckets=LATENCY_BUCKETS,
        )
        self._push = self.per(
            Histogram,
            "push_seconds",
            "Sending one mini-batch's pushes to the shards",
            "worker",
            buckets=LATENCY_BUCKETS,
        )

    def pulled(self, shard: int, seconds: float) -> None:
        """A pull from ``shard`` was answered ``seconds`` after it was sent."""
        self._pull(shard).observe(seconds)

    def batch_learned(self, worker: int, records: int, push_seconds: float) -> None:
        """Logical worker ``worker`` learned a mini-batch and sent its pushes."""
        self._learned(worker).inc(records)
        self._push(worker).observe(push_seconds)

    def collect(self) -> Iterator[Metric]:
        yield from super().collect()
        labels = ["job", "worker"]
        loss = GaugeMetricFamily(
            "kps_worker_progressive_loss",
            "Progressive validation over every record predicted so far",
            labels=[*labels, "metric"],
        )
        rate = GaugeMetricFamily(
            "kps_worker_samples_per_second",
            "Records predicted per second, last window",
            labels=labels,
        )
        for worker, progress in list(self._progress.items()):
            if not progress.records:
                continue
            classifying = progress.task == "classification"
            loss.add_metric(
                [self.job, str(worker), "logloss" if classifying else "rmse"], progress.loss
            )
            if classifying:
                accuracy = progress.correct / progress.records
                loss.add_metric([self.job, str(worker), "accuracy"], accuracy)
            if not math.isnan(progress.samples_per_s):
                rate.add_metric([self.job, str(worker)], progress.samples_per_s)
        yield loss
        yield rate


class ServerTelemetry(ProcessTelemetry):
    """A server process, per shard partition it owns: pushes, pulls, flushes, clocks, size.

    Parameters
    ----------
    job
        The job's app id: the ``job`` label of every metric.
    dead_letters
        The process's dead-letter counts by reason (``DeadLetters.counts``), read at scrape.
    workers
        How many logical workers (training partitions) the job has: one clock each.
    registry
        Where the metrics live; one of the process's own by default.
    """

    role = "server"

    def __init__(
        self,
        job: str,
        dead_letters: Mapping[str, int],
        workers: int,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(job, dead_letters, registry)
        self.workers = workers
        self._pushes = self.per(
            Counter, "pushes_applied", "Pushes applied (not replays the marks drop)", "shard"
        )
        self._keys_applied = self.per(
            Counter, "keys_applied", "Keys changed by pushes (replayed pages not counted)", "shard"
        )
        self._pulls = self.per(Counter, "pulls_answered", "Pull requests answered", "shard")
        self._push = self.per(
            Histogram,
            "push_seconds",
            "From a worker producing a push to this shard reading it (its Kafka timestamp)",
            "shard",
            buckets=LATENCY_BUCKETS,
        )
        self._flush = self.per(
            Histogram,
            "flush_seconds",
            "One flush: pages to the table, bookkeeping, model-updates, acknowledgements",
            "shard",
            buckets=LATENCY_BUCKETS,
        )
        self._written = self.per(
            Counter, "table_written_bytes", "Bytes of the pages flushed to the table", "shard"
        )
        self._keys = self.metric(Gauge, "keys", "Parameter keys the shard holds", ["shard"])
        self._bytes = self.metric(
            Gauge, "value_bytes", "Bytes of the parameter values the shard holds", ["shard"]
        )
        self._clock = self.metric(
            Gauge, "clock", "Each logical worker's vector clock on the shard", ["shard", "worker"]
        )

    def answered(self, shard: int) -> None:
        self._pulls(shard).inc()

    def push_read(self, shard: int, produced: float | None) -> None:
        """A push produced at ``produced`` (seconds since the epoch, if the message has a
        timestamp) was read now."""
        if produced is not None:
            self._push(shard).observe(max(time.time() - produced, 0.0))

    def applied(self, shard: int, result: PushResult) -> None:
        self._pushes(shard).inc()
        self._keys_applied(shard).inc(result.applied)

    def flushed(
        self, shard: Shard, written: FlushResult, seconds: float, clocks: Sequence[int]
    ) -> None:
        """``shard`` flushed ``written`` in ``seconds``; ``clocks`` are its workers' clocks."""
        partition = str(shard.shard)
        self._flush(shard.shard).observe(seconds)
        self._written(shard.shard).inc(written.bytes)
        slabs = list(shard.slabs.values())
        self._keys.labels(self.job, partition).set(sum(len(slab) for slab in slabs))
        size = sum(slab.slots[: len(slab)].nbytes for slab in slabs)
        self._bytes.labels(self.job, partition).set(size)
        for worker, clock in enumerate(clocks):
            self._clock.labels(self.job, partition, str(worker)).set(clock)

    def forget(self, shard: int) -> None:
        """The shard moved away: its size and clocks are another process's to report."""
        partition = str(shard)
        _remove(self._keys, self.job, partition)
        _remove(self._bytes, self.job, partition)
        for worker in range(self.workers):
            _remove(self._clock, self.job, partition, str(worker))


def consumer_lag(consumer: ConsumerT, topic: str) -> dict[TP, int]:
    """Per assigned partition of ``topic``: records past the last one the streams read, up to
    the end of the log as the consumer last heard it (no request to the broker)."""
    lag = {}
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        try:
            end = consumer.highwater(tp)
        except (AssertionError, AttributeError):  # revoked since: aiokafka asserts, or has
            continue  # no assignment in the middle of a rebalance
        read = read_offset(consumer, tp)
        if end is not None and read is not None:
            lag[tp] = max(end - read - 1, 0)
    return lag


def serve_metrics(
    app: faust.App, settings: JobSettings, telemetry: ProcessTelemetry, topic: str
) -> None:
    """Serve ``telemetry`` at ``/metrics`` on ``settings.metrics_port`` (nothing if it is 0),
    and update the lag of ``topic`` every ``metrics_interval`` seconds."""
    port, host = settings.metrics_port, settings.metrics_host
    if not port:
        return
    try:
        start_http_server(port, host, registry=telemetry.registry)
    except OSError as error:
        raise UsageError(f"KPS_METRICS_PORT={port}: cannot serve on {host}: {error}") from None

    @app.timer(settings.metrics_interval)
    async def update_lag() -> None:
        telemetry.update_lag(consumer_lag(app.consumer, topic))
