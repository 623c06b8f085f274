"""Per-process Prometheus metrics: fed numbers, scraped from their registry, no broker."""

from __future__ import annotations

import math
import socket
import time
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from faust.types import TP
from prometheus_client import generate_latest

from kafka_ps.agents.api import ParamRegistry, ParamSpec, Prediction
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.telemetry import ServerTelemetry, WorkerTelemetry, consumer_lag, serve_metrics
from kafka_ps.app.cli_errors import UsageError
from kafka_ps.app.train import job_processes
from kafka_ps.tables.shard import FlushResult, PushResult, Shard
from kafka_ps.tables.update_rules import make_rule
from tests.cli import free_port

JOB = "j"


def value(telemetry: WorkerTelemetry | ServerTelemetry, name: str, **labels: str) -> float | None:
    return telemetry.registry.get_sample_value(name, {"job": JOB, **labels})


def test_a_worker_counts_batches_and_times_pulls_and_pushes() -> None:
    telemetry = WorkerTelemetry(JOB, Counter(), {})
    telemetry.pulled(0, 0.003)
    telemetry.pulled(0, 0.2)
    telemetry.pulled(1, 0.004)
    telemetry.batch_learned(2, 1000, 0.001)
    telemetry.batch_learned(2, 24, 0.002)
    assert value(telemetry, "kps_worker_records_learned_total", worker="2") == 1024
    assert value(telemetry, "kps_worker_pull_seconds_count", shard="0") == 2
    assert value(telemetry, "kps_worker_pull_seconds_sum", shard="0") == pytest.approx(0.203)
    assert value(telemetry, "kps_worker_pull_seconds_bucket", shard="0", le="0.005") == 1
    assert value(telemetry, "kps_worker_pull_seconds_count", shard="1") == 1
    assert value(telemetry, "kps_worker_push_seconds_count", worker="2") == 2


def test_a_worker_shows_its_progressive_metrics_and_dead_letters_when_scraped() -> None:
    dead: Counter[str] = Counter()
    progress: dict[int, ProgressiveMetrics] = {}
    telemetry = WorkerTelemetry(JOB, dead, progress)
    assert "kps_worker_progressive_loss{" not in generate_latest(telemetry.registry).decode()

    # Counted after the telemetry was made: read at scrape time, not copied at start.
    dead["not_object"] += 2
    progress[1] = metrics = ProgressiveMetrics("classification")
    metrics.add_all(Prediction(p, y) for p, y in ((0.9, 1.0), (0.2, 0.0), (0.6, 0.0)))
    metrics.report(1)
    text = generate_latest(telemetry.registry).decode()
    assert 'kps_worker_dead_letters_total{job="j",reason="not_object"} 2.0' in text
    loss = value(telemetry, "kps_worker_progressive_loss", worker="1", metric="logloss")
    assert loss == pytest.approx(metrics.loss)
    accuracy = value(telemetry, "kps_worker_progressive_loss", worker="1", metric="accuracy")
    assert accuracy == pytest.approx(2 / 3)
    rate = value(telemetry, "kps_worker_samples_per_second", worker="1")
    assert rate == metrics.samples_per_s > 0


def test_a_regression_worker_shows_rmse_and_no_rate_before_its_first_window() -> None:
    metrics = ProgressiveMetrics("regression")
    metrics.add_all([Prediction(3.0, 1.0)])
    telemetry = WorkerTelemetry(JOB, Counter(), {0: metrics})
    assert value(telemetry, "kps_worker_progressive_loss", worker="0", metric="rmse") == 2.0
    assert value(telemetry, "kps_worker_progressive_loss", worker="0", metric="accuracy") is None
    assert math.isnan(metrics.samples_per_s)
    assert value(telemetry, "kps_worker_samples_per_second", worker="0") is None


def shard_with_keys(count: int, number: int = 3) -> Shard:
    shard = Shard(ParamRegistry([ParamSpec("w", (2,), make_rule("add"))]), shard=number)
    shard.push([b"w:%d" % i for i in range(count)], [np.ones(2)] * count, offset=0)
    return shard


def test_a_server_counts_pushes_and_pulls_and_reports_each_flush() -> None:
    telemetry = ServerTelemetry(JOB, Counter({"malformed": 1}), workers=2)
    telemetry.applied(3, PushResult(applied=5, skipped=1))
    telemetry.applied(3, PushResult(applied=2, skipped=0))
    telemetry.answered(3)
    telemetry.push_read(3, time.time() - 0.5)
    telemetry.push_read(3, None)  # a message without a timestamp
    shard = shard_with_keys(5)
    table: dict[bytes, bytes] = {}
    written = shard.flush(table)
    telemetry.flushed(shard, written, 0.02, [7, 4])
    telemetry.flushed(shard, FlushResult(0, 0), 0.01, [8, 4])

    assert value(telemetry, "kps_server_pushes_applied_total", shard="3") == 2
    assert value(telemetry, "kps_server_keys_applied_total", shard="3") == 7
    assert value(telemetry, "kps_server_pulls_answered_total", shard="3") == 1
    assert value(telemetry, "kps_server_push_seconds_count", shard="3") == 1
    assert 0.5 <= value(telemetry, "kps_server_push_seconds_sum", shard="3") < 5
    assert value(telemetry, "kps_server_flush_seconds_count", shard="3") == 2
    assert value(telemetry, "kps_server_flush_seconds_sum", shard="3") == pytest.approx(0.03)
    table_bytes = sum(len(page) for page in table.values())
    assert value(telemetry, "kps_server_table_written_bytes_total", shard="3") == table_bytes
    assert value(telemetry, "kps_server_keys", shard="3") == 5
    # 5 keys of 2 float64 values, one slot each (the "add" rule keeps no state).
    assert value(telemetry, "kps_server_value_bytes", shard="3") == 5 * 2 * 8
    assert value(telemetry, "kps_server_clock", shard="3", worker="0") == 8
    assert value(telemetry, "kps_server_clock", shard="3", worker="1") == 4
    assert value(telemetry, "kps_server_dead_letters_total", reason="malformed") == 1


def test_a_server_stops_reporting_the_size_and_clocks_of_a_shard_that_moved() -> None:
    telemetry = ServerTelemetry(JOB, Counter(), workers=2)
    for shard in (shard_with_keys(1, number=0), shard_with_keys(2, number=1)):
        telemetry.flushed(shard, FlushResult(1, 10), 0.01, [1, 1])
    telemetry.forget(0)
    telemetry.forget(5)  # never held: nothing to forget
    assert value(telemetry, "kps_server_keys", shard="0") is None
    assert value(telemetry, "kps_server_clock", shard="0", worker="1") is None
    assert value(telemetry, "kps_server_keys", shard="1") == 2
    # Counters stay: what this process did while it held the shard.
    assert value(telemetry, "kps_server_table_written_bytes_total", shard="0") == 10


def fake_consumer(
    assigned: dict[TP, tuple[int | None, int | None]], revoked: frozenset[TP] = frozenset()
) -> SimpleNamespace:
    """A Faust consumer with ``assigned`` partitions: (highwater, last offset read); those
    ``revoked`` are gone by the time their highwater is asked for."""

    def highwater(tp: TP) -> int | None:
        assert tp not in revoked, "Partition is not assigned"  # as aiokafka does
        return assigned[tp][0]

    return SimpleNamespace(
        assignment=lambda: set(assigned),
        highwater=highwater,
        _read_offset={tp: read for tp, (_, read) in assigned.items() if read is not None},
    )


def test_lag_counts_from_the_last_record_read_to_the_end_of_the_stream_topic() -> None:
    consumer = fake_consumer(
        {
            TP("in", 0): (100, 89),  # read 0..89: 10 to go
            TP("in", 1): (50, 49),  # caught up
            TP("in", 2): (None, 3),  # not fetched yet: unknown
            TP("in", 3): (7, None),  # nothing read yet: unknown
            TP("changelog", 0): (500, None),  # not a stream topic
        }
    )
    assert consumer_lag(consumer, "in") == {TP("in", 0): 10, TP("in", 1): 0}


def test_lag_skips_a_partition_revoked_while_it_is_read() -> None:
    consumer = fake_consumer({TP("in", 0): (9, 3), TP("in", 1): (9, 3)}, frozenset({TP("in", 1)}))
    assert consumer_lag(consumer, "in") == {TP("in", 0): 5}


def test_lag_of_a_partition_no_longer_assigned_is_dropped() -> None:
    telemetry = WorkerTelemetry(JOB, Counter(), {})
    telemetry.update_lag({TP("in", 0): 10, TP("in", 1): 0})
    assert value(telemetry, "kps_worker_consumer_lag", topic="in", partition="0") == 10
    telemetry.update_lag({TP("in", 1): 3})
    assert value(telemetry, "kps_worker_consumer_lag", topic="in", partition="0") is None
    assert value(telemetry, "kps_worker_consumer_lag", topic="in", partition="1") == 3


def fake_app() -> SimpleNamespace:
    """What serve_metrics uses of a Faust app: its timers, kept as (interval, function)."""
    timers: list[tuple[float, object]] = []

    def timer(interval: float) -> object:
        return lambda function: timers.append((interval, function))

    return SimpleNamespace(timer=timer, timers=timers)


def test_a_process_serves_its_metrics_on_its_port_and_only_when_given_one() -> None:
    app = fake_app()
    telemetry = ServerTelemetry(JOB, Counter({"too_large": 1}), workers=1)
    serve_metrics(app, JobSettings(metrics_port=0), telemetry, "t-shard")
    assert not app.timers

    port = free_port()
    serve_metrics(app, JobSettings(metrics_port=port, metrics_interval=2.0), telemetry, "t-shard")
    assert [interval for interval, _ in app.timers] == [2.0]  # the lag's
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'kps_server_dead_letters_total{job="j",reason="too_large"} 1.0' in text


def test_a_port_already_taken_stops_the_process_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        telemetry = WorkerTelemetry(JOB, Counter(), {})
        app = fake_app()
        with pytest.raises(UsageError, match=f"KPS_METRICS_PORT={port}: cannot serve"):
            serve_metrics(app, JobSettings(metrics_port=port), telemetry, "t-in")


def test_kps_train_gives_each_process_its_own_port_from_the_base_port(tmp_path: Path) -> None:
    ports = [
        process.settings.metrics_port
        for process in job_processes(JobSettings(metrics_port=9300), 2, 1, tmp_path)
    ]
    assert ports == [9300, 9301, 9302]
    unset = job_processes(JobSettings(), 2, 1, tmp_path)
    assert [process.settings.metrics_port for process in unset] == [0, 0, 0]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_mini_batch_of_predictions_scores_as_they_would_one_by_one(task: str) -> None:
    rng = np.random.default_rng(5)
    values = [float(v) for v in rng.uniform(0, 1, 50)] + [1.0, 0.0, 2, None, True, "x"]
    labels = [float(v) for v in rng.integers(0, 2, 50)] + [1.0, 1.0, 0.0, 1.0, 1.0, None]
    batch = ProgressiveMetrics(task)
    batch.add_all(Prediction(v, y) for v, y in zip(values, labels, strict=True))
    scored = [(v, y) for v, y in zip(values, labels, strict=True) if y is not None]
    scored = [(v, y) for v, y in scored if type(v) in (int, float)]
    if task == "classification":
        q = [min(max(v, 1e-15), 1 - 1e-15) for v, _ in scored]
        losses = [
            -(y * math.log(p) + (1 - y) * math.log(1 - p))
            for p, (_, y) in zip(q, scored, strict=True)
        ]
        assert batch.correct == sum((v >= 0.5) == (y >= 0.5) for v, y in scored)
    else:
        losses = [(v - y) ** 2 for v, y in scored]
    assert batch.records == batch.window_records == len(scored) == 53
    assert batch.loss_sum == pytest.approx(math.fsum(losses), rel=1e-12)
