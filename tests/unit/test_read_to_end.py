"""Reading a topic to the end it has now (agents/client.py), on a stand-in for confluent-kafka's
consumer: every message once, batches never larger than what is left, and a deadline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from kafka_ps.agents import client
from kafka_ps.agents.client import ToEnd, read_all


class Message:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._partition, self._offset, self._error = partition, offset, error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error


class Consumer:
    """A consumer of ``logs``: per partition, the offsets it holds (gaps where compacted)."""

    def __init__(self, logs: dict[int, Sequence[int]], stall: bool = False) -> None:
        self.logs = logs
        self.stall = stall
        self.assigned: list[int] = []
        self.positions: dict[int, int] = {}
        self.asked: list[int] = []
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        partitions = {p: None for p in self.logs}
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=partitions)})

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        offsets = self.logs[tp.partition]
        return (offsets[0], offsets[-1] + 1) if offsets else (0, 0)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [tp.partition for tp in partitions]

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.asked.append(num_messages)
        if self.stall:
            return []
        batch = []
        for p in self.assigned:
            after = self.positions.get(p, -1)
            batch += [Message(p, o) for o in self.logs[p] if o >= after][
                : num_messages - len(batch)
            ]
        for message in batch:
            self.positions[message.partition()] = message.offset() + 1
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, OFFSET_INVALID))
            for tp in partitions
        ]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Consumer]]:
    """The consumers the reads open, in order: append each before its read."""
    made: list[Consumer] = []
    monkeypatch.setattr(client, "_reader", lambda bootstrap: made.pop(0))
    yield made


def test_every_message_up_to_the_ends_once_and_the_consumer_closed(
    consumers: list[Consumer],
) -> None:
    fake = Consumer({0: range(5), 1: [], 2: [0, 3, 7]})  # partition 2 compacted
    consumers.append(fake)
    read = [(m.partition(), m.offset()) for m in read_all("b", "t", timeout=5)]
    assert read == [(0, o) for o in range(5)] + [(2, 0), (2, 3), (2, 7)]
    assert fake.assigned == [0, 2]  # an empty partition is not waited for
    assert fake.closed


def test_only_the_partitions_asked_for(consumers: list[Consumer]) -> None:
    consumers.append(Consumer({0: range(3), 1: range(2)}))
    assert [(m.partition(), m.offset()) for m in read_all("b", "t", [1])] == [(1, 0), (1, 1)]


def test_a_batch_is_never_larger_than_what_can_be_left(consumers: list[Consumer]) -> None:
    """consume() waits out its timeout for a batch it cannot fill."""
    fake = Consumer({0: range(25)})
    consumers.append(fake)
    with ToEnd("b", "t", timeout=5) as reading:
        sizes = [len(batch) for batch in reading.batches(10)]
    assert sizes == [10, 10, 5]
    assert fake.asked == [10, 10, 5]


def test_a_read_that_does_not_reach_the_end_in_time_raises(consumers: list[Consumer]) -> None:
    fake = Consumer({0: range(3)}, stall=True)
    consumers.append(fake)
    with pytest.raises(TimeoutError, match=r"reading t: partitions \[0\] not at end"):
        list(read_all("b", "t", timeout=0.0))
    assert fake.closed


def test_a_message_with_an_error_raises(consumers: list[Consumer]) -> None:
    fake = Consumer({0: range(3)})
    fake.consume = lambda n, t: [Message(0, 0, KafkaError(KafkaError._TRANSPORT))]  # type: ignore[method-assign]
    consumers.append(fake)
    with pytest.raises(KafkaException):
        list(read_all("b", "t", timeout=5))
    assert fake.closed
