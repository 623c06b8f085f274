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

import logging
from collections import Counter

import faust

from agents.api import ParamRegistry, UnknownParameterError
from agents.dead_letters import DeadLetters, report_counts
from app.messages import Kind, MessageError, PsMessage, decode_message, encode_message
from app.settings import JobSettings
from tables.clocks import Consistency, PendingPulls, VectorClock
from tables.keys import shard_of
from tables.replay import DeferredPushes, HighWaterMarks, rewrite
from tables.rocksdb import rocksdb_options
from tables.shard import RejectedPush, Shard

PARAMS_TABLE = "params"

log = logging.getLogger(__name__)


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
    report_counts(app, settings, "server", dead_letters)

    consistency = Consistency.parse(settings.consistency)
    workers = range(settings.partitions)
    clocks = VectorClock(table)
    marks = HighWaterMarks(table)
    deferred = DeferredPushes(table)
    held: dict[int, PendingPulls[PsMessage]] = {}
    replays: Counter[str] = Counter()

    async def answer(pull: PsMessage) -> None:
        """Reply with the values; ``clock`` carries the shard's slowest worker clock,
        ``first_offset`` the requesting worker's own clock and ``last_offset`` its
        high-water mark here."""
        reply = PsMessage(
            Kind.REPLY,
            pull.worker,
            pull.keys,
            shard.pull(pull.keys),
            clock=clocks.minimum(workers),
            request_id=pull.request_id,
            first_offset=clocks.get(pull.worker),
            last_offset=marks.get(pull.worker),
        )
        await app.producer.send(reply_topic, None, encode_message(reply), pull.worker, None, None)

    async def accept(push: PsMessage, event: faust.EventT) -> None:
        """Apply a push exactly once: drop old work (see tables/replay.py); under BSP hold
        it, durably, until every worker has pushed its clock."""
        offset = event.message.offset
        if marks.covers(push.worker, push.last_offset):
            replays["dropped"] += 1
            log.info(
                "dropped a replayed push of worker %s, training offsets %s..%s (%s so far)",
                push.worker,
                push.first_offset,
                push.last_offset,
                replays["dropped"],
            )
            rewrite(table, push.keys)
            marks.rewrite(push.worker)
            deferred.rewrite(offset)
            return
        if marks.straddles(push.worker, push.first_offset, push.last_offset):
            replays["straddled"] += 1
            log.warning(
                "push of worker %s straddles its high-water mark (%s so far)",
                push.worker,
                replays["straddled"],
            )
        if consistency.staleness == 0:
            if push.keys:
                deferred.add(push.clock, offset, event.value)
        else:
            await apply(push, offset, event)
        marks.raise_to(push.worker, push.last_offset)

    async def handle(message: PsMessage, event: faust.EventT) -> None:
        partition = event.message.partition
        if message.kind is Kind.PULL:
            # A pull without keys asks only for clocks, and reads nothing stale.
            if not message.keys or clocks.ready(message.clock, workers, consistency):
                await answer(message)
            else:
                pending = held.setdefault(
                    partition, PendingPulls(per_worker=settings.max_pulls_in_flight)
                )
                pending.add(message.clock, message, message.worker)
        elif message.kind is Kind.PUSH:
            clocks.advance(message.worker, message.clock + 1)
            await accept(message, event)
            if consistency.staleness == 0:
                # Clock t's pushes apply only once every worker has pushed clock t, so
                # that every pull of clock t saw exactly the model after clock t - 1.
                due = deferred.take_due(clocks.minimum(workers))
                for offset, raw in due:
                    await apply(decode_message(raw), offset, event)
                deferred.done([offset for offset, _ in due])
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
