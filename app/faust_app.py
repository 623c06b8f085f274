"""The Faust application every kafka-ps worker process runs."""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer

from app.client import MAX_MESSAGE_BYTES
from app.settings import JobSettings

_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _with_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's consumer long-poll for ``fetch_max_wait_ms`` instead of its fixed 1500 ms.

    aiokafka keeps one fetch in flight per broker and leaves out partitions that still
    have buffered records. A pull that lands on such a partition waits for the in-flight
    fetch to expire: with Faust's hard-coded 1500 ms that was the median pull latency
    (measured 1.66 s). Short waits cost only idle fetch requests on a quiet topic.
    """

    def create(self: Any, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = _create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create


def _count_sends_in_progress() -> None:
    """Make Faust's producer-buffer flush wait for the message it is sending, not only the
    queued ones.

    Table writes reach the changelog through Faust's ``ProducerBuffer``: a task pops each
    message off a queue, then awaits its hand-over to aiokafka. ``flush()``, which Faust
    runs before committing source offsets, waits only until the queue is empty, so a
    message popped but not yet handed over (aiokafka waiting on metadata or a full
    accumulator) is missed, and the source offset can be committed before the changelog
    record is sent. A SIGKILL then loses that record, and the committed offset means no
    replay ever writes it again.
    """
    if getattr(ProducerBuffer, "_kps_counts_sends", False):
        return
    send_pending = ProducerBuffer._send_pending
    queued = ProducerBuffer.size

    async def counted(self: ProducerBuffer, fut: Any) -> None:
        self._kps_sending = getattr(self, "_kps_sending", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._kps_sending -= 1

    ProducerBuffer._send_pending = counted
    ProducerBuffer.size = property(
        lambda self: queued.fget(self) + getattr(self, "_kps_sending", 0)
    )
    ProducerBuffer._kps_counts_sends = True


def create_app(settings: JobSettings, group: str) -> faust.App:
    """A Faust app configured for kafka-ps: aiokafka driver, RocksDB tables, no web server.

    ``group`` is the Faust app id, hence the consumer group and the prefix of table
    changelogs. Topics are created by :mod:`app.topics` before any process starts, so
    Faust never guesses partition counts.
    """
    _with_fetch_wait(settings.fetch_max_wait_ms)
    _count_sends_in_progress()
    return faust.App(
        group,
        broker=f"kafka://{settings.broker}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.instance_id,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        key_serializer="raw",
        value_serializer="raw",
    )
