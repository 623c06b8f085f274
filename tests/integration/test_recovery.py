"""A shard table survives the loss of its disk, and a job survives a broker restart."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.chaos_driver import chaos_settings, counts_in_changelog
from kafka_ps.agents.client import produce
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.server import PARAMS_TABLE
from kafka_ps.agents.settings import JobSettings, LocalKafkaSettings
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import wait_until_learned
from kafka_ps.tables.local_state import RUNNING_MARK
from kafka_ps.tables.local_store import read_table
from kafka_ps.tables.pages import params_in_table
from tests.cli import free_port


def test_shard_table_rebuilt_from_changelog_bit_for_bit(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = job_settings.model_copy(
        update={"partitions": 2, "shards": 2, "batch_size": 32, "consistency": "ssp:1"}
    )
    server = process_factory("server", settings).start()
    worker = process_factory("worker", settings).start()
    rng = random.Random(3)
    records = [
        (
            None,
            encode_record(
                features={name: f"v{rng.randrange(40)}" for name in "abc"},
                label=float(rng.random() < 0.3),
            ),
            i % 2,
        )
        for i in range(3000)
    ]
    produce(settings.broker, settings.input_topic, records)
    wait_until_learned(settings, {0: 1500, 1: 1500})
    assert worker.terminate() == 0 and server.terminate() == 0
    # A clean stop leaves the state to be reused, not rebuilt.
    server_dir = server.settings.data_dir
    assert not (server_dir / RUNNING_MARK).exists()

    before = read_table(server_dir, PARAMS_TABLE)
    assert len(params_in_table(before)) > 100  # pages of parameters
    assert {b"__clock__:0", b"__clock__:1", b"__hwm__:0", b"__hwm__:1"} <= set(before)

    shutil.rmtree(server_dir)
    server.start().wait_log(b"Worker ready", 120)  # tables rebuilt, streams resumed
    assert server.terminate() == 0
    assert read_table(server_dir, PARAMS_TABLE) == before


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own, on free ports, so that restarting it disturbs no other
    test and no other broker on the machine."""
    broker = LocalKafka(
        LocalKafkaSettings(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    )
    broker.start()
    yield broker
    broker.stop()


def test_job_survives_a_broker_restart_and_loses_nothing(
    own_broker: LocalKafka, unique_name: str, tmp_path: Path
) -> None:
    settings = chaos_settings(
        JobSettings.for_run(
            unique_name,
            tmp_path / "data",
            broker=own_broker.settings.bootstrap,
            partitions=4,
            shards=2,
            batch_size=32,
        )
    )
    processes = [
        JobProcess(
            job,
            settings.model_copy(update={"data_dir": settings.data_dir / f"{job}-{i}"}),
            tmp_path / "logs" / f"{job}-{i}.log",
        )
        for job, i in (("worker", 0), ("worker", 1), ("server", 0))
    ]
    try:
        for process in processes:
            process.start().wait_ready()
        rng = random.Random(5)
        stream = [(f"k{rng.randrange(200)}", rng.randrange(4)) for _ in range(6000)]

        def feed(part: list[tuple[str, int]]) -> None:
            produce(
                settings.broker,
                settings.input_topic,
                ((None, encode_record(features={"key": k}), p) for k, p in part),
            )

        feed(stream[:3000])
        time.sleep(3)
        own_broker.stop()
        time.sleep(3)
        own_broker.start()
        late = threading.Thread(target=feed, args=(stream[3000:],))
        late.start()
        late.join()
        wait_until_learned(settings, dict(Counter(p for _, p in stream)), timeout=300)
        assert all(process.running for process in processes), [
            p.log_tail() for p in processes if not p.running
        ]
    finally:
        for process in processes:
            if process.running:
                process.terminate()
    assert counts_in_changelog(settings) == dict(Counter(k for k, _ in stream))
