"""A RocksDB-backed Faust table survives a clean restart and the loss of its local disk."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable

from benchmarks.counter import COUNTS_TABLE, changelog_topic, decode_count, increment_records
from kafka_ps.agents.client import produce, read_latest, wait_caught_up
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from kafka_ps.tables.local_store import read_table

KEYS = [f"counter-{i}".encode() for i in range(250)]


def send_increments(settings: JobSettings, n: int, seed: int, expected: Counter[bytes]) -> None:
    rng = random.Random(seed)
    batch = [(rng.choice(KEYS), rng.randint(-3, 9)) for _ in range(n)]
    produce(
        settings.broker,
        settings.input_topic,
        increment_records(batch, settings.partitions),
    )
    for key, inc in batch:
        expected[key] += inc


def run_until_caught_up(worker: JobProcess, settings: JobSettings) -> None:
    """Let the worker apply everything produced so far, then stop it with SIGTERM."""
    wait_caught_up(settings.broker, settings.app_id, settings.input_topic, timeout=120)
    assert worker.terminate() == 0, worker.log_tail()


def local_counts(settings: JobSettings) -> dict[bytes, int]:
    return {k: decode_count(v) for k, v in read_table(settings.data_dir, COUNTS_TABLE).items()}


def changelog_counts(settings: JobSettings) -> dict[bytes, int]:
    topic = changelog_topic(settings, COUNTS_TABLE)
    return {k: decode_count(v) for k, v in read_latest(settings.broker, topic).items()}


def test_table_exact_after_restart_and_after_disk_loss(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    expected: Counter[bytes] = Counter()

    worker = process_factory().start()
    send_increments(job_settings, 5000, seed=1, expected=expected)
    run_until_caught_up(worker, job_settings)
    assert local_counts(worker.settings) == dict(expected)
    assert changelog_counts(job_settings) == dict(expected)

    # Clean restart: the table comes back from local RocksDB; new increments add to it.
    worker.start()
    send_increments(job_settings, 1000, seed=2, expected=expected)
    run_until_caught_up(worker, job_settings)
    assert local_counts(worker.settings) == dict(expected)

    # Disk loss: the restarted worker must rebuild every partition from the changelog.
    shutil.rmtree(worker.settings.data_dir)
    worker.start()
    send_increments(job_settings, 1000, seed=3, expected=expected)
    run_until_caught_up(worker, job_settings)
    assert local_counts(worker.settings) == dict(expected)
    assert changelog_counts(job_settings) == dict(expected)
    assert sum(expected.values()) != 0
