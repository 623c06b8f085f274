"""Pull replies reach the waiting worker through a consumer of their own.

The reply topic is read by a dedicated aiokafka consumer, not by a Faust agent. A Faust
process delivers every topic through one conductor, and a full training-stream buffer
blocks that delivery; if replies waited behind it, a worker awaiting a reply would wait
on itself. Here the reply path shares no buffer with training records, so a pull is
answered whatever the state of the training stream (see docs/architecture.md).

Partition ``w`` of the reply topic carries the replies to logical worker ``w``. The
consumer is assigned the partitions of the logical workers this process runs, each one
positioned at its end before that worker's first pull is sent, so no reply is missed.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from kafka_ps.agents.security import aiokafka_config
from kafka_ps.tables.messages import MessageError, PsMessage, decode_message

log = logging.getLogger(__name__)


class ReplyRouter:
    """Reads the reply topic for this process's logical workers and hands each reply to the
    pull waiting for it.

    Parameters
    ----------
    bootstrap
        The job's brokers.
    topic
        The job's reply topic.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer: AIOKafkaConsumer | None = None
        self._ready = asyncio.Event()
        self.pending: dict[int, asyncio.Future[PsMessage]] = {}
        self.partitions: set[int] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start reading; aiokafka needs the running event loop to build its consumer."""
        self.consumer = AIOKafkaConsumer(
            **aiokafka_config(self.bootstrap),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=20,
        )
        await self.consumer.start()
        self._ready.set()
        self._task = asyncio.create_task(self._run(), name="reply-router")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.consumer is not None:
            await self.consumer.stop()

    async def ensure(self, worker: int) -> None:
        """Make sure replies to logical worker ``worker`` are being read."""
        if worker in self.partitions:
            return
        await self._ready.wait()
        async with self._lock:
            if worker in self.partitions:
                return
            kept = {TopicPartition(self.topic, p) for p in self.partitions}
            consumer = self._started()
            positions = {tp: await consumer.position(tp) for tp in kept}
            new = TopicPartition(self.topic, worker)
            end = (await consumer.end_offsets([new]))[new]
            consumer.assign([*kept, new])
            for tp, position in positions.items():
                consumer.seek(tp, position)
            consumer.seek(new, end)
            self.partitions.add(worker)

    def _started(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError("the reply router has not been started")
        return self.consumer

    def expect(self, request_id: int) -> asyncio.Future[PsMessage]:
        future: asyncio.Future[PsMessage] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        return future

    def forget(self, request_id: int) -> None:
        self.pending.pop(request_id, None)

    async def _run(self) -> None:
        while True:
            if not self.partitions:
                await asyncio.sleep(0.05)
                continue
            batches = await self._started().getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    self.receive(record.value)

    def receive(self, value: bytes) -> None:
        """Hand the reply in ``value`` to the pull waiting for it, if any."""
        try:
            reply = decode_message(value)
        except MessageError as error:
            log.warning("dropping malformed reply: %s", error)
            return
        future = self.pending.pop(reply.request_id, None)
        if future is not None and not future.done():
            future.set_result(reply)
