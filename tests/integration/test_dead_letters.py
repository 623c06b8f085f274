"""Bad input never crashes a process and never reaches the model: it goes to dead letters."""

from __future__ import annotations

import json
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from app.client import produce, wait_caught_up
from app.records import encode_record
from app.settings import JobSettings
from app.worker import WorkerProcess

BAD = {
    b"{not json": "malformed",
    b'{"features": {"user": "1", "item": "2"}, "label": "five"}': "wrong_type",
    b'{"features": {"user": "1", "item": NaN}, "label": 4}': "non_finite",
    b'{"features": {"x": "' + b"a" * 2_000_000 + b'"}, "label": 1}': "too_large",
    b'{"features": {"movie": "2"}, "label": 3}': "model_error",
}


def read_all(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t-dlq"})
    tp = TopicPartition(topic, 0, OFFSET_BEGINNING)
    _, end = consumer.get_watermark_offsets(tp, 10)
    consumer.assign([tp])
    messages = []
    while len(messages) < end:
        messages += [(m.value(), dict(m.headers() or [])) for m in consumer.consume(100, 1.0)]
    consumer.close()
    return messages


def test_bad_records_go_to_dead_letters_with_their_reason(
    job_settings: JobSettings, worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings = job_settings.model_copy(
        update={"partitions": 1, "shards": 2, "model": "mf", "batch_size": 16}
    )
    worker_factory("server", settings).start()
    worker = worker_factory("worker", settings).start()
    good = [
        encode_record(features={"user": str(i % 7), "item": str(i % 5)}, label=float(i % 5 + 1))
        for i in range(200)
    ]
    stream = good[:100] + list(BAD) + good[100:]
    produce(settings.broker, settings.input_topic, ((None, value, 0) for value in stream))
    wait_caught_up(settings.broker, settings.group("worker"), settings.input_topic, timeout=120)
    assert worker.running

    letters = read_all(settings.broker, settings.topic("dead-letters"))
    assert {value: headers["kps-reason"].decode() for value, headers in letters} == BAD
    for value, headers in letters:
        assert headers["kps-topic"].decode() == settings.input_topic
        assert int(headers["kps-offset"]) == stream.index(value)

    predictions = read_all(settings.broker, settings.topic("predictions"))
    assert len(predictions) == len(good)
    assert all(json.loads(value)["label"] is not None for value, _ in predictions)
