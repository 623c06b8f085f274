"""Client SDK on confluent-kafka: produce records, read compacted topics, watch consumer lag."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from kafka_ps.agents.deadline import Deadline, wait_until
from kafka_ps.agents.progress import tracked
from kafka_ps.agents.security import confluent_config, producer_config

Record = tuple[bytes | None, bytes, int | None]
"""(key, value, partition); partition None lets the producer's partitioner choose."""


#: Records produced between two serves of the producer's delivery reports.
POLL_EVERY = 1000


def produce(bootstrap: str, topic: str, records: Iterable[Record], linger_ms: int = 5) -> int:
    """Produce every record, wait for all acknowledgements and return how many were acked."""
    errors: list[str] = []

    def on_delivery(error: object, _message: object) -> None:
        errors.append(str(error))

    # Reports only of failures: a Python callback per acknowledged record costs more than
    # producing it.
    producer = Producer(
        {
            **producer_config(bootstrap, linger_ms),
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    sent = 0
    for key, value, partition in records:
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if not sent % POLL_EVERY:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining or errors:
        raise KafkaException(f"{remaining} records unsent, {len(errors)} failed: {errors[:3]}")
    return sent


def _reader(bootstrap: str) -> Consumer:
    return Consumer(
        {
            **confluent_config(bootstrap),
            "group.id": f"kps-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )


class ToEnd:
    """A read of ``topic`` (or of its ``partitions``) from the beginning up to the end offsets
    it has when this opens, within ``timeout`` seconds of the first batch being asked for.

    :func:`read_all` is the usual way in; this is for a caller that times the read itself
    (``benchmarks/measure.py``): opening connects and assigns, and :meth:`batches` hands out
    whole ``consume()`` batches, checked for errors, with nothing else done per message.

    Parameters
    ----------
    bootstrap
        The broker.
    topic
        The topic to read.
    partitions
        Its partitions to read; all of them when None.
    timeout
        Seconds :meth:`batches` may take to reach the end; then it raises TimeoutError.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: Iterable[int] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.consumer = _reader(bootstrap)
        try:
            if partitions is None:
                partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
            #: Per partition that holds anything, its end offset and its message count at most.
            self.ends: dict[int, int] = {}
            self.most = 0
            for partition in partitions:
                tp = TopicPartition(topic, partition)
                low, high = self.consumer.get_watermark_offsets(tp, 10)
                if high > low:
                    self.ends[partition] = high
                    self.most += high - low
            self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.ends])
        except BaseException:
            self.consumer.close()
            raise

    def batches(self, size: int = 1000) -> Iterator[list[Message]]:
        """Every message up to the ends, up to ``size`` at a time."""
        ends, left = dict(self.ends), self.most
        deadline = Deadline(self.timeout)
        while ends:
            if deadline.passed():
                raise TimeoutError(f"reading {self.topic}: partitions {sorted(ends)} not at end")
            # Never more than can be left: consume() waits out its timeout for a full batch.
            messages = self.consumer.consume(max(min(size, left), 1), 0.5)
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
            left -= len(messages)
            # The consumer's position is one past the last message it returned from each
            # partition: one call a batch instead of a look at every message.
            at = self.consumer.position([TopicPartition(self.topic, p) for p in ends])
            for tp in at:
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
            if messages:
                yield messages

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> ToEnd:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def read_all(
    bootstrap: str, topic: str, partitions: Iterable[int] | None = None, timeout: float = 60.0
) -> Iterator[Message]:
    """Every message of ``topic`` (or of its ``partitions``) up to the end it has now; a
    TimeoutError if that takes more than ``timeout`` seconds (:class:`ToEnd`)."""
    with ToEnd(bootstrap, topic, partitions, timeout) as reading:
        for batch in reading.batches():
            yield from batch


def read_one(
    bootstrap: str, topic: str, partition: int, offset: int, timeout: float = 30.0
) -> bytes:
    """The value of the message at ``offset`` of ``topic``'s ``partition``."""
    consumer = _reader(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = Deadline(timeout)
        while not deadline.passed():
            for message in consumer.consume(1, 0.5):
                if message.error():
                    raise KafkaException(message.error())
                if message.offset() == offset:
                    return message.value()
                raise KafkaException(f"{topic}[{partition}] has no offset {offset} any more")
        raise TimeoutError(f"reading {topic}[{partition}] at {offset}")
    finally:
        consumer.close()


def read_latest(
    bootstrap: str, topic: str, timeout: float = 60.0, progress: str | None = None
) -> dict[bytes, bytes]:
    """The latest value of every key in ``topic`` up to its current end; tombstones delete.
    With ``progress``, the records read are counted on a bar of that name."""
    latest: dict[bytes, bytes] = {}
    messages = read_all(bootstrap, topic, timeout=timeout)
    for message in tracked(messages, progress) if progress else messages:
        key, value = message.key(), message.value()
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records in ``topic`` that consumer group ``group`` has not committed yet."""
    consumer = Consumer(
        {**confluent_config(bootstrap), "group.id": group, "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), 10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


_TRANSIENT = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def is_transient(error: KafkaException) -> bool:
    """Errors a fresh or restarting broker gives until its coordinators have loaded."""
    cause = error.args[0] if error.args else None
    return isinstance(cause, KafkaError) and (cause.retriable() or cause.code() in _TRANSIENT)


def wait_caught_up(bootstrap: str, group: str, topic: str, timeout: float = 120.0) -> None:
    """Block until ``group`` has committed everything in ``topic``."""
    lag: int | str = "?"

    def caught_up() -> bool:
        nonlocal lag
        try:
            lag = group_lag(bootstrap, group, topic)
        except KafkaException as error:
            if not is_transient(error):
                raise
            lag = f"? ({error.args[0].str()})"
        return lag == 0

    wait_until(
        caught_up, timeout, 0.5, lambda: f"group {group} still {lag} records behind on {topic}"
    )
