"""``kps exporter``: a job's metrics for Prometheus, read from Kafka (prometheus-client).

One exporter per job serves what ``kps status`` shows, so Prometheus needs no access to the
worker and server processes and they do no extra work per record.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.observe import JobSnapshot, JobWatcher


class JobMetrics:
    """Prometheus gauges of one job, updated from :class:`~app.observe.JobSnapshot`.

    Parameters
    ----------
    registry
        Where the gauges are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        worker = ["job", "worker"]
        self.records = Gauge("kps_records_learned", "Records learned", worker, registry=registry)
        self.rate = Gauge(
            "kps_samples_per_second", "Samples/s, last window", worker, registry=registry
        )
        self.loss = Gauge(
            "kps_progressive_loss", "Progressive loss", [*worker, "metric"], registry=registry
        )
        self.lag = Gauge(
            "kps_consumer_lag",
            "Records not yet committed",
            ["job", "role", "partition"],
            registry=registry,
        )
        self.dead = Gauge("kps_dead_letters", "Dead letters", ["job", "reason"], registry=registry)

    def update(self, job: str, snapshot: JobSnapshot) -> None:
        for worker, report in snapshot.workers.items():
            labels = (job, str(worker))
            self.records.labels(*labels).set(report.get("records", 0))
            self.rate.labels(*labels).set(report.get("samples_per_s", 0.0))
            for metric in ("logloss", "rmse", "accuracy"):
                if metric in report:
                    self.loss.labels(*labels, metric).set(report[metric])
        for role, states in snapshot.groups.items():
            for state in states:
                self.lag.labels(job, role, str(state.partition)).set(state.lag)
        for reason, count in snapshot.dead_letters.items():
            self.dead.labels(job, reason).set(count)


def serve(
    settings: JobSettings, port: int, interval: float = 5.0, rounds: int | None = None
) -> None:
    """Serve ``/metrics`` on ``port``, refreshed every ``interval`` seconds, ``rounds`` times
    or forever."""
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    start_http_server(port, registry=registry)
    watcher = JobWatcher(settings)
    try:
        done = 0
        while rounds is None or done < rounds:
            metrics.update(settings.app_id, watcher.poll())
            done += 1
            time.sleep(interval)
    finally:
        watcher.close()
