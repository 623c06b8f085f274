"""An in-memory Kafka for the worker and shard agents: no Faust, no broker.

:class:`InMemoryTransport` keeps every topic partition as a list of records and records
where an agent asked its consumer to seek; :class:`InMemoryReplies` hands pull replies
back to the waiting worker; :class:`InMemoryJob` runs a :class:`WorkerAgent` against one
:class:`ShardAgent` per shard partition (as one server process each, with a table of its
own), delivering the shard topic's records in order, as a consumer would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import faust
import numpy as np
from faust.types import TP

from kafka_ps.agents.api import BatchWorkerLogic, ParamRegistry
from kafka_ps.agents.dead_letters import DeadLetters
from kafka_ps.agents.replies import ReplyRouter
from kafka_ps.agents.server import ShardAgent
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.transport import Headers
from kafka_ps.agents.worker import WorkerAgent
from kafka_ps.tables.keys import shard_of
from kafka_ps.tables.messages import PsMessage, decode_message
from kafka_ps.tables.shard import Shard


@dataclass(frozen=True)
class Message:
    """What the agents read of a Faust event's message."""

    topic: str
    partition: int
    offset: int
    generation_id: int = 1
    timestamp: float | None = None

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(frozen=True)
class Record:
    """One message stored in an in-memory topic partition."""

    message: Message
    value: bytes
    key: bytes | None = None
    headers: Headers = ()

    @property
    def event(self) -> faust.EventT:
        """The record as the agents get it from Faust."""
        return cast(
            faust.EventT, SimpleNamespace(message=self.message, value=self.value, key=self.key)
        )


class InMemoryTransport:
    """Topics as lists of records; seeks remembered for whoever consumes."""

    def __init__(self) -> None:
        self.topics: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.generation = 1
        self.sought: dict[TP, int] = {}
        self.committed_offsets: dict[TP, int] = {}
        #: How many times an agent asked for its acknowledged offsets to be committed.
        self.commits = 0

    async def send(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.append(topic, value, partition or 0, key, headers or ())

    def append(
        self,
        topic: str,
        value: bytes,
        partition: int = 0,
        key: bytes | None = None,
        headers: Headers = (),
    ) -> Record:
        log = self.topics[(topic, partition)]
        message = Message(topic, partition, len(log), self.generation)
        log.append(Record(message, value, key, tuple(headers)))
        return log[-1]

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought[tp] = offset

    async def read(self, topic: str, partition: int, offset: int) -> bytes:
        return self.records(topic, partition)[offset].value

    def committed(self, tp: TP) -> int | None:
        return self.committed_offsets.get(tp)

    def commit(self) -> None:
        self.commits += 1

    def records(self, topic: str, partition: int = 0) -> list[Record]:
        return self.topics[(topic, partition)]

    def messages(self, topic: str, partition: int = 0) -> list[PsMessage]:
        return [decode_message(record.value) for record in self.records(topic, partition)]

    def as_app(self) -> faust.App:
        """What :class:`DeadLetters` sends through: a Faust app's producer."""

        async def send(
            topic: str,
            key: bytes | None,
            value: bytes,
            partition: int | None,
            timestamp: float | None,
            headers: Headers | None,
        ) -> None:
            await self.send(topic, value, partition, key, headers)

        return cast(faust.App, SimpleNamespace(producer=SimpleNamespace(send=send)))

    def dead_letters(self, settings: JobSettings) -> DeadLetters:
        return DeadLetters(self.as_app(), settings.topic("dead-letters"))


class InMemoryReplies(ReplyRouter):
    """A reply router that reads the in-memory reply topic when asked to (:meth:`deliver`)."""

    def __init__(self, topic: str) -> None:
        super().__init__("in-memory", topic)
        self.read: dict[int, int] = defaultdict(int)

    async def ensure(self, worker: int) -> None:
        self.partitions.add(worker)

    def deliver(self, transport: InMemoryTransport) -> None:
        """Hand over the replies not read yet."""
        for worker in self.partitions:
            records = transport.records(self.topic, worker)
            for record in records[self.read[worker] :]:
                self.receive(record.value)
            self.read[worker] = len(records)


@dataclass
class Acks:
    """A Faust stream in ``noack`` mode: the offsets acknowledged, by partition."""

    offsets: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))

    async def ack(self, event: faust.EventT) -> bool:
        self.offsets[event.message.partition].append(event.message.offset)
        return True


class InMemoryJob:
    """A worker agent and one shard agent per shard, wired through an in-memory Kafka.

    Parameters
    ----------
    settings
        The job.
    logic
        The worker logic.
    """

    def __init__(self, settings: JobSettings, logic: BatchWorkerLogic) -> None:
        self.settings = settings
        self.transport = InMemoryTransport()
        self.replies = InMemoryReplies(settings.topic("replies"))
        self.registry = ParamRegistry(list(logic.params))
        dead_letters = self.transport.dead_letters(settings)
        self.worker = WorkerAgent(
            settings, logic, self.registry, self.transport, self.replies, dead_letters
        )
        self.tables: list[dict[bytes, bytes]] = [{} for _ in range(settings.shards)]
        self.shards = [self.shard_agent(table) for table in self.tables]
        self.acks = Acks()
        self.read = [0] * settings.shards

    def shard_agent(self, table: dict[bytes, bytes]) -> ShardAgent:
        return ShardAgent(
            self.settings,
            self.registry,
            table,
            self.transport,
            RecordingPublisher(),
            self.transport.dead_letters(self.settings),
        )

    def feed(self, values: Sequence[bytes], partition: int = 0) -> list[faust.EventT]:
        """Produce ``values`` to the training topic; the events a worker would read."""
        topic = self.settings.input_topic
        return [self.transport.append(topic, value, partition).event for value in values]

    async def serve_shards(self) -> None:
        """Deliver each shard partition's records to its agent in order, as a consumer
        would, honouring seeks; hand the replies over."""
        topic = self.settings.topic("shard")
        while True:
            for partition, agent in enumerate(self.shards):
                records = self.transport.records(topic, partition)
                while self.read[partition] < len(records):
                    record = records[self.read[partition]]
                    await agent.serve(record.event, self.acks)
                    sought = self.transport.sought.pop(TP(topic, partition), None)
                    self.read[partition] = record.message.offset + 1 if sought is None else sought
            self.replies.deliver(self.transport)
            await asyncio.sleep(0.001)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[InMemoryJob]:
        """The shards serve while the block runs."""
        server = asyncio.create_task(self.serve_shards())
        try:
            yield self
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    async def drain(self) -> None:
        """Wait until the shards have served every record sent to them."""
        topic = self.settings.topic("shard")
        while any(
            self.read[p] < len(self.transport.records(topic, p)) for p in range(len(self.shards))
        ):
            await asyncio.sleep(0.001)

    async def flush_shards(self) -> None:
        """Make every shard flush what it holds now (as its tick would)."""
        for agent in self.shards:
            for state in list(agent.states.values()):
                await agent.flush(state, self.acks)

    def value(self, key: bytes) -> np.ndarray:
        """Slot 0 of ``key`` as its shard holds it."""
        shard = shard_of(key, self.settings.shards)
        return self.shards[shard].states[shard].shard.pull([key])[0][0]


class RecordingPublisher:
    """Model-updates as a list of what each flush published."""

    def __init__(self) -> None:
        self.published: list[tuple[int, Any]] = []
        self.closed = False

    def republish(self, shard: Shard) -> None:
        """Nothing to send again: this publisher keeps no topic."""

    def publish(self, shard: Shard, marks: Any) -> int:
        self.published.append((shard.shard, marks))
        return 0

    def close(self) -> None:
        self.closed = True
