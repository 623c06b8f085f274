"""One worker, one shard, plain SGD through Kafka equals sequential numpy SGD."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from kafka_ps.agents.client import produce, read_all
from kafka_ps.agents.model_export import read_table
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import wait_until_learned
from kafka_ps.tables.messages import Kind, PsMessage, decode_message

LR = 0.01


def read_messages(bootstrap: str, topic: str) -> list[PsMessage]:
    return [decode_message(m.value()) for m in read_all(bootstrap, topic)]


def test_one_worker_one_shard_equals_sequential_sgd(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = job_settings.model_copy(
        update={
            "partitions": 1,
            "shards": 1,
            "batch_size": 32,
            "model": "tests.integration.logics:DenseSgd",
            "model_params": {"dim": 4, "lr": LR},
        }
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 4))
    y = x @ np.array([0.5, -1.0, 2.0, 0.25]) + rng.normal(scale=0.1, size=1500)
    server = process_factory("server", settings).start()
    worker = process_factory("worker", settings).start()
    produce(
        settings.broker,
        settings.input_topic,
        (
            (None, encode_record(dense=list(row), label=float(label)), 0)
            for row, label in zip(x, y, strict=True)
        ),
    )
    wait_until_learned(settings, {0: len(x)}, timeout=180)
    assert worker.terminate() == 0, worker.log_tail()
    assert server.terminate() == 0, server.log_tail()

    pushes = [
        m for m in read_messages(settings.broker, settings.topic("shard")) if m.kind is Kind.PUSH
    ]
    covered = [(p.first_offset, p.last_offset) for p in pushes]
    assert covered[0][0] == 0 and covered[-1][1] == len(x) - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(covered))
    assert len(pushes) > 1

    weights = np.zeros(4)
    for push in pushes:
        batch = slice(push.first_offset, push.last_offset + 1)
        gradient = ((x[batch] @ weights - y[batch])[:, None] * x[batch]).sum(axis=0)
        np.testing.assert_allclose(push.values[0], gradient, rtol=1e-9, atol=1e-9)
        weights = weights - LR * gradient

    stored = read_table(settings.broker, settings.topic("server-params-changelog"))
    np.testing.assert_allclose(stored[b"w:0"][0], weights, atol=1e-6)
    assert np.allclose(weights, [0.5, -1.0, 2.0, 0.25], atol=0.05)
