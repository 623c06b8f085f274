"""Bad input never crashes a process and never reaches the model (invariant 7).

Each kind of bad input is its own job: one bad record among good ones. It must land in the
dead-letter topic, bytes intact, with its reason; be counted on the metrics topic; leave
both processes running; and leave the model exactly as the good records alone make it.
The model sums ``label * dense`` (see ``BuggySum``), so that sum is known exactly.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from kafka_ps.agents.client import produce, read_all
from kafka_ps.agents.model_export import read_model
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import wait_until_learned
from kafka_ps.tables.messages import Kind, PsMessage, encode_message
from tests.integration.logics import WEIGHTS, BuggySum

DIM = BuggySum.dim
GOOD = 40
BAD_AT = 20
BAD_KEY = b"the-bad-one"


def buggy(bug: str) -> bytes:
    """A valid record the test logic misbehaves on; learned, it would add 5 to every weight."""
    return encode_record(features={"bug": bug}, dense=[1.0] * DIM, label=5.0)


CASES: dict[str, tuple[bytes, str]] = {
    "malformed-json": (b'{"dense": [1, 2, 3], "label": 1', "malformed"),
    "malformed-msgpack": (msgpack.packb({"dense": [1, 2, 3], "label": 1})[:-2], "malformed"),
    "wrong-type": (b'{"dense": [1, "2", 3], "label": 1}', "wrong_type"),
    "missing-label": (b'{"dense": [1, 2, 3]}', "missing_label"),
    "nan-feature": (b'{"dense": [1, NaN, 3], "label": 1}', "non_finite"),
    "inf-feature-msgpack": (
        msgpack.packb({"dense": [1.0, math.inf, 3.0], "label": 1}),
        "non_finite",
    ),
    "non-finite-delta": (buggy("non_finite_delta"), "non_finite_delta"),
    "oversized": (
        b'{"dense": [1, 2, 3], "label": 1, "key": "' + b"k" * (1 << 20) + b'"}',
        "too_large",
    ),
    "unknown-parameter": (buggy("unknown_parameter"), "unknown_parameter"),
    "wrong-shape": (buggy("wrong_shape"), "wrong_shape"),
    "model-error": (buggy("model_error"), "model_error"),
}


def entries(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """(key, value, headers) of every message in partition 0 of ``topic``."""
    return [(m.key(), m.value(), dict(m.headers() or [])) for m in read_all(bootstrap, topic, [0])]


def reports(bootstrap: str, settings: JobSettings) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value, _ in entries(bootstrap, settings.topic("metrics"))]


def last_counts(metrics: list[dict[str, Any]], role: str) -> dict[str, int]:
    """The dead-letter counts of the last report of ``role``'s only process."""
    mine = [report for report in metrics if report.get("role") == role]
    assert len({report["process"] for report in mine}) == 1
    return mine[-1]["dead_letters"]


def sum_job(settings: JobSettings) -> JobSettings:
    return settings.model_copy(
        update={
            "partitions": 1,
            "shards": 1,
            "batch_size": 8,
            "model": "tests.integration.logics:BuggySum",
            "metrics_window": 10,
            "metrics_interval": 0.5,
        }
    )


@pytest.mark.parametrize(("bad", "reason"), CASES.values(), ids=list(CASES))
def test_bad_input_is_dead_lettered_counted_and_never_learned(
    bad: bytes,
    reason: str,
    job_settings: JobSettings,
    process_factory: Callable[..., JobProcess],
) -> None:
    settings = sum_job(job_settings)
    server = process_factory("server", settings).start()
    worker = process_factory("worker", settings).start()
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, size=(GOOD, DIM)).astype(float)
    y = rng.integers(-2, 3, size=GOOD).astype(float)
    good = [
        (None, encode_record(dense=row, label=label), 0) for row, label in zip(x, y, strict=True)
    ]
    stream = [*good[:BAD_AT], (BAD_KEY, bad, 0), *good[BAD_AT:]]
    produce(settings.broker, settings.input_topic, stream)
    # Learned: pushes cover every offset, the bad record's too, and the shard applied them.
    wait_until_learned(settings, {0: len(stream)}, timeout=120)
    assert worker.running, worker.log_tail()
    assert server.running, server.log_tail()
    assert worker.terminate() == 0, worker.log_tail()
    assert server.terminate() == 0, server.log_tail()

    [(key, value, headers)] = entries(settings.broker, settings.topic("dead-letters"))
    assert (key, value) == (BAD_KEY, bad)
    assert headers["kps-reason"].decode() == reason
    assert headers["kps-topic"].decode() == settings.input_topic
    assert int(headers["kps-offset"]) == BAD_AT

    model = read_model(settings.broker, settings.topic("model-updates"))
    np.testing.assert_array_equal(model[WEIGHTS], y @ x)
    predicted = [
        offset
        for _, v, _ in entries(settings.broker, settings.topic("predictions"))
        for offset in json.loads(v)["offsets"]
    ]
    assert predicted == [i for i in range(GOOD + 1) if i != BAD_AT]

    metrics = reports(settings.broker, settings)
    assert last_counts(metrics, "worker") == {reason: 1}
    assert last_counts(metrics, "server") == {}
    windows = [report for report in metrics if "records" in report]
    assert windows[-1]["records"] > BAD_AT
    assert windows[-1]["dead_letters"] == {reason: 1}


def push(offset: int, keys: list[bytes], values: list[list[float]]) -> bytes:
    deltas = [np.array(value) for value in values]
    return encode_message(
        PsMessage(Kind.PUSH, 0, keys, deltas, first_offset=offset, last_offset=offset)
    )


def test_a_shard_dead_letters_bad_messages_from_any_client(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    """The last line of defence: pushes and pulls no kafka-ps worker would send."""
    settings = sum_job(job_settings)
    server = process_factory("server", settings).start()
    bad = {
        push(1, [b"nope:0"], [[1.0, 1.0, 1.0]]): "unknown_parameter",
        push(2, [WEIGHTS], [[1.0, 1.0, 1.0, 1.0]]): "wrong_shape",
        push(3, [WEIGHTS], [[1.0, math.nan, 1.0]]): "non_finite_delta",
        push(4, [WEIGHTS], [[math.inf, 1.0, 1.0]]): "non_finite_delta",
        encode_message(PsMessage(Kind.PULL, 0, [b"nope:0"], request_id=7)): "unknown_parameter",
        b"KM not a message": "malformed",
    }
    messages = [
        push(0, [WEIGHTS], [[1.0, 2.0, 3.0]]),
        *bad,
        push(5, [WEIGHTS], [[10.0, 20.0, 30.0]]),
    ]
    produce(settings.broker, settings.topic("shard"), ((None, m, 0) for m in messages))
    # No training input: the rule reduces to the shard having processed its whole topic.
    wait_until_learned(settings, {}, timeout=60)
    assert server.running, server.log_tail()
    assert server.terminate() == 0, server.log_tail()

    letters = entries(settings.broker, settings.topic("dead-letters"))
    assert {value: headers["kps-reason"].decode() for _, value, headers in letters} == bad
    assert [int(headers["kps-offset"]) for _, _, headers in letters] == [1, 2, 3, 4, 5, 6]
    model = read_model(settings.broker, settings.topic("model-updates"))
    np.testing.assert_array_equal(model[WEIGHTS], [11.0, 22.0, 33.0])
    assert last_counts(reports(settings.broker, settings), "server") == dict(Counter(bad.values()))
