"""The server agent: owns shard ``p`` of the parameter table and serves its shard topic.

Pull requests are answered into the requesting worker's partition of the reply topic, at
once under ASP; under BSP or SSP(s) a pull from a worker at clock ``c`` is held until the
shard's slowest worker reaches ``c - s``. Every push (empty ones too) advances its
worker's clock.

A shard partition works on memory (:class:`ShardState`): pushes change in-memory pages
(:mod:`tables.pages`), and clocks, high-water marks and held BSP pushes wait in a
write-back view of the table. Once per publish interval the shard **publishes** its changed
parameters and high-water marks to model-updates. Once per (longer) flush interval it
**flushes** inside the stream iteration of that partition, as Faust requires of table
writes: the changed pages go to the RocksDB table (and so to its compacted changelog), then
the bookkeeping (with the shard's read position, the offset of the first event not yet in
the table), then it publishes, and only then are the flushed events acknowledged
(``stream.noack()``), so Faust commits no offset whose effects are not in the changelog. A
crash therefore replays exactly the pushes that were not yet durable, and the page stamps
and marks skip the rest; values published but not yet flushed are not lost, since their
pushes are replayed in the same order onto the same flushed pages and give the same values
again. A shard that sees no events gets a ``TICK`` message from its own process so that it
still flushes and publishes. Loading a partition publishes all of its parameters to
model-updates again, so that topic converges to the table after any crash.

The table, not the committed offset, says where a shard resumes. Faust's commit tolerates
holes in the acknowledged offsets (and skips its head check right after a rebalance), so a
partition can come back past events whose effects never reached the table. Each shard
state therefore checks that events arrive in offset order from its read position, seeks
the partition back when one is missing, and ignores events from before a rebalance.

:class:`ShardAgent` holds the shard partitions' states and steps; :func:`register_server`
wires it to a Faust app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

import faust
import numpy as np
from faust.types import TP

from kafka_ps.agents.api import ParamRegistry, UnknownParameterError
from kafka_ps.agents.dead_letters import Blame, DeadLetterReason, DeadLetters, report_counts
from kafka_ps.agents.publisher import ModelPublisher
from kafka_ps.agents.recovery_watchdog import RecoveryWatchdog
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.telemetry import ServerTelemetry, serve_metrics
from kafka_ps.agents.transport import Acknowledger, FaustTransport, Transport
from kafka_ps.tables.clocks import Consistency, PendingPulls, VectorClock
from kafka_ps.tables.messages import Kind, MessageError, PsMessage, decode_message, encode_message
from kafka_ps.tables.replay import VOUCHING, DeferredPushes, HighWaterMarks, ReadPosition
from kafka_ps.tables.rocksdb import rocksdb_options
from kafka_ps.tables.shard import RejectedPush, Shard
from kafka_ps.tables.write_back import WriteBack

PARAMS_TABLE = "params"
#: Seconds to wait for a sought offset before seeking again, and how often to try before
#: taking the log's next offset (a hole in the log itself, say after retention).
SEEK_PATIENCE = 5.0
SEEK_TRIES = 3

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ShardState:
    """What a server process holds for one shard partition it owns.

    Parameters
    ----------
    shard
        The partition's parameters: in-memory pages over its table.
    book
        The partition's bookkeeping (clocks, marks, deferred pushes, read position), written
        back to the table with the pages.
    held
        Pulls held until the clocks allow them (BSP and SSP).
    unacked
        Events whose effects are not in the table yet: acknowledged by the next flush.
    last_flush, last_publish, last_event, unpublished, tick_sent
        When the partition last flushed, last published and last got an event other than a
        tick, whether a push came since it published, and whether a tick is on its way to
        make it do what is due.
    sought, seeks, sought_tp, awaiting
        When the partition was last sent back, how many times, the topic partition sent
        back (None once ``expected`` arrives), and the offset it was sent back to (None
        once that arrives: nothing before it counts).
    """

    shard: Shard
    book: WriteBack
    held: PendingPulls[PsMessage]
    #: Events whose effects are not in the table yet: acknowledged by the next flush.
    unacked: list[faust.EventT] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    last_publish: float = field(default_factory=time.monotonic)
    last_event: float = field(default_factory=time.monotonic)
    #: A loaded state publishes every key once (ModelPublisher.republish).
    unpublished: bool = True
    tick_sent: bool = False
    #: When the partition was last sent back to ``expected``, and how many times.
    sought: float | None = None
    seeks: int = 0
    sought_tp: TP | None = None
    awaiting: int | None = None

    def in_order(self, offset: int) -> None:
        """``offset`` is taken in order: the next expected is the one after it, and no seek
        is pending."""
        self.expected, self.sought, self.seeks, self.sought_tp = offset + 1, None, 0, None
        self.awaiting = None

    def __post_init__(self) -> None:
        self.clocks = VectorClock(self.book)
        self.marks = HighWaterMarks(self.book)
        self.deferred = DeferredPushes(self.book)
        self.position = ReadPosition(self.book)
        #: Events below ``durable`` are in the table; ``expected`` is the next one to read.
        #: A partition that never flushed a position is read from its start: Faust drops
        #: what it fetched for a partition while it recovered the tables, and seeks back
        #: only partitions with a committed offset, so the first event that arrives can be
        #: far past the start (a SIGKILL before the first commit lost those pushes).
        position = self.position.get()
        self.durable = self.expected = 0 if position is None else position


class Publisher(Protocol):
    """Where a shard's parameters and marks go (:class:`ModelPublisher` in production)."""

    def republish(self, shard: Shard) -> None: ...

    def publish(self, shard: Shard, marks: np.ndarray | None) -> int: ...

    def close(self) -> None: ...


class ShardAgent:
    """The shard partitions a server process owns: pulls answered, pushes applied exactly
    once, flushes, ticks, and states forgotten and reloaded as partitions move.

    Faust delivers each event of the shard topic to :meth:`serve`; :func:`register_server`
    wires the agent to the app.

    Parameters
    ----------
    settings
        The job: topics, partitions, consistency, flush interval, page size.
    registry
        The job's parameters.
    table
        The parameter table (Faust's, whose writes go to the current event's partition).
    transport
        Sends replies, ticks and dead letters, and seeks the shard topic.
    publisher
        Publishes flushed parameters and marks to model-updates.
    dead_letters
        Where rejected pushes and undecodable messages go.
    """

    def __init__(
        self,
        settings: JobSettings,
        registry: ParamRegistry,
        table: MutableMapping[bytes, bytes],
        transport: Transport,
        publisher: Publisher,
        dead_letters: DeadLetters,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.table = table
        self.transport = transport
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.telemetry = ServerTelemetry(settings.app_id, dead_letters.counts, settings.partitions)
        self.shard_topic = settings.topic("shard")
        self.reply_topic = settings.topic("replies")
        self.consistency = Consistency.parse(settings.consistency)
        self.workers = range(settings.partitions)
        self.states: dict[int, ShardState] = {}
        self.replays: Counter[str] = Counter()

    def state_of(self, partition: int) -> ShardState:
        """The partition's state; loaded from the table on its first event here, inside
        that event, after Faust has recovered the partition."""
        state = self.states.get(partition)
        if state is None:
            shard = Shard(self.registry, partition, self.settings.page_size)
            shard.load(self.table)
            held = PendingPulls[PsMessage](per_worker=self.settings.max_pulls_in_flight)
            book = WriteBack(self.table, last=VOUCHING)
            state = self.states[partition] = ShardState(shard, book, held)
            self.publisher.republish(shard)
            log.info(
                "shard %s loaded: %s keys",
                partition,
                sum(len(slab) for slab in shard.slabs.values()),
            )
        return state

    async def serve(self, event: faust.EventT, stream: Acknowledger) -> None:
        """Take one event of the shard topic: in sequence, then handled, then flushed when
        due."""
        if event.message.generation_id != self.transport.generation:
            return  # read before a rebalance: its partition may have moved since
        state = self.state_of(event.message.partition)
        if not await self.in_sequence(state, event, stream):
            return
        state.unacked.append(event)
        message = await self.receive(state, event)
        if message is not None and message.kind is Kind.TICK:
            # Arrived: another may be sent. What it was sent for may no longer be due (an
            # event since made the partition busy again), and a tick still thought on its
            # way would never be sent again: the partition would never flush.
            state.tick_sent = False
        else:
            state.last_event = time.monotonic()
        if message is not None and message.kind is Kind.PUSH:
            state.unpublished = True
        if self.states.get(event.message.partition) is state:  # not revoked meanwhile
            await self.due(state, stream)

    async def due(self, state: ShardState, stream: Acknowledger) -> None:
        """Flush, or only publish, if its interval has passed."""
        now = time.monotonic()
        if self.flush_due(state, now):
            await self.flush(state, stream)
        elif state.unpublished and now - state.last_publish >= self.settings.publish_interval:
            self.publish(state)

    def flush_due(self, state: ShardState, now: float) -> bool:
        """A flush is due once per flush interval, and at once when the partition has had
        no event for two publish intervals: the pushes that stopped (a finite input learned,
        a pause) are then durable and committed within about a tenth of a second, not up to
        the flush interval plus Faust's commit interval later. A steady stream never pauses
        that long, so it still flushes once per flush interval."""
        settings = self.settings
        idle = min(settings.flush_interval, 2 * settings.publish_interval)
        return now - state.last_flush >= settings.flush_interval or now - state.last_event >= idle

    async def receive(self, state: ShardState, event: faust.EventT) -> PsMessage | None:
        """Decode and handle the event; bad input goes to dead letters. The message, if it
        decoded."""
        message = None
        try:
            message = decode_message(event.value)
            if message.kind is not Kind.TICK:
                await self.handle(state, message, event)
        except RejectedPush as error:
            await self.dead_letters.send(
                event.value, event.key, error.reason, str(error), event, Blame.LOGIC
            )
        except MessageError as error:
            await self.dead_letters.send(
                event.value, event.key, DeadLetterReason.MALFORMED, str(error), event
            )
        except UnknownParameterError as error:
            reason = DeadLetterReason.UNKNOWN_PARAMETER
            await self.dead_letters.send(
                event.value, event.key, reason, str(error), event, Blame.LOGIC
            )
        return message

    async def answer(self, state: ShardState, pull: PsMessage) -> None:
        """Reply with the values, the shard's slowest worker clock, and the requesting
        worker's own clock and high-water mark here."""
        reply = PsMessage(
            Kind.REPLY,
            pull.worker,
            pull.keys,
            state.shard.pull(pull.keys),
            clock=state.clocks.minimum(self.workers),
            request_id=pull.request_id,
            worker_clock=state.clocks.get(pull.worker),
            mark=state.marks.get(pull.worker),
        )
        await self.transport.send(self.reply_topic, encode_message(reply), pull.worker)
        self.telemetry.answered(state.shard.shard)

    async def accept(self, state: ShardState, push: PsMessage, event: faust.EventT) -> None:
        """Apply a push exactly once: drop old work (see tables/replay.py); under BSP hold
        it, durably, until every worker has pushed its clock."""
        offset = event.message.offset
        if state.marks.covers(push.worker, push.last_offset):
            self.replays["dropped"] += 1
            log.info(
                "dropped a replayed push of worker %s, training offsets %s..%s (%s so far)",
                push.worker,
                push.first_offset,
                push.last_offset,
                self.replays["dropped"],
            )
            return
        if state.marks.straddles(push.worker, push.first_offset, push.last_offset):
            self.replays["straddled"] += 1
            log.warning(
                "push of worker %s straddles its high-water mark (%s so far)",
                push.worker,
                self.replays["straddled"],
            )
        if self.consistency.staleness == 0:
            if push.keys:
                state.deferred.add(push.clock, offset, event.value)
        else:
            await self.apply(state, push, offset, event)
        state.marks.raise_to(push.worker, push.last_offset)

    async def handle(self, state: ShardState, message: PsMessage, event: faust.EventT) -> None:
        if message.kind is Kind.PULL:
            # A pull without keys asks only for clocks, and reads nothing stale.
            if not message.keys or self.ready(state, message):
                await self.answer(state, message)
            else:
                state.held.add(message.clock, message, message.worker)
        elif message.kind is Kind.PUSH:
            await self.take_push(state, message, event)

    def ready(self, state: ShardState, pull: PsMessage) -> bool:
        """May ``pull`` be answered now, within the job's staleness bound?"""
        return state.clocks.ready(pull.clock, self.workers, self.consistency)

    async def take_push(self, state: ShardState, push: PsMessage, event: faust.EventT) -> None:
        """Advance the pushing worker's clock, accept the push, then apply the BSP pushes
        and answer the held pulls that the clocks now allow."""
        self.telemetry.push_read(state.shard.shard, event.message.timestamp)
        state.clocks.advance(push.worker, push.clock + 1)
        await self.accept(state, push, event)
        if self.consistency.staleness == 0:
            # Clock t's pushes apply only once every worker has pushed clock t, so
            # that every pull of clock t saw exactly the model after clock t - 1.
            due = state.deferred.take_due(state.clocks.minimum(self.workers))
            for offset, raw in due:
                if raw is None:
                    raw = await self.read_again(state.shard.shard, offset)
                await self.apply(state, decode_message(raw), offset, event)
            state.deferred.done([offset for offset, _ in due])
        if self.consistency.bounded and state.held:
            minimum = state.clocks.minimum(self.workers)
            for pull in state.held.release(minimum, self.consistency):
                await self.answer(state, pull)

    async def read_again(self, shard: int, offset: int) -> bytes:
        """A held BSP push whose message the table lost (see ``DeferredPushes.take_due``),
        read again from the shard topic."""
        log.warning(
            "shard %s: held push at offset %s read again from the shard topic", shard, offset
        )
        return await self.transport.read(self.settings.topic("shard"), shard, offset)

    async def apply(
        self, state: ShardState, push: PsMessage, offset: int, event: faust.EventT
    ) -> None:
        if not len(push.keys):
            return
        try:
            result = state.shard.push(push.keys, push.values, offset)
        except RejectedPush as error:
            await self.dead_letters.send(
                encode_message(push), None, error.reason, str(error), event, Blame.LOGIC
            )
        else:
            self.telemetry.applied(state.shard.shard, result)

    async def in_sequence(
        self, state: ShardState, event: faust.EventT, stream: Acknowledger
    ) -> bool:
        """Is ``event`` the next one the state needs? Events already in the table are
        acknowledged and skipped; a missing one sends the partition back to it."""
        message = event.message
        offset, expected = message.offset, state.expected
        if state.awaiting is not None:
            if offset != state.awaiting:
                # Fetched before the seek took effect: it comes again after the target
                # (the timer seeks again if the target never comes).
                return False
            state.awaiting = None
        if offset == expected:
            state.in_order(offset)
            return True
        if offset < expected:
            if state.sought is not None:
                state.sought = time.monotonic()  # on its way to the expected offset
            if offset < state.durable:
                await stream.ack(event)  # its effects are in the table
            return False  # else in memory, acknowledged by the next flush
        now = time.monotonic()
        if state.sought is not None and now - state.sought < SEEK_PATIENCE:
            return False  # read before the seek took effect
        if state.seeks >= SEEK_TRIES:
            log.error(
                "shard %s: offsets %s..%s are not in the shard topic; going on from %s",
                message.partition,
                expected,
                offset - 1,
                offset,
            )
            state.in_order(offset)
            return True
        log.warning(
            "shard %s: offsets %s..%s arrived committed but not applied; reading them again",
            message.partition,
            expected,
            offset - 1,
        )
        state.seeks += 1
        await self.seek_back(state, message.tp)
        return False

    async def seek_back(self, state: ShardState, tp: TP) -> None:
        """Send ``tp`` back to the state's next expected offset, or to the consumer's
        committed offset if that is lower, waiting at most ``SEEK_PATIENCE`` for the
        consumer: a seek that hangs must not stop the agent.

        Faust commits only past offsets it saw acknowledged from its committed one on. Events
        it dropped in a rebalance below ``expected`` (their effects are in the table) would
        never be acknowledged from a seek to ``expected``, and the partition would never
        commit again; read again, they are acknowledged and skipped."""
        state.sought, state.sought_tp = time.monotonic(), tp
        target, committed = state.expected, self.transport.committed(tp)
        if committed is not None and committed < target:
            target = committed
        state.awaiting = target
        try:
            await asyncio.wait_for(self.transport.seek(tp, target), SEEK_PATIENCE)
        except TimeoutError:
            log.warning("shard %s: seeking back to %s timed out", tp.partition, target)

    async def flush(self, state: ShardState, stream: Acknowledger) -> None:
        """Pages, then bookkeeping, then model-updates; then acknowledge (see above)."""
        started = time.monotonic()
        written = state.shard.flush(self.table)
        state.position.set(state.expected)
        state.book.flush()
        state.durable = state.expected
        self.publish(state)
        clocks = [state.clocks.get(w) for w in self.workers]  # read inside the event, as marks
        for event in state.unacked:
            await stream.ack(event)
        state.unacked.clear()
        # Committed now, not at Faust's next commit: whoever waits for the shard to have
        # applied a push (termination, app/termination.py) reads committed offsets.
        self.transport.commit()
        state.last_flush = time.monotonic()
        self.telemetry.flushed(state.shard, written, state.last_flush - started, clocks)

    def publish(self, state: ShardState) -> None:
        """The changed parameters and the marks to model-updates, inside an event."""
        self.publisher.publish(state.shard, self.marks(state))
        state.last_publish = time.monotonic()
        state.unpublished = state.tick_sent = False

    async def seek_again(self, state: ShardState, tp: TP) -> None:
        """Nothing on the way to the expected offset arrived since the seek (Faust can drop
        refetched events as read already): seek again, without waiting for an event to do
        so; after :data:`SEEK_TRIES` for a target that never comes (the log no longer holds
        it), take events from where they arrive."""
        state.seeks += 1
        if state.awaiting is not None and state.seeks > SEEK_TRIES:
            log.error(
                "shard %s: offset %s never arrived after %s seeks; going on without it",
                tp.partition,
                state.awaiting,
                SEEK_TRIES,
            )
            state.awaiting, state.sought = None, time.monotonic()
            return
        log.warning(
            "shard %s: offset %s has not arrived since the seek; seeking again",
            tp.partition,
            state.expected if state.awaiting is None else state.awaiting,
        )
        await self.seek_back(state, tp)

    def marks(self, state: ShardState) -> np.ndarray:
        return np.array([state.marks.get(w) for w in self.workers], dtype="<i8")

    async def tick(self) -> None:
        """Send a ``TICK`` through its own topic to each shard partition with a flush or a
        publication due, so that it does it without waiting for traffic."""
        now, settings = time.monotonic(), self.settings
        for partition, state in list(self.states.items()):
            tp = state.sought_tp
            if state.sought is not None and tp is not None and now - state.sought >= SEEK_PATIENCE:
                await self.seek_again(state, tp)
            flush = state.unacked and self.flush_due(state, now)
            publish = state.unpublished and now - state.last_publish >= settings.publish_interval
            if (flush or publish) and not state.tick_sent:
                state.tick_sent = True
                message = encode_message(PsMessage(Kind.TICK, 0, []))
                await self.transport.send(self.shard_topic, message, partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """A revoked partition's unflushed work was never acknowledged: its next owner
        replays it from the committed offset."""
        for partition in partitions:
            self.states.pop(partition, None)
            self.telemetry.forget(partition)

    async def stop(self) -> None:
        """Publish what memory holds, flushed or not: the table gets the rest on replay."""
        for state in self.states.values():
            # No marks: outside an event Faust cannot read one partition's table for sure.
            self.publisher.publish(state.shard, None)
        await asyncio.to_thread(self.publisher.close)


def register_server(app: faust.App, settings: JobSettings, registry: ParamRegistry) -> None:
    """Host the job's shard agent in ``app``: its table, its agent, tick timer and signals."""
    # Unflushed events stay unacknowledged until the next flush; a rebalance must not wait
    # for them (nothing would flush them while the partitions are paused): their next
    # owner replays them.
    app.conf.stream_wait_empty = False
    table = app.Table(
        PARAMS_TABLE,
        partitions=settings.shards,
        key_type=bytes,
        value_type=bytes,
        options=rocksdb_options(),
    )
    shard_topic_name = settings.topic("shard")
    shard_topic = app.topic(
        shard_topic_name, key_type=bytes, value_type=bytes, partitions=settings.shards
    )
    dead_letters = DeadLetters(app, settings.topic("dead-letters"))
    report_counts(app, settings, "server", dead_letters)
    shards = ShardAgent(
        settings,
        registry,
        table,
        FaustTransport(app, settings.broker),
        ModelPublisher(settings),
        dead_letters,
    )
    serve_metrics(app, settings, shards.telemetry, shard_topic_name)

    @app.agent(shard_topic)
    async def serve(stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await shards.serve(event, manual)

    @app.timer(min(settings.publish_interval, settings.flush_interval) / 2)
    async def tick() -> None:
        await shards.tick()

    watchdogs: list[RecoveryWatchdog] = []

    @app.timer(5.0)
    async def watch_recovery() -> None:
        if not watchdogs:  # made here: the app makes its tables and consumer once started
            watchdogs.append(RecoveryWatchdog(app.tables.recovery, app.consumer))
        await watchdogs[0].check()

    @app.on_partitions_revoked.connect
    async def forget(app: faust.App, revoked: set[TP], **_: object) -> None:
        shards.forget(tp.partition for tp in revoked if tp.topic == shard_topic_name)

    @app.on_partitions_assigned.connect
    async def reload(app: faust.App, assigned: set[TP], **_: object) -> None:
        """An event still in flight at the revocation may have made a state again from a
        table being closed: an assigned partition is always loaded afresh."""
        await forget(app, assigned)

    @app.on_before_shutdown.connect
    async def publish_last(app: faust.App, **_: object) -> None:
        await shards.stop()
