"""The server agent: owns shard ``p`` of the parameter table and serves its shard topic.

Pull requests are answered from the table into the requesting worker's partition of the
reply topic, at once under ASP; under BSP or SSP(s) a pull from a worker at clock ``c`` is
held until the shard's slowest worker reaches ``c - s``. Every push (empty ones too)
advances its worker's clock, kept durably in the shard's own table partition.

Pushes are applied through :class:`tables.shard.Shard` (exactly once, by
offset) and the changed parameters are published, coalesced, to the compacted
model-updates topic. Table writes happen inside the stream iteration, on the event's own
partition, which is the shard that owns the keys: pulls and pushes are produced to
partition ``shard_of(key, P)`` by the workers.
"""

from __future__ import annotations

import math

import faust

from agents.api import ParamRegistry, UnknownParameterError
from agents.dead_letters import DeadLetters
from app.messages import Kind, MessageError, PsMessage, decode_message, encode_message
from app.settings import JobSettings
from tables.clocks import Consistency, PendingPulls, VectorClock
from tables.keys import shard_of
from tables.rocksdb import rocksdb_options
from tables.shard import RejectedPush, Shard

PARAMS_TABLE = "params"


class ModelPublisher:
    """Coalesces parameter changes and flushes the latest value of each to model-updates.

    Hot keys change on every mini-batch; publishing each change would multiply traffic
    for no reader's benefit, since the topic is compacted to the latest value anyway.
    """

    def __init__(self, app: faust.App, topic: str, partitions: int) -> None:
        self.app = app
        self.topic = topic
        self.partitions = partitions
        self.dirty: dict[bytes, bytes] = {}

    def changed(self, written: list[tuple[bytes, bytes]]) -> None:
        self.dirty.update(written)

    async def flush(self) -> None:
        dirty, self.dirty = self.dirty, {}
        for key, value in dirty.items():
            await self.app.producer.send(
                self.topic, key, value, shard_of(key, self.partitions), None, None
            )


def register_server(app: faust.App, settings: JobSettings, registry: ParamRegistry) -> None:
    table = app.Table(
        PARAMS_TABLE,
        partitions=settings.shards,
        key_type=bytes,
        value_type=bytes,
        options=rocksdb_options(),
    )
    shard = Shard(table, registry)
    shard_topic = app.topic(
        settings.topic("shard"), key_type=bytes, value_type=bytes, partitions=settings.shards
    )
    reply_topic = settings.topic("replies")
    publisher = ModelPublisher(app, settings.topic("model-updates"), settings.shards)
    dead_letters = DeadLetters(app, settings.topic("dead-letters"))

    consistency = Consistency.parse(settings.consistency)
    workers = range(settings.partitions)
    clocks = VectorClock(table)
    held: dict[int, PendingPulls[PsMessage]] = {}
    deferred: dict[int, list[tuple[PsMessage, int]]] = {}

    async def answer(pull: PsMessage) -> None:
        """Reply with the values; ``clock`` carries the shard's slowest worker clock and
        ``first_offset`` the requesting worker's own clock here."""
        reply = PsMessage(
            Kind.REPLY,
            pull.worker,
            pull.keys,
            shard.pull(pull.keys),
            clock=clocks.minimum(workers),
            request_id=pull.request_id,
            first_offset=clocks.get(pull.worker),
        )
        await app.producer.send(reply_topic, None, encode_message(reply), pull.worker, None, None)

    async def handle(message: PsMessage, event: faust.EventT) -> None:
        partition = event.message.partition
        if message.kind is Kind.PULL:
            # A pull without keys asks only for clocks, and reads nothing stale.
            if not message.keys or clocks.ready(message.clock, workers, consistency):
                await answer(message)
            else:
                held.setdefault(partition, PendingPulls()).add(message.clock, message)
        elif message.kind is Kind.PUSH:
            clocks.advance(message.worker, message.clock + 1)
            waiting = deferred.setdefault(partition, [])
            waiting.append((message, event.message.offset))
            # BSP applies clock t's pushes only once every worker has pushed clock t, so
            # that every pull of clock t saw exactly the model after clock t - 1.
            ready_below = clocks.minimum(workers) if consistency.staleness == 0 else math.inf
            due = [(m, o) for m, o in waiting if m.clock < ready_below]
            deferred[partition] = [(m, o) for m, o in waiting if m.clock >= ready_below]
            for push, offset in sorted(due, key=lambda item: (item[0].clock, item[1])):
                await apply(push, offset, event)
            if consistency.bounded and held.get(partition):
                for pull in held[partition].release(clocks.minimum(workers), consistency):
                    await answer(pull)

    async def apply(push: PsMessage, offset: int, event: faust.EventT) -> None:
        if not push.keys:
            return
        try:
            publisher.changed(shard.push(push.keys, push.values, offset).written)
        except RejectedPush as error:
            await dead_letters.send(encode_message(push), None, error.reason, str(error), event)

    @app.agent(shard_topic)
    async def serve(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await handle(decode_message(event.value), event)
            except RejectedPush as error:
                await dead_letters.send(event.value, event.key, error.reason, str(error), event)
            except MessageError as error:
                await dead_letters.send(event.value, event.key, "malformed", str(error), event)
            except UnknownParameterError as error:
                await dead_letters.send(
                    event.value, event.key, "unknown_parameter", str(error), event
                )

    @app.timer(settings.publish_interval)
    async def publish() -> None:
        await publisher.flush()

    @app.on_before_shutdown.connect
    async def publish_last(app: faust.App, **_: object) -> None:
        await publisher.flush()
