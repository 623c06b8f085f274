"""The packer: one-record messages of the input topic, many to a message, for the workers.

A Faust event costs a worker tens of microseconds whatever it carries, so one-record
messages (what any producer writes) would cap a worker near fifteen thousand records a
second before it learns anything. With ``KPS_PACK_INPUT`` (the default) every worker
process also runs a packer: a confluent-kafka consumer in the job's ``<app>-packer`` group
that reads the input topic in large fetches and writes ``kps-packed`` messages
(:mod:`agents.batches`) to partition ``w`` of ``<app>-packed`` for input partition ``w``, as
Kafka Streams does with its repartition topics. The worker agents consume that topic.

Exactly once still holds: a packed message keeps each source message's offset, and that
offset, not the packed topic's, is the training offset that pushes, high-water marks and
termination speak of. The packer commits input offsets only after the packed messages
holding them are acknowledged (asynchronously, without waiting between fetches), so a crash
can repeat records in the packed topic but never lose one, and a repeat carries the same
training offsets, which the workers and shards already drop. Dead letters name the input
topic and the source offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from functools import partial

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kafka_ps.agents.batches import encode_packed
from kafka_ps.agents.security import MAX_MESSAGE_BYTES, confluent_config, producer_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.clocks import Consistency

log = logging.getLogger(__name__)

#: Most source messages in one fetch, and so in one packed message per partition.
FETCH = 2000
#: Seconds between two asynchronous commits of acknowledged input offsets.
COMMIT_INTERVAL = 0.5
#: Logged at each assignment of the packer's group. A process's first one ends its join:
#: until then the input partitions are in a rebalance, and nothing is packed.
PACKER_ASSIGNED = "packer: assigned"


def packs_input(settings: JobSettings) -> bool:
    """Whether the job's workers pack its input: with ``KPS_PACK_INPUT``, under ASP only.

    Under BSP and SSP each mini-batch is a clock, and a rebalance waits until a worker's
    taken events are done: a take of packed messages holds several clocks, each waiting on
    every other worker, among them a just-killed process's, which cannot come back before
    the rebalance ends. One-record events keep a take to one clock.
    """
    return settings.pack_input and not Consistency.parse(settings.consistency).bounded


def training_topic(settings: JobSettings) -> str:
    """The topic the worker agents read: the packed topic, or the input topic itself when
    the job does not pack (producers write ``kps-batch`` messages, or BSP and SSP)."""
    return settings.topic("packed") if packs_input(settings) else settings.input_topic


class Packer:
    """Packs the input topic into ``<app>-packed`` in a thread of its own.

    Nothing waits on the broker between two fetches: each packed message's delivery report
    records the input offset it covers, and the acknowledged offsets are committed
    asynchronously every :data:`COMMIT_INTERVAL` seconds (and synchronously, after a flush,
    when partitions are revoked or the packer stops). A commit never passes an
    unacknowledged packed message: the idempotent producer delivers a partition's messages
    in order, and a failed delivery stops the packer before anything after it is committed.

    Parameters
    ----------
    settings
        The job: broker, input topic, consumer-group timeouts.
    """

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="kps-packer", daemon=True)
        self.packed = 0
        #: Per input partition, the offset after the last acknowledged packed message.
        self.acked: dict[int, int] = {}
        self.failure: str | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        # A process stopped as it starts (a job that ended meanwhile) may not have started it.
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        settings = self.settings
        consumer = Consumer(
            {
                **confluent_config(settings.broker),
                "group.id": settings.group("packer"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": int(settings.session_timeout * 1000),
                "heartbeat.interval.ms": int(settings.heartbeat_interval * 1000),
                "fetch.wait.max.ms": settings.fetch_max_wait_ms,
                "fetch.max.bytes": MAX_MESSAGE_BYTES,
            }
        )
        producer = Producer(producer_config(settings.broker, linger_ms=1))

        def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("packer: revoked %s", sorted(p.partition for p in partitions))
            self._commit(consumer, producer, wait=True)

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            log.info("%s %s", PACKER_ASSIGNED, sorted(p.partition for p in partitions))

        consumer.subscribe([settings.input_topic], on_assign=on_assign, on_revoke=on_revoke)
        committed = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._pack(producer, consumer.consume(FETCH, 0.05))
                producer.poll(0)  # delivery reports
                if self.failure is not None:
                    raise KafkaException(f"a packed message was not delivered: {self.failure}")
                if time.monotonic() - committed >= COMMIT_INTERVAL:
                    self._commit(consumer, producer, wait=False)
                    committed = time.monotonic()
            self._commit(consumer, producer, wait=True)
        except KafkaException as error:
            log.error("the packer stopped: %s", error)
        finally:
            consumer.close()

    def _pack(self, producer: Producer, messages: list) -> None:
        by_partition: dict[int, list] = defaultdict(list)
        for message in messages:
            if message.error() is None:
                by_partition[message.partition()].append(message)
            else:
                log.warning("packer: %s", message.error())
        topic = self.settings.topic("packed")
        for partition, batch in by_partition.items():
            value = encode_packed(
                [m.offset() for m in batch], [m.key() for m in batch], [m.value() for m in batch]
            )
            delivered = partial(self._delivered, partition, batch[-1].offset() + 1)
            while True:
                try:
                    producer.produce(topic, value, None, partition, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            self.packed += len(batch)

    def _delivered(self, partition: int, after: int, error: object, _message: object) -> None:
        if error is not None:
            self.failure = str(error)
        elif self.failure is None:
            self.acked[partition] = after

    def _commit(self, consumer: Consumer, producer: Producer, wait: bool) -> None:
        """Commit the input offsets whose packed messages are acknowledged; with ``wait``,
        first every packed message sent, and the commit itself."""
        if wait and producer.flush(30):
            raise KafkaException("packed messages unacknowledged after 30 s")
        if self.failure is not None:
            raise KafkaException(f"a packed message was not delivered: {self.failure}")
        if not self.acked:
            return
        acked, self.acked = self.acked, {}
        consumer.commit(
            offsets=[
                TopicPartition(self.settings.input_topic, partition, after)
                for partition, after in acked.items()
            ],
            asynchronous=not wait,
        )
