"""Each worker and server process of a real job serves its own Prometheus metrics."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.packer import training_topic
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from tests.cli import free_port
from tests.integration.flights_job import RECORDS, learn_flights, watched

pytestmark = pytest.mark.broker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample on the process's page, by name and labels (without ``job``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if k != "job")): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that have ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, got), value in samples.items() if n == name and wanted <= got)


def scrape_until(port: int, done: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    deadline = Deadline(timeout)
    samples = scrape(port)
    while not done(samples) and not deadline.passed():
        deadline.sleep(0.5)
        samples = scrape(port)
    return samples


def test_workers_and_servers_serve_their_own_metrics(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = watched(job_settings)
    ports = {"server": free_port(), "worker": free_port()}
    learn_flights(
        process_factory,
        {job: settings.model_copy(update={"metrics_port": port}) for job, port in ports.items()},
    )

    def lag(role: str, topic: str, partition: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return f"kps_{role}_consumer_lag", frozenset({("topic", topic), ("partition", partition)})

    training = training_topic(settings)
    worker = scrape_until(
        ports["worker"],  # lag is refreshed every metrics_interval
        lambda s: (
            total(s, "kps_worker_records_learned_total") == RECORDS
            and s.get(lag("worker", training, "0")) == s.get(lag("worker", training, "1")) == 0
        ),
    )
    assert total(worker, "kps_worker_records_learned_total") == RECORDS
    assert total(worker, "kps_worker_records_learned_total", worker="0") > 0
    assert total(worker, "kps_worker_records_learned_total", worker="1") > 0
    for shard in ("0", "1"):
        assert total(worker, "kps_worker_pull_seconds_count", shard=shard) > 0
        assert total(worker, "kps_worker_pull_seconds_sum", shard=shard) > 0
    assert total(worker, "kps_worker_push_seconds_count", worker="0") > 0
    assert total(worker, "kps_worker_dead_letters_total", reason="not_object") == 1
    for partition in ("0", "1"):
        assert worker[lag("worker", training, partition)] == 0
        loss = ("worker", partition), ("metric", "logloss")
        assert 0 < worker[("kps_worker_progressive_loss", frozenset(loss))] < 1
        assert worker[("kps_worker_samples_per_second", frozenset({("worker", partition)}))] > 0

    # The server's lag, like the worker's, appears at its next metrics_interval refresh.
    server = scrape_until(
        ports["server"],
        lambda s: all(lag("server", settings.topic("shard"), shard) in s for shard in ("0", "1")),
    )
    for shard in ("0", "1"):
        assert total(server, "kps_server_pushes_applied_total", shard=shard) > 0
        assert total(server, "kps_server_keys_applied_total", shard=shard) > 0
        assert total(server, "kps_server_pulls_answered_total", shard=shard) > 0
        assert total(server, "kps_server_push_seconds_count", shard=shard) > 0
        assert total(server, "kps_server_flush_seconds_count", shard=shard) > 0
        assert total(server, "kps_server_table_written_bytes_total", shard=shard) > 0
        assert total(server, "kps_server_keys", shard=shard) > 0
        assert total(server, "kps_server_value_bytes", shard=shard) > 0
        for partition in ("0", "1"):
            assert total(server, "kps_server_clock", shard=shard, worker=partition) > 0
        assert lag("server", settings.topic("shard"), shard) in server
    # The server's table holds every key the workers pushed (and nothing went to dead letters).
    assert not total(server, "kps_server_dead_letters_total")
