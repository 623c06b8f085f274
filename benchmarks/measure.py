"""Measurements read off a job's topics with confluent-kafka: the transport's consume rate,
the bytes each topic carries, and how many key updates the shards were sent."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka_ps.agents.client import ToEnd, read_all
from kafka_ps.agents.server import PARAMS_TABLE
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.messages import Kind, MessageError, decode_message

#: Messages per ``Consumer.consume`` call in the raw consume measurement.
CONSUME_BATCH = 10_000


@dataclass(frozen=True)
class ConsumeRate:
    messages: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def raw_consume_rate(
    bootstrap: str, topic: str, partitions: int, timeout: float = 600.0
) -> ConsumeRate:
    """Read ``topic`` from its beginning to its current end offsets with
    ``consume(num_messages=10000)`` and nothing else per message: the transport's limit.
    A read that takes more than ``timeout`` seconds raises TimeoutError.

    The clock starts at the first ``consume`` call, so it includes the first fetch but not
    connecting or assigning."""
    with ToEnd(bootstrap, topic, range(partitions), timeout) as reading:
        started = time.perf_counter()
        count = sum(len(batch) for batch in reading.batches(CONSUME_BATCH))
        return ConsumeRate(count, time.perf_counter() - started)


@dataclass(frozen=True)
class TopicBytes:
    records: int
    #: Sum of key and value lengths: the payload, without Kafka's record and batch headers.
    bytes: int


def topic_bytes(bootstrap: str, topic: str) -> TopicBytes:
    """Records and key+value bytes a topic holds now (a compacted topic's cleaned records
    are gone; a short run's active segment is never cleaned)."""
    records = size = 0
    for message in read_all(bootstrap, topic):
        records += 1
        size += len(message.key() or b"") + len(message.value() or b"")
    return TopicBytes(records, size)


def applied_key_updates(bootstrap: str, shard_topic: str) -> int:
    """Keys in every push on the shard topic: the key updates the workers sent to apply."""
    total = 0
    for message in read_all(bootstrap, shard_topic):
        try:
            push = decode_message(message.value())
        except MessageError:  # not a pull or push (a control message): no key updates
            continue
        if push.kind is Kind.PUSH:
            total += len(push.keys)
    return total


def wire_topics(settings: JobSettings) -> dict[str, str]:
    """The topics whose bytes per applied key update the bench reports, by short name."""
    return {
        "shard": settings.topic("shard"),
        "replies": settings.topic("replies"),
        "changelog": settings.topic(f"server-{PARAMS_TABLE}-changelog"),
        "model-updates": settings.topic("model-updates"),
    }


def bytes_per_update(settings: JobSettings, updates: int) -> dict[str, float]:
    """Key+value bytes on each of a finished job's wire topics per applied key update
    (``updates``, from :func:`applied_key_updates`); NaN if there were none."""
    topics = wire_topics(settings)
    if not updates:
        return {name: float("nan") for name in topics}
    return {
        name: topic_bytes(settings.broker, topic).bytes / updates for name, topic in topics.items()
    }
