"""The worker agent: logical worker ``w`` is partition ``w`` of the training topic.

For each mini-batch of a partition it parses the records, runs the model's worker logic
against :class:`KafkaPsClient` (one pull request per shard, answered on reply partition
``w``), then sends one push per shard and the batch's predictions. The push for a batch is
produced before the next batch's pulls, on the same shard partitions, so a worker always
reads its own writes.

:class:`WorkerAgent` holds the logical workers' state and steps; :func:`register_worker`
wires it to a Faust app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import numpy as np
import orjson
from faust.types import TP

from kafka_ps.agents.api import (
    BatchWorkerLogic,
    ParamRegistry,
    ParamSpec,
    Prediction,
    TrainingRecord,
    UnknownParameterError,
)
from kafka_ps.agents.batches import records_in, split_message
from kafka_ps.agents.dead_letters import (
    Blame,
    DeadLetterReason,
    DeadLetters,
    Origin,
    report_counts,
)
from kafka_ps.agents.metrics import ProgressiveMetrics
from kafka_ps.agents.packer import Packer, packs_input, training_topic
from kafka_ps.agents.records import BadRecordError, parse_record, parse_records
from kafka_ps.agents.replies import ReplyRouter
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.take import take_records
from kafka_ps.agents.telemetry import WorkerTelemetry, serve_metrics
from kafka_ps.agents.transport import FaustTransport, Replies, Transport
from kafka_ps.tables.clocks import Consistency
from kafka_ps.tables.contract import (
    add_deltas,
    as_delta_rows,
    pull_specs,
    pulled_rows,
    pulled_value,
    rows_spec,
)
from kafka_ps.tables.keys import group_by_shard, shards_of
from kafka_ps.tables.messages import Kind, PsMessage, encode_message
from kafka_ps.tables.replay import replay_segments
from kafka_ps.tables.shard import RejectedPush, apply_deltas

log = logging.getLogger(__name__)


class KafkaPsClient:
    """The parameter-server client of one logical worker for one mini-batch.

    It checks pulls and pushes by the contract ``agents/local.py`` shares
    (``tables/contract.py``).

    Parameters
    ----------
    transport, settings, registry, router
        How messages reach Kafka (:class:`~kafka_ps.agents.transport.Transport`), the job's
        settings and parameters, and the reply router the pull replies arrive through.
    worker, clock
        The logical worker and its clock for this mini-batch.
    in_flight
        The logical worker's gate: at most K pulls unanswered.
    held_back, telemetry
        Deltas the significance filter holds back for the logical worker; its metrics.
    """

    def __init__(
        self,
        transport: Transport,
        settings: JobSettings,
        registry: ParamRegistry,
        router: Replies,
        worker: int,
        clock: int,
        in_flight: asyncio.Semaphore,
        held_back: dict[bytes, np.ndarray],
        telemetry: WorkerTelemetry,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.registry = registry
        self.router = router
        self.worker = worker
        self.clock = clock
        #: Shared by every client of this logical worker: at most K pulls in flight.
        self.in_flight = in_flight
        self.shard_topic = settings.topic("shard")
        self.deltas: dict[bytes, np.ndarray] = {}
        #: The mini-batch's first push by rows, kept as its keys and one array.
        self.rows: tuple[list[bytes], np.ndarray] | None = None
        #: Rows pulled for this mini-batch while the one before learned.
        self.ahead: PulledAhead | None = None
        #: What :meth:`flush` sent, by key: what rows pulled ahead of it lack.
        self.pushed: dict[bytes, np.ndarray] | tuple[list[bytes], np.ndarray] = {}
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

    async def pull_rows(self, keys: Sequence[bytes]) -> np.ndarray:
        """One array of a row per key, ``(n_keys, n_slots, *shape)``: the rows arrive as
        they travel, one array per shard, and are placed without an object per key.

        Rows pulled ahead for these very keys (:meth:`prefetch`) are taken when they came
        back in time, with the push they lack added."""
        spec = rows_spec(self.registry, keys)
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead.keys is keys:
            rows = await ahead.rows(self.settings.pull_timeout)
            if rows is not None:
                return pulled_rows(spec, rows)
        await self.router.ensure(self.worker)
        groups = _by_shard(keys, self.settings.shards)
        replies = await asyncio.gather(
            *(self._pull_shard(shard, [keys[i] for i in rows]) for shard, rows in groups)
        )
        return pulled_rows(spec, _placed(spec, groups, replies))

    async def prefetch(self, keys: Sequence[bytes]) -> PulledAhead:
        """Send the pulls of ``keys`` now, for the next mini-batch's client to take (ASP).

        They reach each shard before this mini-batch's push, so their rows lack it; the
        next client adds it (:meth:`PulledAhead.missing`)."""
        spec = rows_spec(self.registry, keys)
        await self.router.ensure(self.worker)
        groups = _by_shard(keys, self.settings.shards)
        asked = [await self._request(shard, [keys[i] for i in rows]) for shard, rows in groups]
        return PulledAhead(keys, spec, groups, asked, self.router)

    async def _request(self, shard: int, keys: list[bytes]) -> tuple[int, asyncio.Future]:
        """Send one pull; its request id and the future its reply completes."""
        request_id = random.getrandbits(63)
        future = self.router.expect(request_id)
        request = PsMessage(Kind.PULL, self.worker, keys, clock=self.clock, request_id=request_id)
        await self.transport.send(self.shard_topic, encode_message(request), shard)
        return request_id, future

    async def _pull_shard(self, shard: int, keys: list[bytes]) -> PsMessage:
        """Ask until answered: a shard may be moving to another process mid-request."""
        async with self.in_flight:
            return await self._ask(shard, keys)

    async def _ask(self, shard: int, keys: list[bytes]) -> PsMessage:
        while True:
            sent = time.monotonic()
            request_id, future = await self._request(shard, keys)
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
        return [(reply.worker_clock, reply.mark) for reply in replies]

    def push_many(self, deltas: Mapping[bytes, np.ndarray]) -> None:
        """Refuse at once what a shard would reject (by the rule agents/local.py applies
        too, tables/contract.py), so that the logic's batch fails here and the worker can
        find the records it misbehaves on."""
        self._fold_rows()
        add_deltas(self.registry, self.deltas, deltas)

    def _fold_rows(self) -> None:
        """The push by rows into the deltas by key, where more is to be added to it."""
        if self.rows is not None:
            rows, self.rows = self.rows, None
            self.deltas.update(zip(*rows, strict=True))

    def push_rows(self, keys: Sequence[bytes], deltas: np.ndarray) -> None:
        """The mini-batch's first push goes out as the rows it is; any later push is added
        key by key (:meth:`push_many`), so that deltas to one key are summed."""
        rows = as_delta_rows(rows_spec(self.registry, keys), keys, deltas)
        if self.deltas or self.rows is not None:
            self.push_many(dict(zip(keys, rows, strict=True)))  # summed by key
        else:
            self.rows = (list(keys), rows)

    def output(self, prediction: Prediction) -> None:
        self.predictions.append(prediction)

    async def flush(self, first_offset: int, last_offset: int, every_shard: bool) -> None:
        """One push per shard, covering training offsets first..last of this worker.

        With ``every_shard`` a shard this batch has no keys for gets an empty push too:
        under BSP and SSP it is what advances this worker's clock there.
        """
        if self.settings.push_threshold > 0:
            self._fold_rows()
        self._filter()
        if self.rows is not None:
            keys, values = self.rows
            by_shard = {
                shard: ([keys[i] for i in rows], values[rows])
                for shard, rows in _by_shard(keys, self.settings.shards)
            }
        else:
            by_shard = {
                shard: (shard_keys, [self.deltas[k] for k in shard_keys])
                for shard, shard_keys in group_by_shard(
                    list(self.deltas), self.settings.shards
                ).items()
            }
        if every_shard:
            by_shard = {
                shard: by_shard.get(shard, ([], [])) for shard in range(self.settings.shards)
            }
        elif not by_shard:
            by_shard = {0: ([], [])}  # still say which training offsets this worker is past
        half = self.settings.push_dtype == "float16"
        for shard, (shard_keys, deltas) in by_shard.items():
            push = PsMessage(
                Kind.PUSH,
                self.worker,
                shard_keys,
                deltas,
                clock=self.clock,
                first_offset=first_offset,
                last_offset=last_offset,
            )
            await self.transport.send(self.shard_topic, encode_message(push, half), shard)
        self.pushed = self.rows if self.rows is not None else self.deltas
        self.deltas, self.rows = {}, None

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


def _placed(
    spec: ParamSpec, groups: list[tuple[int, np.ndarray]], replies: Sequence[PsMessage]
) -> np.ndarray:
    """Each shard's reply rows at their keys' positions: ``(n_keys, n_slots, *shape)``."""
    out = np.empty((sum(len(rows) for _, rows in groups), *spec.slot_shape))
    for (_, rows), reply in zip(groups, replies, strict=True):
        out[rows] = np.reshape(reply.values, (len(rows), *spec.slot_shape))
    return out


class PulledAhead:
    """Pulls sent for a mini-batch before the one ahead of it pushed (ASP pipelining).

    Parameters
    ----------
    keys, spec
        The keys pulled, all of parameter ``spec``.
    groups
        Each shard asked, with the positions of its keys in ``keys``.
    asked
        Per shard, the request id and the future of its reply.
    router
        Where the replies arrive; a request given up is forgotten there.
    """

    def __init__(
        self,
        keys: Sequence[bytes],
        spec: ParamSpec,
        groups: list[tuple[int, np.ndarray]],
        asked: list[tuple[int, asyncio.Future]],
        router: Replies,
    ) -> None:
        self.keys = keys
        self.spec = spec
        self.groups = groups
        self.asked = asked
        self.router = router
        #: The push the rows lack: the one sent after these pulls, by the mini-batch before.
        self.missing: dict[bytes, np.ndarray] | tuple[list[bytes], np.ndarray] = {}

    async def rows(self, timeout: float) -> np.ndarray | None:
        """The rows with the missing push applied as the shard applies it; None if a shard
        did not answer in time (a pull asked again would see that push: not these rows)."""
        futures = [future for _, future in self.asked]
        done, _ = await asyncio.wait(futures, timeout=timeout)
        if len(done) < len(futures):
            self.cancel()
            return None
        rows = _placed(self.spec, self.groups, [future.result() for future in futures])
        return with_push(self.spec, self.keys, rows, self.missing)

    def cancel(self) -> None:
        for request_id, future in self.asked:
            self.router.forget(request_id)
            future.cancel()


def with_push(
    spec: ParamSpec,
    keys: Sequence[bytes],
    rows: np.ndarray,
    push: Mapping[bytes, np.ndarray] | tuple[list[bytes], np.ndarray],
) -> np.ndarray:
    """``rows`` of ``keys`` after the shard applies ``push`` (by key, or keys and rows) to
    the keys it shares with them, in the parameter's dtype as the shard computes."""
    pushed_keys, deltas = push if isinstance(push, tuple) else (list(push), None)
    if not pushed_keys:
        return rows
    position = {key: j for j, key in enumerate(pushed_keys)}
    pairs = [(i, position[key]) for i, key in enumerate(keys) if key in position]
    if not pairs:
        return rows
    here, there = np.array(pairs).T
    if deltas is None:
        delta = np.stack([np.asarray(push[pushed_keys[j]]) for j in there.tolist()])  # type: ignore[index]
    else:
        delta = deltas[there]
    slots = rows[here].astype(spec.dtype, copy=False)
    rows[here] = apply_deltas(
        spec, slots, delta.reshape(len(here), *spec.delta_shape).astype(spec.dtype)
    )
    return rows


def _by_shard(keys: Sequence[bytes], shards: int) -> list[tuple[int, np.ndarray]]:
    """Each shard the keys live on, with the positions of its keys, in order."""
    owners = shards_of(keys, shards)
    order = np.argsort(owners, kind="stable")
    present, starts = np.unique(owners[order], return_index=True)
    return list(zip(present.tolist(), np.split(order, starts[1:]), strict=True))


class ProbeClient(KafkaPsClient):
    """A client that only checks whether the logic takes some records: it is never
    flushed, so it pushes nothing, and it pulls each key once for all the probes of a
    mini-batch that share its ``pulled`` rows (the checks of a bisection).

    Parameters
    ----------
    pulled
        Each key's slots as a shard replied, shared by the probes of one mini-batch.
    *args
        As for :class:`KafkaPsClient`.
    """

    def __init__(self, pulled: dict[bytes, np.ndarray], *args: Any) -> None:
        super().__init__(*args)
        self.pulled = pulled

    async def _pull_shard(self, shard: int, keys: list[bytes]) -> PsMessage:
        missing = [key for key in keys if key not in self.pulled]
        if missing:
            reply = await super()._pull_shard(shard, missing)
            self.pulled.update(zip(reply.keys, reply.values, strict=True))
        return PsMessage(Kind.REPLY, self.worker, keys, [self.pulled[key] for key in keys])


def _reason(error: Exception) -> DeadLetterReason:
    """Why the logic failed on a record, as a dead-letter reason."""
    if isinstance(error, UnknownParameterError):
        return DeadLetterReason.UNKNOWN_PARAMETER
    if isinstance(error, RejectedPush):
        return error.reason
    return DeadLetterReason.MODEL_ERROR


@dataclass(slots=True)
class Unit:
    """The records read at one training offset: one message's, or one packed source
    message's. Pushes cover whole units, so high-water marks never cut one.

    Parameters
    ----------
    offset
        The training offset the records were read at.
    records
        The parsed records, in order.
    raw
        Per record: its original bytes, Kafka key and index in a ``kps-batch`` message (or
        None), for dead letters and the predictions message.
    """

    offset: int
    records: list[TrainingRecord] = field(default_factory=list)
    #: Per record: its original bytes, Kafka key and index in a ``kps-batch`` message.
    raw: list[tuple[bytes, bytes | None, int | None]] = field(default_factory=list)


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
    body = {
        "partition": worker,
        "offsets": [unit.offset for unit in units for _ in unit.raw],
        "indexes": [index for unit in units for _, _, index in unit.raw],
        "keys": [
            p.record_key.decode(errors="replace") if p.record_key else None for p in predictions
        ],
        "values": [p.value for p in predictions],
        "labels": [p.label for p in predictions],
    }
    if any(p.extra for p in predictions):
        body["extras"] = [dict(p.extra) for p in predictions]
    key = b"%d:%d-%d" % (worker, units[0].offset, units[-1].offset)
    return key, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)  # numpy scalars too


class WorkerAgent:
    """The logical workers a worker process runs: their clocks, marks and learned offsets,
    and each step of a mini-batch, from reading its records to publishing its predictions.

    Faust delivers each take of training events to :meth:`train`; :func:`register_worker`
    wires the agent to the app.

    Parameters
    ----------
    settings
        The job: topics, shards, batch size, consistency, intervals.
    logic
        The model's worker logic.
    registry
        The job's parameters.
    transport
        Sends pulls, pushes, predictions and metrics.
    replies
        Hands each pull its reply.
    dead_letters
        Where bad records, and records the logic misbehaves on, go.
    """

    def __init__(
        self,
        settings: JobSettings,
        logic: BatchWorkerLogic,
        registry: ParamRegistry,
        transport: Transport,
        replies: Replies,
        dead_letters: DeadLetters,
    ) -> None:
        self.settings = settings
        self.logic = logic
        self.registry = registry
        self.transport = transport
        self.replies = replies
        self.dead_letters = dead_letters
        self.bounded = Consistency.parse(settings.consistency).bounded
        #: Per logical worker: its clock, and the shards' high-water marks for it.
        self.clocks: dict[int, int] = {}
        self.marks: dict[int, list[int]] = {}
        #: Per logical worker, the highest training offset this process has learned: a
        #: packed message repeated by a restarted packer is not learned twice.
        self.learned: dict[int, int] = {}
        self.metrics: dict[int, ProgressiveMetrics] = {}
        self.telemetry = WorkerTelemetry(settings.app_id, dead_letters.counts, self.metrics)
        self.in_flight: dict[int, asyncio.Semaphore] = {}
        self.held_back: dict[int, dict[bytes, np.ndarray]] = {}
        self.last_batch: dict[int, float] = {}
        self.busy: set[int] = set()
        self.syncing: dict[int, asyncio.Lock] = {}
        #: Logical workers revoked from this process in a rebalance that has not yet
        #: assigned it partitions again (:meth:`heartbeat`).
        self.handed_over: set[int] = set()

    def client_for(
        self, worker: int, clock: int, pulled: dict[bytes, np.ndarray] | None = None
    ) -> KafkaPsClient:
        """A client for one mini-batch of logical worker ``worker`` at ``clock``; with
        ``pulled``, a :class:`ProbeClient` sharing those pulled rows."""
        gate = self.in_flight.setdefault(
            worker, asyncio.Semaphore(self.settings.max_pulls_in_flight)
        )
        held = self.held_back.setdefault(worker, {})
        parts = (
            self.transport,
            self.settings,
            self.registry,
            self.replies,
            worker,
            clock,
            gate,
            held,
            self.telemetry,
        )
        return KafkaPsClient(*parts) if pulled is None else ProbeClient(pulled, *parts)

    async def clock_of(self, worker: int) -> int:
        """The logical worker's clock, learned from the shards when this process takes it
        over (at start or after a rebalance), so that a moved partition keeps its clock;
        with it the shards' high-water marks, where replayed batches must be cut."""
        async with self.syncing.setdefault(worker, asyncio.Lock()):
            if worker not in self.clocks:
                ask = self.client_for(worker, 0)
                state = await ask.shard_state()
                self.clocks[worker] = max(clock for clock, _ in state)
                self.marks[worker] = [mark for _, mark in state]
                self.learned[worker] = min(self.marks[worker])
        return self.clocks[worker]

    def forget(self, workers: Iterable[int]) -> None:
        """Logical workers this process no longer runs: their next owner asks the shards.
        Until this process is assigned partitions again they are :attr:`handed_over`."""
        for worker in workers:
            self.clocks.pop(worker, None)
            self.marks.pop(worker, None)
            self.learned.pop(worker, None)
            self.held_back.pop(worker, None)
            self.handed_over.add(worker)

    def rebalance_ended(self) -> None:
        """The rebalance ended here: the logical workers given away have owners again."""
        self.handed_over.clear()

    async def heartbeat(self, assigned: Iterable[int]) -> None:
        """Advance the clocks of idle logical workers among ``assigned``, and of those
        :attr:`handed_over` in a rebalance still under way, so BSP and SSP never wait on
        them.

        A rebalance ends only once every process has learned its take, and under BSP a
        take waits for the slowest logical worker's clock. A logical worker revoked from
        its process, not yet anyone else's, had no heartbeat: when every process was in a
        take that waited for it, the rebalance could never end (the BSP chaos test hung
        for good in CI). Its clock is read from the shards each time and not kept: the
        process may get it back, and then asks the shards as any new owner does.
        """
        if not self.bounded:
            return
        now = time.monotonic()
        for worker in assigned:
            if self.idle(worker, now):
                clock = await self.clock_of(worker)
                self.clocks[worker], self.last_batch[worker] = clock + 1, now
                await self.client_for(worker, clock).flush(-1, -1, every_shard=True)
        for worker in list(self.handed_over):
            if self.idle(worker, now):
                state = await self.client_for(worker, 0).shard_state()
                clock = max(clock for clock, _ in state)
                self.last_batch[worker] = now
                await self.client_for(worker, clock).flush(-1, -1, every_shard=True)

    def idle(self, worker: int, now: float) -> bool:
        """Whether ``worker`` has had no mini-batch for an idle interval, and has none now."""
        if worker in self.busy:
            return False
        return now - self.last_batch.get(worker, 0.0) >= self.settings.idle_interval

    async def train(self, events: Sequence[faust.EventT]) -> None:
        """Learn a take of training events, each logical worker's concurrently."""
        by_worker: dict[int, list[faust.EventT]] = {}
        for event in events:
            by_worker.setdefault(event.message.partition, []).append(event)
        await asyncio.gather(*(self.run_batch(w, evs) for w, evs in by_worker.items()))

    async def read_units(self, worker: int, events: list[faust.EventT]) -> list[Unit]:
        """The events' records, parsed and grouped by training offset; bad ones go to dead
        letters (a unit whose records are all bad still counts as read)."""
        units: list[Unit] = []
        for event in events:
            try:
                items = split_message(event.value, event.message.offset, event.key)
            except BadRecordError as error:
                await self.dead_letters.send(
                    event.value, event.key, error.reason, str(error), event
                )
                continue
            require_label = not self.settings.predict_unlabelled
            parsed = parse_records(
                [item.value for item in items],
                worker,
                [item.offset for item in items],
                require_label=require_label,
            )
            for i, item in enumerate(items):
                if parsed is not None:
                    record = parsed[i]
                else:
                    try:
                        record = parse_record(
                            item.value, worker, item.offset, require_label=require_label
                        )
                    except BadRecordError as error:
                        origin = Origin(self.settings.input_topic, worker, item.offset, item.index)
                        await self.dead_letters.send(
                            item.value, item.key, error.reason, str(error), origin
                        )
                        if not units or units[-1].offset != item.offset:
                            units.append(Unit(item.offset))  # read, though none of it learned
                        continue
                raw = (item.value, item.key, item.index)
                if units and units[-1].offset == item.offset:
                    units[-1].records.append(record)
                    units[-1].raw.append(raw)
                else:
                    units.append(Unit(item.offset, [record], [raw]))
        return units

    async def run_batch(self, worker: int, events: list[faust.EventT]) -> None:
        """Learn the events' records in mini-batches, cut where the shards' high-water
        marks fall (after a takeover, some of it may be work a previous owner pushed but
        never committed); what this process has already learned is skipped."""
        self.busy.add(worker)
        try:
            await self.clock_of(worker)
            units = self.unlearned(worker, await self.read_units(worker, events))
            offsets = [unit.offset for unit in units]
            batches = [
                batch
                for segment in replay_segments(offsets, self.marks[worker])
                for batch in mini_batches(units[segment], self.settings.batch_size)
            ]
            # One list per mini-batch: the logic knows a mini-batch by its list of records.
            records = [[record for unit in batch for record in unit.records] for batch in batches]
            ahead: PulledAhead | None = None
            for i, batch in enumerate(batches):
                after = records[i + 1] if i + 1 < len(batches) else None
                ahead = await self.learn_batch(worker, batch, records[i], ahead, after)
        finally:
            self.busy.discard(worker)

    @property
    def pipelined(self) -> bool:
        """Whether a logical worker pulls a mini-batch's rows while the one before learns.

        Under ASP only (a BSP or SSP pull may be held until after the push it would lack),
        and with pushes applied as sent (no float16 rounding, no significance filter), so
        that the worker adds exactly what the shard added."""
        settings = self.settings
        return (
            settings.pull_ahead
            and not self.bounded
            and settings.push_dtype != "float16"
            and settings.push_threshold <= 0
        )

    def unlearned(self, worker: int, units: list[Unit]) -> list[Unit]:
        """The units past the highest training offset learned, which rises to theirs.

        Training offsets only grow; one seen already is a restarted packer's repeat, in
        this batch or an earlier one, and must not be learned twice."""
        kept = []
        for unit in units:
            if unit.offset > self.learned[worker]:
                kept.append(unit)
                self.learned[worker] = unit.offset
        return kept

    async def learn_batch(
        self,
        worker: int,
        units: list[Unit],
        records: list[TrainingRecord],
        ahead: PulledAhead | None = None,
        after: list[TrainingRecord] | None = None,
    ) -> PulledAhead | None:
        """Run the logic on one mini-batch, publish its predictions, push its deltas and
        advance the clock.

        ``ahead`` holds rows pulled for it while the mini-batch before learned; with the
        next mini-batch's records ``after``, its rows are pulled now and returned."""
        clock = await self.clock_of(worker)
        following = None
        if after is not None and self.pipelined:
            following = await self.pull_ahead(worker, clock + 1, after)
        client, records = await self.run_logic(worker, clock, units, records, ahead)
        # Predictions go out before the pushes: once a push has raised a shard's high-water
        # mark, a process taking this partition over skips the batch and would never
        # publish them again. Sent first, a lost push only makes them published twice, which
        # readers count once (docs/formats.md).
        if client.predictions:
            await self.publish_predictions(worker, units, client.predictions)
        sent = time.monotonic()
        await client.flush(units[0].offset, units[-1].offset, self.bounded)
        self.telemetry.batch_learned(worker, len(records), time.monotonic() - sent)
        self.clocks[worker] = clock + 1
        self.last_batch[worker] = time.monotonic()
        if following is not None:
            following.missing = client.pushed
        return following

    async def pull_ahead(
        self, worker: int, clock: int, records: list[TrainingRecord]
    ) -> PulledAhead | None:
        """Send the pulls of the mini-batch of ``records`` if the logic can say its keys."""
        keys = self.logic.rows_to_pull(records) if records else None
        if not keys:
            return None
        return await self.client_for(worker, clock).prefetch(keys)

    async def run_logic(
        self,
        worker: int,
        clock: int,
        units: list[Unit],
        records: list[TrainingRecord],
        ahead: PulledAhead | None = None,
    ) -> tuple[KafkaPsClient, list[TrainingRecord]]:
        """The client that ran the logic on the units' ``records``, and the records learned.

        When the batch fails, the records the logic cannot take are found by bisection
        (:meth:`rejected`), sent to dead letters and dropped from ``units``; the rest are
        learned."""
        client = self.client_for(worker, clock)
        client.ahead = ahead
        try:
            if records:
                await self.logic.on_batch(records, client)
            return client, records
        except Exception:
            raws = [raw for unit in units for raw in unit.raw]
            rejected = set(await self.rejected(worker, clock, records, raws))
            position = 0
            for unit in units:
                kept = [j for j in range(len(unit.records)) if position + j not in rejected]
                position += len(unit.records)
                unit.records = [unit.records[j] for j in kept]
                unit.raw = [unit.raw[j] for j in kept]
            records = [record for unit in units for record in unit.records]
            client = self.client_for(worker, clock)
            await self.logic.on_batch(records, client)
            return client, records
        finally:
            if ahead is not None:
                ahead.cancel()  # taken already, or never to be: its replies are not awaited

    async def rejected(
        self,
        worker: int,
        clock: int,
        records: list[TrainingRecord],
        raws: list[tuple[bytes, bytes | None, int | None]],
    ) -> list[int]:
        """The positions of the ``records`` (a mini-batch the logic failed on) that the
        logic cannot take alone; each goes to dead letters, in order.

        Halves that fail are split again down to single records, so k bad records of n
        cost O(k log n) dry runs rather than n, and the dry runs pull each key once.
        """
        pulled: dict[bytes, np.ndarray] = {}

        async def within(start: int, end: int) -> list[int]:
            try:
                await self.logic.on_batch(
                    records[start:end], self.client_for(worker, clock, pulled)
                )
            except Exception as error:
                if end - start > 1:
                    return await halves(start, end)
                value, key, index = raws[start]
                record = records[start]
                origin = Origin(self.settings.input_topic, record.partition, record.offset, index)
                await self.dead_letters.send(
                    value, key, _reason(error), repr(error), origin, Blame.LOGIC
                )
                return [start]
            return []

        async def halves(start: int, end: int) -> list[int]:
            middle = (start + end) // 2
            return await within(start, middle) + await within(middle, end)

        # The whole mini-batch failed already: one record is checked alone, more are split.
        return await (within(0, 1) if len(records) == 1 else halves(0, len(records)))

    async def publish_predictions(
        self, worker: int, units: list[Unit], predictions: list[Prediction]
    ) -> None:
        """One predictions message for the mini-batch; a metrics report when a progressive
        window is full."""
        progress = self.metrics.setdefault(worker, ProgressiveMetrics(self.logic.task))
        progress.add_all(predictions)
        key, value = predictions_message(worker, units, predictions)
        await self.transport.send(self.settings.topic("predictions"), value, worker, key)
        if progress.window_records >= self.settings.metrics_window:
            report = json.dumps(
                {**progress.report(worker), "dead_letters": dict(self.dead_letters.counts)}
            ).encode()
            log.info("metrics %s", report.decode())
            await self.transport.send(self.settings.topic("metrics"), report)


#: Mini-batches' worth of records a worker's take holds at most under ASP.
TAKE_BATCHES = 4


def take_size(settings: JobSettings) -> int:
    """Records after which a worker's take ends, however they are packed (agents/take.py).

    A rebalance waits until a revoked process has learned its take, so a take is bounded:
    under ASP by a few mini-batches (fewer would leave more short mini-batches at take
    ends); under BSP and SSP by one, since each mini-batch is a clock that may wait on a
    process that cannot rejoin before the rebalance ends.
    """
    bounded = Consistency.parse(settings.consistency).bounded
    return settings.batch_size * (1 if bounded else TAKE_BATCHES)


def register_worker(
    app: faust.App, settings: JobSettings, logic: BatchWorkerLogic, registry: ParamRegistry
) -> None:
    """Host the job's worker agent in ``app``: its training agent, reply router, packer,
    heartbeat timer and signals."""
    training = app.topic(
        training_topic(settings), key_type=bytes, value_type=bytes, partitions=settings.partitions
    )
    training_name = training.get_topic_name()
    router = ReplyRouter(settings.broker, settings.topic("replies"))
    dead_letters = DeadLetters(app, settings.topic("dead-letters"))
    report_counts(app, settings, "worker", dead_letters)
    workers = WorkerAgent(
        settings, logic, registry, FaustTransport(app, settings.broker), router, dead_letters
    )
    serve_metrics(app, settings, workers.telemetry, training_name)
    packer = Packer(settings) if packs_input(settings) else None

    @app.task
    async def start_router() -> None:
        if packer is not None:
            packer.start()  # its group join, in its thread, beside the router's start
        await router.start()

    @app.on_before_shutdown.connect
    async def stop_router(app: faust.App, **_: object) -> None:
        if packer is not None:
            await asyncio.to_thread(packer.stop)
        await router.stop()

    @app.on_partitions_revoked.connect
    async def forget_clocks(app: faust.App, revoked: set[TP], **_: object) -> None:
        workers.forget(tp.partition for tp in revoked if tp.topic == training_name)

    @app.on_partitions_assigned.connect
    async def rebalanced(app: faust.App, assigned: set[TP], **_: object) -> None:
        workers.rebalance_ended()

    @app.timer(settings.idle_interval)
    async def heartbeat() -> None:
        assigned = app.consumer.assignment()
        await workers.heartbeat(tp.partition for tp in assigned if tp.topic == training_name)

    @app.agent(training)
    async def train(stream: faust.StreamT) -> None:
        takes = take_records(stream, take_size(settings), settings.batch_wait, records_in)
        async for events in takes:
            await workers.train(events)
