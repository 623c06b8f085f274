"""Shutdown and restart: export the model on SIGTERM, warm-start a job from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from kafka_ps.agents.api import ParamRegistry
from kafka_ps.agents.client import produce
from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.jobs import load_logic, ps_topics
from kafka_ps.agents.model_export import read_model, read_npz, read_table
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import ensure_topics
from kafka_ps.app.datasets import flights
from kafka_ps.app.process import JobProcess, settings_env
from kafka_ps.app.termination import end_offsets, wait_until_learned
from kafka_ps.app.train import read_predictions, run_job, training_records
from kafka_ps.tables.keys import shard_of
from kafka_ps.tables.messages import Kind, PsMessage, decode_message, encode_message

Model = dict[bytes, np.ndarray]


def small_job(settings: JobSettings, **update: object) -> JobSettings:
    return settings.model_copy(
        update={"partitions": 2, "shards": 2, "model": "logreg_ftrl", "batch_size": 32, **update}
    )


def table_values(settings: JobSettings) -> Model:
    """Slot 0 of every parameter in the servers' table, read from its changelog."""
    stored = read_table(settings.broker, settings.topic("server-params-changelog"))
    return {key: np.array(slots[0]) for key, slots in stored.items()}


def assert_same_model(actual: Model, expected: Model) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, rtol=1e-12, err_msg=key.decode())


def kps_model(settings: JobSettings, out: Path) -> Model:
    """What ``kps model`` writes for the job."""
    env = {**os.environ, **settings_env(settings)}
    subprocess.run(
        [sys.executable, "-m", "kafka_ps.app.cli", "model", "--out", str(out)], env=env, check=True
    )
    return read_npz(out)


def pull(settings: JobSettings, keys: Sequence[bytes], timeout: float = 30.0) -> Model:
    """Ask the job's servers for ``keys`` as logical worker 0 would, with no worker running:
    the values a pull replies with, slot 0 of each."""
    registry = ParamRegistry(list(load_logic(settings.model, settings.model_params).params))
    by_shard: dict[int, list[bytes]] = {}
    for key in keys:
        by_shard.setdefault(shard_of(key, settings.shards), []).append(key)
    replies = TopicPartition(settings.topic("replies"), 0)
    consumer = Consumer({**confluent_config(settings.broker), "group.id": uuid.uuid4().hex})
    replies.offset = consumer.get_watermark_offsets(replies, 10)[1]
    consumer.assign([replies])
    produce(
        settings.broker,
        settings.topic("shard"),
        (
            (None, encode_message(PsMessage(Kind.PULL, 0, shard_keys, request_id=shard)), shard)
            for shard, shard_keys in by_shard.items()
        ),
    )
    values: Model = {}
    waiting = set(by_shard)
    deadline = Deadline(timeout)
    while waiting and not deadline.passed():
        for message in consumer.consume(10, 0.5):
            reply = decode_message(message.value())
            waiting.discard(reply.request_id)
            for key, flat in zip(reply.keys, reply.values, strict=True):
                spec = registry.spec_for(key)
                values[key] = flat.reshape(spec.slot_shape)[0]
    consumer.close()
    assert not waiting, f"no reply from shards {sorted(waiting)}"
    return values


def test_sigterm_stops_the_job_and_exports_what_the_servers_hold(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    # Servers flush only when they stop, so the export must wait for their last publish.
    # Exporting after the stop takes longer than the default stop bound on a busy machine;
    # the 10 s bound itself is tested in test_stopping.py.
    settings = small_job(
        job_settings, publish_interval=3600.0, flush_interval=3600.0, stop_timeout=60.0
    )
    ensure_topics(settings.broker, ps_topics(settings))
    produce(
        settings.broker,
        settings.input_topic,
        training_records(flights(limit=50_000), settings.partitions),
    )
    out, log = tmp_path / "model.npz", tmp_path / "driver.log"
    command = ["train", "--until-end", "--workers", "1", "--export-on-exit", str(out)]
    with log.open("w") as stdout:
        driver = subprocess.Popen(
            [sys.executable, "-m", "kafka_ps.app.cli", *command],
            env={**os.environ, **settings_env(settings)},
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        predictions = settings.topic("predictions")
        deadline = Deadline(120)
        while sum(end_offsets(settings.broker, predictions, settings.partitions).values()) == 0:
            assert driver.poll() is None, log.read_text()
            assert not deadline.passed(), "nothing learned in 120 s"
            deadline.sleep(0.5)
        driver.send_signal(signal.SIGTERM)
        driver.wait(120)
    finally:
        if driver.poll() is None:
            driver.kill()
    output = log.read_text()
    assert driver.returncode == 0, output
    assert "stopped before the end of the input" in output, output
    exported = read_npz(out)
    assert len(exported) > 100
    # Every parameter the servers held, with the value they held: at SIGTERM a server
    # publishes what its memory holds to model-updates before the export reads it. (Its
    # table holds what its flushes wrote; the rest reaches it on the replay at the next
    # start, docs/architecture.md.)
    assert_same_model(exported, read_model(settings.broker, settings.topic("model-updates")))
    assert_same_model(exported, kps_model(settings, tmp_path / "kps-model.npz"))


def test_warm_start_from_an_export_or_a_topic_and_restart_keeps_trained_values(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess], tmp_path: Path
) -> None:
    records = list(flights(limit=600))
    exported = tmp_path / "a.npz"
    first = small_job(job_settings, export_on_exit=str(exported))
    summary = run_job(first, records, "classification", workers=1, servers=1, logs=tmp_path)
    model_a = read_npz(exported)
    assert_same_model(model_a, read_model(first.broker, first.topic("model-updates")))
    trained = sorted(key for key, value in model_a.items() if value.any())
    assert len(trained) > 20, "too few non-zero weights to tell a warm start from a cold one"
    cold_key = b"w:" + str(next(i for i in range(2**20) if b"w:%d" % i not in model_a)).encode()

    # A second job on the .npz: its servers answer with the saved values before any push.
    second = small_job(
        job_settings,
        app_id=f"{job_settings.app_id}-b",
        input_topic=f"{job_settings.app_id}-b-input",
        data_dir=tmp_path / "b",
        warm_start=str(exported),
    )
    server = process_factory("server", second).start()
    server.wait_ready()
    assert_same_model(pull(second, [*model_a, cold_key]), {**model_a, cold_key: np.zeros(1)})

    # It goes on learning from there: a second pass over the data beats the first.
    worker = process_factory("worker", second).start()
    worker.wait_ready()
    produce(second.broker, second.input_topic, training_records(records, second.partitions))
    wait_until_learned(second, {p: len(records) // 2 for p in range(second.partitions)})
    assert worker.terminate() == 0, worker.log_tail()
    assert server.terminate() == 0, server.log_tail()
    count, loss, _ = read_predictions(second, "classification")
    assert count == len(records)
    assert loss < summary.loss * 0.95, (loss, summary.loss)
    model_b = read_model(second.broker, second.topic("model-updates"))
    moved = [key for key in trained if not np.allclose(model_b[key], model_a[key])]
    assert len(moved) > len(trained) // 2

    # Restarted with its local state wiped, so the table comes back from its changelog, and
    # the same warm start: trained values stay, keys never pushed still start as before.
    restarted = process_factory("server", second.model_copy(update={"data_dir": tmp_path / "b2"}))
    restarted.start().wait_ready()
    assert_same_model(pull(second, [*model_b, cold_key]), {**model_b, cold_key: np.zeros(1)})
    assert restarted.terminate() == 0, restarted.log_tail()

    # A third job on the first job's model-updates topic starts from the same values.
    third = small_job(
        job_settings,
        app_id=f"{job_settings.app_id}-c",
        input_topic=f"{job_settings.app_id}-c-input",
        data_dir=tmp_path / "c",
        warm_start=f"topic:{first.topic('model-updates')}",
    )
    server = process_factory("server", third).start()
    server.wait_ready()
    assert_same_model(pull(third, list(model_a)), model_a)
    assert server.terminate() == 0, server.log_tail()
    # It has changed nothing, so its model is the warm start's.
    assert_same_model(kps_model(third, tmp_path / "c.npz"), model_a)
