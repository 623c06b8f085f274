"""The broker is real Apache Kafka, and confluent-kafka works against it end to end."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from kafka_ps.agents.client import produce
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.topics import TopicMismatchError, TopicSpec, ensure_topics
from kafka_ps.app.local_kafka import LocalKafka

RECORDS = 10_000


def test_broker_is_apache_kafka_4(kafka: str) -> None:
    log = LocalKafka().log_file.read_text(errors="replace")
    assert "Kafka version: 4.0." in log
    assert LocalKafka().status().running


def test_compacted_topic_round_trip_through_a_consumer_group(kafka: str, unique_name: str) -> None:
    topic = f"{unique_name}-compacted"
    ensure_topics(kafka, [TopicSpec(topic, 4, compacted=True)])
    admin = AdminClient(confluent_config(kafka))
    [config] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    assert config.result()["cleanup.policy"].value == "compact"
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4

    sent = produce(
        kafka, topic, ((f"key-{i}".encode(), str(i).encode(), None) for i in range(RECORDS))
    )
    assert sent == RECORDS

    group = f"{unique_name}-group"
    consumer = Consumer(
        {
            **confluent_config(kafka),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: set[int] = set()
    partitions_seen: set[int] = set()
    for _ in range(600):
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None
            values.add(int(message.value()))
            partitions_seen.add(message.partition())
        if len(values) >= RECORDS:
            break
    consumer.commit(asynchronous=False)
    consumer.close()
    assert values == set(range(RECORDS))
    assert partitions_seen == {0, 1, 2, 3}

    check = Consumer({**confluent_config(kafka), "group.id": group})
    committed = check.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
    check.close()
    assert sum(tp.offset for tp in committed) == RECORDS


def test_existing_topic_with_wrong_partition_count_is_refused(kafka: str, unique_name: str) -> None:
    topic = f"{unique_name}-{uuid.uuid4().hex[:4]}"
    ensure_topics(kafka, [TopicSpec(topic, 2)])
    with pytest.raises(TopicMismatchError, match="has 2 partitions, the job needs 3"):
        ensure_topics(kafka, [TopicSpec(topic, 3)])
