"""The model-updates publisher: each parameter's latest value, and each shard's marks.

A shard publishes at every flush, after its pages are in the table: the value (slot 0
only) of every key changed since the last flush, keyed by the parameter key, in the
shard's partition of the compacted model-updates topic, then one ``__marks__:<shard>``
record with the shard's per-worker high-water marks, so a reader knows which training
offsets the values it has read include (docs/formats.md). A shard loaded into a process
publishes all its keys again, so the topic converges to the table after any crash.

It sends through a confluent-kafka producer of its own: one ``produce`` call costs about a
microsecond, where one Faust send costs tens, and a flush can carry thousands of keys.
"""

from __future__ import annotations

import logging

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from kafka_ps.agents.security import producer_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.codec import encode_values
from kafka_ps.tables.shard import Shard

MARKS_PREFIX = b"__marks__:"

log = logging.getLogger(__name__)


def marks_key(shard: int) -> bytes:
    return MARKS_PREFIX + str(shard).encode()


class ModelPublisher:
    """Publishes shards' changed parameters to the model-updates topic.

    Parameters
    ----------
    settings
        The job: its broker and model-updates topic.
    """

    def __init__(self, settings: JobSettings) -> None:
        self.bootstrap = settings.broker
        self.topic = settings.topic("model-updates")
        self.producer: Producer | None = None
        #: Shards a failed delivery must publish whole again.
        self.failed: set[int] = set()

    def start(self) -> None:
        # Reports of failed deliveries only: a Python callback per published key would
        # cost more than the publishing.
        config = producer_config(self.bootstrap, linger_ms=5)
        self.producer = Producer(
            {**config, "delivery.report.only.error": True, "on_delivery": self._delivered}
        )

    def republish(self, shard: Shard) -> None:
        """Publish every key of ``shard`` at its next flush."""
        for slab in shard.slabs.values():
            slab.changed[: len(slab)] = True

    def publish(self, shard: Shard, marks: np.ndarray | None) -> int:
        """Send the keys changed since the last call, then the marks; return how many keys."""
        if self.producer is None:
            self.start()
        assert self.producer is not None
        if shard.shard in self.failed:
            self.failed.discard(shard.shard)
            self.republish(shard)
        sent = 0
        for slab in shard.slabs.values():
            keys, values, stamps = slab.take_changed()
            produce, topic, partition = self.producer.produce, self.topic, shard.shard
            for key, value in zip(keys, encode_values(values, stamps), strict=True):
                try:
                    produce(topic, value, key, partition)
                except BufferError:
                    self._produce(key, value, partition)
            sent += len(keys)
        if marks is not None:
            self._produce(marks_key(shard.shard), marks.astype("<i8").tobytes(), shard.shard)
        self.producer.poll(0)
        return sent

    def _produce(self, key: bytes, value: bytes, partition: int) -> None:
        assert self.producer is not None
        while True:
            try:
                self.producer.produce(self.topic, value, key, partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            log.warning("model-updates delivery failed (%s); republishing the shard", error)
            self.failed.add(message.partition())

    def close(self, timeout: float = 10.0) -> None:
        if self.producer is not None:
            left = self.producer.flush(timeout)
            if left:
                log.warning("%s model-updates records unsent at shutdown", left)
