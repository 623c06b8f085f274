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
holding them are acknowledged, so a crash can repeat records in the packed topic but never
lose one, and a repeat carries the same training offsets, which the workers and shards
already drop. Dead letters name the input topic and the source offset.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kafka_ps.agents.batches import encode_packed
from kafka_ps.agents.security import MAX_MESSAGE_BYTES, confluent_config, producer_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.clocks import Consistency

log = logging.getLogger(__name__)

#: Most source messages in one fetch, and so in one packed message per partition.
FETCH = 2000


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

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
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
        consumer.subscribe([settings.input_topic])
        try:
            while not self.stopping.is_set():
                self._pack(consumer, producer, consumer.consume(FETCH, 0.05))
        except KafkaException as error:
            log.error("the packer stopped: %s", error)
        finally:
            consumer.close()

    def _pack(self, consumer: Consumer, producer: Producer, messages: list) -> None:
        by_partition: dict[int, list] = defaultdict(list)
        for message in messages:
            if message.error() is None:
                by_partition[message.partition()].append(message)
            else:
                log.warning("packer: %s", message.error())
        if not by_partition:
            return
        topic = self.settings.topic("packed")
        for partition, batch in by_partition.items():
            value = encode_packed(
                [m.offset() for m in batch], [m.key() for m in batch], [m.value() for m in batch]
            )
            producer.produce(topic, value, None, partition)
        if producer.flush(30):
            raise KafkaException("packed messages unacknowledged after 30 s")
        consumer.commit(
            offsets=[
                TopicPartition(self.settings.input_topic, partition, batch[-1].offset() + 1)
                for partition, batch in by_partition.items()
            ],
            asynchronous=False,
        )
        self.packed += sum(len(batch) for batch in by_partition.values())
