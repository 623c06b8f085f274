"""A small flights job for the tests that watch one: a server process and a learning process."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kafka_ps.agents.client import produce
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import load
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import end_offsets, wait_until_learned
from kafka_ps.app.train import DEFAULT_PARAMS, training_records

RECORDS = 3000
#: What the job is sent besides its records: one that is not JSON (a ``not_object`` dead letter).
BAD_RECORD = (None, b"not json", 0)


def watched(settings: JobSettings) -> JobSettings:
    """``settings`` for the flights model on 2 partitions and 2 shards, with progressive-metrics
    windows of 500 records and dead-letter counts reported every second."""
    return settings.model_copy(
        update={
            "partitions": 2,
            "shards": 2,
            "metrics_window": 500,
            "metrics_interval": 1.0,
            "model_params": DEFAULT_PARAMS["flights"],
        }
    )


def learn_flights(
    process_factory: Callable[..., JobProcess], settings_of: Mapping[str, JobSettings]
) -> None:
    """Start a server and a learning process (with ``settings_of[role]``), produce ``RECORDS``
    flights records and :data:`BAD_RECORD`, and return once every record is learned."""
    processes = [process_factory(job, settings_of[job]) for job in ("server", "worker")]
    for process in processes:
        process.start()
    for process in processes:
        process.wait_log(b"Worker ready", 120)  # tables rebuilt, streams resumed
    settings = settings_of["worker"]
    records = training_records(load("flights", limit=RECORDS), settings.partitions)
    produce(settings.broker, settings.input_topic, [*records, BAD_RECORD])
    ends = end_offsets(settings.broker, settings.input_topic, settings.partitions)
    wait_until_learned(settings, ends, 300)
