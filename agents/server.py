"""The server agent: owns shard ``p`` of the parameter table and serves its shard topic.

Pull requests are answered from the table into the requesting worker's partition of the
reply topic. Pushes are applied through :class:`tables.shard.Shard` (exactly once, by
offset) and the changed parameters are published, coalesced, to the compacted
model-updates topic. Table writes happen inside the stream iteration, on the event's own
partition, which is the shard that owns the keys: pulls and pushes are produced to
partition ``shard_of(key, P)`` by the workers.
"""

from __future__ import annotations

import faust

from agents.api import ParamRegistry, UnknownParameterError
from agents.dead_letters import DeadLetters
from app.messages import Kind, MessageError, PsMessage, decode_message, encode_message
from app.settings import JobSettings
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

    @app.agent(shard_topic)
    async def serve(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                message = decode_message(event.value)
                if message.kind is Kind.PULL:
                    reply = PsMessage(
                        Kind.REPLY,
                        message.worker,
                        message.keys,
                        shard.pull(message.keys),
                        clock=message.clock,
                        request_id=message.request_id,
                    )
                    await app.producer.send(
                        reply_topic, None, encode_message(reply), message.worker, None, None
                    )
                elif message.kind is Kind.PUSH:
                    result = shard.push(message.keys, message.values, event.message.offset)
                    publisher.changed(result.written)
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
