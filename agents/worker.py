"""The worker agent: logical worker ``w`` is partition ``w`` of the training topic.

For each mini-batch of a partition it parses the records, runs the model's worker logic
against :class:`KafkaPsClient` (one pull request per shard, answered on reply partition
``w``), then sends one push per shard and the batch's predictions. The push for a batch is
produced before the next batch's pulls, on the same shard partitions, so a worker always
reads its own writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faust
import numpy as np
from faust.types import TP

from kafka_ps.agents.api import (
    BatchWorkerLogic,
    ParamRegistry,
    Prediction,
    TrainingRecord,
    UnknownParameterError,
)
from kafka_ps.agents.batches import split_message
from kafka_ps.agents.dead_letters import DeadLetters, Origin, report_counts
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.packer import Packer, packs_input, training_topic
from kafka_ps.agents.records import BadRecordError, parse_record
from kafka_ps.agents.replies import ReplyRouter
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.telemetry import WorkerTelemetry, serve_metrics
from kafka_ps.tables.clocks import Consistency
from kafka_ps.tables.contract import add_deltas, pull_specs, pulled_value
from kafka_ps.tables.keys import group_by_shard
from kafka_ps.tables.messages import Kind, PsMessage, encode_message
from kafka_ps.tables.replay import replay_segments
from kafka_ps.tables.shard import RejectedPush

log = logging.getLogger(__name__)


class KafkaPsClient:
    """The parameter-server client of one logical worker for one mini-batch.

    It checks pulls and pushes by the contract ``agents/local.py`` shares
    (``tables/contract.py``).

    Parameters
    ----------
    app, settings, registry, router
        The process's Faust app, the job's settings and parameters, and the reply router.
    worker, clock
        The logical worker and its clock for this mini-batch.
    in_flight
        The logical worker's gate: at most K pulls unanswered.
    held_back, telemetry
        Deltas the significance filter holds back for the logical worker; its metrics.
    """

    def __init__(
        self,
        app: faust.App,
        settings: JobSettings,
        registry: ParamRegistry,
        router: ReplyRouter,
        worker: int,
        clock: int,
        in_flight: asyncio.Semaphore,
        held_back: dict[bytes, np.ndarray],
        telemetry: WorkerTelemetry,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry
        self.router = router
        self.worker = worker
        self.clock = clock
        #: Shared by every client of this logical worker: at most K pulls in flight.
        self.in_flight = in_flight
        self.shard_topic = settings.topic("shard")
        self.deltas: dict[bytes, np.ndarray] = {}
        self.predictions: list[Prediction] = []
        #: Deltas the significance filter held back, per key, for this logical worker.
        self.held_back = held_back
        self.telemetry = telemetry

    async def pull_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        # Checked before asking: a shard never answers a pull of an unknown parameter.
        specs = pull_specs(self.registry, keys)
        await self.router.ensure(self.worker)
        by_shard = group_by_shard(list(specs), self.settings.shards)
        replies = await asyncio.gather(
            *(self._pull_shard(shard, shard_keys) for shard, shard_keys in by_shard.items())
        )
        values: dict[bytes, np.ndarray] = {}
        for reply in replies:
            for key, flat in zip(reply.keys, reply.values, strict=True):
                values[key] = pulled_value(specs[key], flat)
        return values

    async def _pull_shard(self, shard: int, keys: list[bytes]) -> PsMessage:
        """Ask until answered: a shard may be moving to another process mid-request."""
        async with self.in_flight:
            return await self._ask(shard, keys)

    async def _ask(self, shard: int, keys: list[bytes]) -> PsMessage:
        while True:
            request_id = random.getrandbits(63)
            future = self.router.expect(request_id)
            request = PsMessage(
                Kind.PULL, self.worker, keys, clock=self.clock, request_id=request_id
            )
            sent = time.monotonic()
            await self.app.producer.send(
                self.shard_topic, None, encode_message(request), shard, None, None
            )
            try:
                reply = await asyncio.wait_for(future, self.settings.pull_timeout)
            except TimeoutError:
                self.router.forget(request_id)
                log.warning(
                    "worker %s: pull from shard %s timed out, asking again", self.worker, shard
                )
                continue
            self.telemetry.pulled(shard, time.monotonic() - sent)
            return reply

    async def shard_state(self) -> list[tuple[int, int]]:
        """This worker's clock and high-water mark as every shard has them (a pull without
        keys is never held)."""
        await self.router.ensure(self.worker)
        replies = await asyncio.gather(
            *(self._pull_shard(shard, []) for shard in range(self.settings.shards))
        )
        return [(reply.first_offset, reply.last_offset) for reply in replies]

    def push_many(self, deltas: Mapping[bytes, np.ndarray]) -> None:
        """Refuse at once what a shard would reject (by the rule agents/local.py applies
        too, tables/contract.py), so that the logic's batch fails here and the worker can
        find the records it misbehaves on."""
        add_deltas(self.registry, self.deltas, deltas)

    def output(self, prediction: Prediction) -> None:
        self.predictions.append(prediction)

    async def flush(self, first_offset: int, last_offset: int, every_shard: bool) -> None:
        """One push per shard, covering training offsets first..last of this worker.

        With ``every_shard`` a shard this batch has no keys for gets an empty push too:
        under BSP and SSP it is what advances this worker's clock there.
        """
        self._filter()
        by_shard = group_by_shard(list(self.deltas), self.settings.shards)
        if every_shard:
            by_shard = {shard: by_shard.get(shard, []) for shard in range(self.settings.shards)}
        elif not by_shard:
            by_shard = {0: []}  # still say which training offsets this worker is past
        for shard, shard_keys in by_shard.items():
            push = PsMessage(
                Kind.PUSH,
                self.worker,
                shard_keys,
                [self.deltas[k] for k in shard_keys],
                clock=self.clock,
                first_offset=first_offset,
                last_offset=last_offset,
            )
            half = self.settings.push_dtype == "float16"
            await self.app.producer.send(
                self.shard_topic, None, encode_message(push, half), shard, None, None
            )
        self.deltas = {}

    def _filter(self) -> None:
        """Push only significant changes (Li et al.): a key's delta, plus what was held back
        for it before, goes out once its largest magnitude passes ``push_threshold``."""
        threshold = self.settings.push_threshold
        if threshold <= 0:
            return
        held = self.held_back
        keys = list(self.deltas)
        totals = [self.deltas[k] + held.pop(k) if k in held else self.deltas[k] for k in keys]
        if totals and len({total.shape for total in totals}) == 1:
            largest = np.abs(np.stack(totals).reshape(len(totals), -1)).max(axis=1).tolist()
        else:
            largest = [float(np.abs(total).max()) for total in totals]
        self.deltas = {}
        for key, total, size in zip(keys, totals, largest, strict=True):
            if size > threshold:
                self.deltas[key] = total
            else:
                held[key] = total


def _reason(error: Exception) -> str:
    """Why the logic failed on a record, as a dead-letter reason."""
    if isinstance(error, UnknownParameterError):
        return "unknown_parameter"
    if isinstance(error, RejectedPush):
        return error.reason
    return "model_error"


@dataclass
class Unit:
    """The records read at one training offset: one message's, or one packed source
    message's. Pushes cover whole units, so high-water marks never cut one."""

    offset: int
    records: list[TrainingRecord] = field(default_factory=list)
    #: Per record: its original bytes, Kafka key and where it was read, for dead letters.
    raw: list[tuple[bytes, bytes | None, Origin]] = field(default_factory=list)


def mini_batches(units: list[Unit], size: int) -> list[list[Unit]]:
    """Consecutive runs of whole units holding at most ``size`` records each (a unit
    larger than that is a mini-batch of its own)."""
    batches: list[list[Unit]] = []
    count = size
    for unit in units:
        if count + len(unit.records) > size or not batches:
            batches.append([])
            count = 0
        batches[-1].append(unit)
        count += len(unit.records)
    return batches


def predictions_message(
    worker: int, units: list[Unit], predictions: list[Prediction]
) -> tuple[bytes, bytes]:
    """Key and value of a mini-batch's predictions (docs/formats.md): one message per
    mini-batch, keyed by the training offsets it covers, so a reader can drop a batch
    published twice after a takeover."""
    origins = [origin for unit in units for _, _, origin in unit.raw]
    body = {
        "partition": worker,
        "offsets": [origin.offset for origin in origins],
        "indexes": [origin.index for origin in origins],
        "keys": [
            p.record_key.decode(errors="replace") if p.record_key else None for p in predictions
        ],
        "values": [p.value for p in predictions],
        "labels": [p.label for p in predictions],
    }
    if any(p.extra for p in predictions):
        body["extras"] = [dict(p.extra) for p in predictions]
    key = b"%d:%d-%d" % (worker, units[0].offset, units[-1].offset)
    return key, json.dumps(body).encode()


def register_worker(
    app: faust.App, settings: JobSettings, logic: BatchWorkerLogic, registry: ParamRegistry
) -> None:
    training = app.topic(
        training_topic(settings), key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    router = ReplyRouter(settings.broker, settings.topic("replies"))
    clocks: dict[int, int] = {}
    marks: dict[int, list[int]] = {}
    #: Per logical worker, the highest training offset this process has learned: a
    #: packed message repeated by a restarted packer is not learned twice.
    learned: dict[int, int] = {}
    metrics: dict[int, ProgressiveMetrics] = {}

    dead_letters = DeadLetters(app, settings.topic("dead-letters"))
    report_counts(app, settings, "worker", dead_letters)
    telemetry = WorkerTelemetry(settings.app_id, dead_letters.counts, metrics)
    serve_metrics(app, settings, telemetry, training.get_topic_name())
    in_flight: dict[int, asyncio.Semaphore] = {}
    held_back: dict[int, dict[bytes, np.ndarray]] = {}

    def client_for(worker: int, clock: int) -> KafkaPsClient:
        gate = in_flight.setdefault(worker, asyncio.Semaphore(settings.max_pulls_in_flight))
        held = held_back.setdefault(worker, {})
        return KafkaPsClient(app, settings, registry, router, worker, clock, gate, held, telemetry)

    async def _logic_accepts(
        record: TrainingRecord, raw: tuple[bytes, bytes | None, Origin], clock: int
    ) -> bool:
        probe = client_for(record.partition, clock)
        try:
            await logic.on_batch([record], probe)
        except Exception as error:
            value, key, origin = raw
            await dead_letters.send(value, key, _reason(error), repr(error), origin)
            return False
        return True

    packer = Packer(settings) if packs_input(settings) else None

    @app.task
    async def start_router() -> None:
        await router.start()
        if packer is not None:
            packer.start()

    @app.on_before_shutdown.connect
    async def stop_router(app: faust.App, **_: object) -> None:
        if packer is not None:
            await asyncio.to_thread(packer.stop)
        await router.stop()

    bounded = Consistency.parse(settings.consistency).bounded
    last_batch: dict[int, float] = {}
    busy: set[int] = set()
    syncing: dict[int, asyncio.Lock] = {}

    async def clock_of(worker: int) -> int:
        """The logical worker's clock, learned from the shards when this process takes it
        over (at start or after a rebalance), so that a moved partition keeps its clock;
        with it the shards' high-water marks, where replayed batches must be cut."""
        async with syncing.setdefault(worker, asyncio.Lock()):
            if worker not in clocks:
                ask = client_for(worker, 0)
                state = await ask.shard_state()
                clocks[worker] = max(clock for clock, _ in state)
                marks[worker] = [mark for _, mark in state]
                learned[worker] = min(marks[worker])
        return clocks[worker]

    @app.on_partitions_revoked.connect
    async def forget_clocks(app: faust.App, revoked: set[TP], **_: object) -> None:
        for tp in revoked:
            if tp.topic == training.get_topic_name():
                clocks.pop(tp.partition, None)
                marks.pop(tp.partition, None)
                learned.pop(tp.partition, None)
                held_back.pop(tp.partition, None)

    @app.timer(settings.idle_interval)
    async def heartbeat() -> None:
        """Advance the clocks of idle logical workers, so BSP and SSP never wait on them."""
        if not bounded:
            return
        now = time.monotonic()
        for tp in app.consumer.assignment():
            worker = tp.partition
            if tp.topic != training.get_topic_name() or worker in busy:
                continue
            if now - last_batch.get(worker, 0.0) < settings.idle_interval:
                continue
            clock = await clock_of(worker)
            clocks[worker], last_batch[worker] = clock + 1, now
            idle = client_for(worker, clock)
            await idle.flush(-1, -1, every_shard=True)

    async def read_units(worker: int, events: list[faust.EventT]) -> list[Unit]:
        """The events' records, parsed and grouped by training offset; bad ones go to dead
        letters (a unit whose records are all bad still counts as read)."""
        units: list[Unit] = []
        for event in events:
            try:
                items = split_message(event.value, event.message.offset, event.key)
            except BadRecordError as error:
                await dead_letters.send(event.value, event.key, error.reason, str(error), event)
                continue
            for item in items:
                if not units or units[-1].offset != item.offset:
                    units.append(Unit(item.offset))
                origin = Origin(settings.input_topic, worker, item.offset, item.index)
                try:
                    record = parse_record(
                        item.value,
                        worker,
                        item.offset,
                        require_label=not settings.predict_unlabelled,
                    )
                except BadRecordError as error:
                    await dead_letters.send(item.value, item.key, error.reason, str(error), origin)
                    continue
                units[-1].records.append(record)
                units[-1].raw.append((item.value, item.key, origin))
        return units

    async def run_batch(worker: int, events: list[faust.EventT]) -> None:
        """Learn the events' records in mini-batches, cut where the shards' high-water
        marks fall (after a takeover, some of it may be work a previous owner pushed but
        never committed); what this process has already learned is skipped."""
        busy.add(worker)
        try:
            await clock_of(worker)
            units = []
            for unit in await read_units(worker, events):
                # Training offsets only grow; one seen already is a restarted packer's
                # repeat, in this batch or an earlier one, and must not be learned twice.
                if unit.offset > learned[worker]:
                    units.append(unit)
                    learned[worker] = unit.offset
            offsets = [unit.offset for unit in units]
            for segment in replay_segments(offsets, marks[worker]):
                for batch in mini_batches(units[segment], settings.batch_size):
                    await learn_batch(worker, batch)
        finally:
            busy.discard(worker)

    async def learn_batch(worker: int, units: list[Unit]) -> None:
        records = [record for unit in units for record in unit.records]
        clock = await clock_of(worker)
        client = client_for(worker, clock)
        if records:
            try:
                await logic.on_batch(records, client)
            except Exception:
                # Find the records the logic cannot take, one by one; learn from the rest.
                client = client_for(worker, clock)
                for unit in units:
                    kept = [
                        (record, raw)
                        for record, raw in zip(unit.records, unit.raw, strict=True)
                        if await _logic_accepts(record, raw, clock)
                    ]
                    unit.records = [record for record, _ in kept]
                    unit.raw = [raw for _, raw in kept]
                records = [record for unit in units for record in unit.records]
                await logic.on_batch(records, client)
        sent = time.monotonic()
        await client.flush(units[0].offset, units[-1].offset, bounded)
        telemetry.batch_learned(worker, len(records), time.monotonic() - sent)
        clocks[worker] = clock + 1
        last_batch[worker] = time.monotonic()
        if client.predictions:
            await publish_predictions(worker, units, client.predictions)

    async def publish_predictions(
        worker: int, units: list[Unit], predictions: list[Prediction]
    ) -> None:
        progress = metrics.setdefault(worker, ProgressiveMetrics(logic.task))
        for prediction in predictions:
            progress.add(prediction)
        key, value = predictions_message(worker, units, predictions)
        await app.producer.send(settings.topic("predictions"), key, value, worker, None, None)
        if progress.window_records >= settings.metrics_window:
            report = json.dumps(
                {**progress.report(worker), "dead_letters": dict(dead_letters.counts)}
            ).encode()
            log.info("metrics %s", report.decode())
            await app.producer.send(settings.topic("metrics"), None, report, None, None, None)

    @app.agent(training)
    async def train(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.batch_size, within=0.1):
            by_worker: dict[int, list[faust.EventT]] = {}
            for event in events:
                by_worker.setdefault(event.message.partition, []).append(event)
            await asyncio.gather(*(run_batch(w, evs) for w, evs in by_worker.items()))
