"""Consistency models through vector clocks: BSP is synchronous SGD, even with an idle partition."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kafka_ps.agents.client import produce, read_all
from kafka_ps.agents.model_export import read_table
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import wait_until_learned
from kafka_ps.tables.keys import shard_of
from kafka_ps.tables.messages import Kind, PsMessage, decode_message

LR = 0.002
TRUE_WEIGHTS = np.array([0.5, -1.0, 2.0, 0.25])


class Placed(NamedTuple):
    """A message of a kafka-ps topic and where it sits."""

    partition: int
    offset: int
    timestamp_ms: int
    message: PsMessage


def read_placed(bootstrap: str, topic: str, partitions: int) -> list[Placed]:
    """Every message of ``topic``, partition by partition, each in offset order."""
    return [
        Placed(m.partition(), m.offset(), m.timestamp()[1], decode_message(m.value()))
        for m in read_all(bootstrap, topic, range(partitions))
    ]


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[PsMessage]:
    return [placed.message for placed in read_placed(bootstrap, topic, partitions)]


def read_timed(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, PsMessage]]:
    """Every message of ``topic`` with its timestamp (ms), partition by partition."""
    return [(p.timestamp_ms, p.message) for p in read_placed(bootstrap, topic, partitions)]


def last_push_timestamp(settings: JobSettings) -> int:
    """When the last push carrying w:0 was produced, in ms since the epoch."""
    last = -1
    shard = shard_of(b"w:0", settings.shards)
    for message in read_all(settings.broker, settings.topic("shard"), [shard]):
        decoded = decode_message(message.value())
        if decoded.kind is Kind.PUSH and decoded.keys:
            last = message.timestamp()[1]
    return last


def accepted(pushes: Iterable[PsMessage]) -> list[PsMessage]:
    """The pushes of one shard, in topic order, that its high-water marks let through: a
    rebalance makes a worker push again what its partition's previous owner pushed."""
    marks: dict[int, int] = defaultdict(lambda: -1)
    kept = []
    for push in pushes:
        assert not push.first_offset <= marks[push.worker] < push.last_offset, "straddles"
        if push.last_offset > marks[push.worker]:
            kept.append(push)
            marks[push.worker] = push.last_offset
    return kept


def run_job(
    settings: JobSettings, process_factory: Callable[..., JobProcess], rows: dict[int, int]
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], list[PsMessage], np.ndarray]:
    rng = np.random.default_rng(11)
    data = {}
    for partition, count in rows.items():
        x = rng.normal(size=(count, 4))
        data[partition] = (x, x @ TRUE_WEIGHTS + rng.normal(scale=0.1, size=count))
    server = process_factory("server", settings).start()
    workers = [process_factory("worker", settings).start() for _ in range(2)]
    produce(
        settings.broker,
        settings.input_topic,
        (
            (None, encode_record(dense=list(row), label=float(label)), partition)
            for partition, (x, y) in data.items()
            for row, label in zip(x, y, strict=True)
        ),
    )
    wait_until_learned(settings, {partition: len(x) for partition, (x, _) in data.items()})
    returned_ms = time.time() * 1000
    for process in [*workers, server]:
        assert process.terminate() == 0, process.log_tail()
    pushes = accepted(
        m
        for m in read_topic(settings.broker, settings.topic("shard"), settings.shards)
        if m.kind is Kind.PUSH and m.keys == [b"w:0"]
    )
    # Termination follows the last push closely: no wait-time guess.
    assert returned_ms - last_push_timestamp(settings) < 5000
    stored = read_table(settings.broker, settings.topic("server-params-changelog"))
    return data, pushes, stored[b"w:0"][0]


def synchronous_sgd(
    data: dict[int, tuple[np.ndarray, np.ndarray]], pushes: list[PsMessage]
) -> tuple[np.ndarray, dict[int, int], int]:
    """Replay the pushes clock by clock as synchronous mini-batch SGD in numpy.

    Checks every pushed gradient against the one computed from the weights after the
    previous clock; returns the final weights, records covered per worker, and the most
    pushes seen at one clock.
    """
    by_clock: dict[int, list[PsMessage]] = defaultdict(list)
    for push in pushes:
        by_clock[push.clock].append(push)
    covered: dict[int, int] = defaultdict(int)
    weights = np.zeros(4)
    for clock in sorted(by_clock):
        step = np.zeros(4)
        for push in by_clock[clock]:
            x, y = data[push.worker]
            batch = slice(push.first_offset, push.last_offset + 1)
            gradient = ((x[batch] @ weights - y[batch])[:, None] * x[batch]).sum(axis=0)
            np.testing.assert_allclose(push.values[0], gradient, rtol=1e-9, atol=1e-9)
            covered[push.worker] += push.last_offset - push.first_offset + 1
            step += gradient
        weights = weights - LR * step
    return weights, dict(covered), max(len(group) for group in by_clock.values())


def dense_sgd_job(settings: JobSettings, **update: object) -> JobSettings:
    """Linear regression on 4 dense features, 2 training partitions and 2 shards."""
    return settings.model_copy(
        update={
            "partitions": 2,
            "shards": 2,
            "model": "tests.integration.logics:DenseSgd",
            "model_params": {"dim": 4, "lr": LR},
            **update,
        }
    )


def test_bsp_equals_synchronous_minibatch_sgd(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = dense_sgd_job(job_settings, batch_size=16, consistency="bsp")
    data, pushes, final = run_job(settings, process_factory, {0: 400, 1: 400})
    weights, covered, widest = synchronous_sgd(data, pushes)
    assert covered == {0: 400, 1: 400}
    assert widest == 2
    np.testing.assert_allclose(final, weights, atol=1e-6)


def test_bsp_completes_when_one_partition_gets_no_data(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = dense_sgd_job(job_settings, batch_size=16, consistency="bsp")
    data, pushes, final = run_job(settings, process_factory, {0: 300})
    weights, covered, _ = synchronous_sgd(data, pushes)
    assert covered == {0: 300}
    np.testing.assert_allclose(final, weights, atol=1e-6)


class ShardState(NamedTuple):
    """A shard partition right after it processed the message at ``offset``."""

    offset: int
    #: Its slowest worker's clock, and the weights it held.
    minimum: int
    weights: np.ndarray


def replay_shard(messages: list[Placed], workers: Iterable[int]) -> list[ShardState]:
    """Rebuild one shard's history from its partition of the shard topic alone, in offset
    order: a push at clock ``c`` raises its worker's clock to ``c + 1`` and, unless a
    high-water mark drops it as a replay, subtracts ``LR *`` its gradient."""
    clocks = dict.fromkeys(workers, 0)
    keyed = [p.message for p in messages if p.message.kind is Kind.PUSH and p.message.keys]
    applied = {id(push) for push in accepted(keyed)}
    weights = np.zeros(4)
    history = []
    for placed in messages:
        message = placed.message
        if message.kind is Kind.PUSH:
            clocks[message.worker] = max(clocks[message.worker], message.clock + 1)
            if id(message) in applied:
                weights = weights - LR * message.values[0]
        history.append(ShardState(placed.offset, min(clocks.values()), weights))
    return history


@dataclass(frozen=True)
class AnsweredPull:
    worker: int
    clock: int
    #: The slowest clock the shard reported in its reply.
    reported: int
    #: The true slowest clock at each moment of the shard's rebuilt history, from the pull
    #: on, whose weights are the reply's: the moments the reply can have been made at.
    possible: list[int]
    #: The slowest clock when the shard read the pull.
    on_arrival: int


def answered_pulls(settings: JobSettings) -> list[AnsweredPull]:
    """Every answered pull for parameters, matched to the moments of the shard's rebuilt
    history (from the shard topic) at which its reply (from the replies topic) fits."""
    by_partition: dict[int, list[Placed]] = defaultdict(list)
    for placed in read_placed(settings.broker, settings.topic("shard"), settings.shards):
        by_partition[placed.partition].append(placed)
    histories = {p: replay_shard(ms, range(settings.partitions)) for p, ms in by_partition.items()}
    pulls = {
        p.message.request_id: p
        for ms in by_partition.values()
        for p in ms
        if p.message.kind is Kind.PULL and p.message.keys
    }
    answered = []
    for reply in read_topic(settings.broker, settings.topic("replies"), settings.partitions):
        if (pull := pulls.get(reply.request_id)) is None:
            continue
        later = [s for s in histories[pull.partition] if s.offset >= pull.offset]
        answered.append(
            AnsweredPull(
                worker=pull.message.worker,
                clock=pull.message.clock,
                reported=reply.clock,
                possible=[s.minimum for s in later if np.array_equal(s.weights, reply.values[0])],
                on_arrival=later[0].minimum,
            )
        )
    return answered


def test_ssp_never_exceeds_its_staleness_bound_and_asp_runs_free(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    base = dense_sgd_job(job_settings, batch_size=8)
    ssp = base.model_copy(update={"consistency": "ssp:2"})
    run_job(ssp, process_factory, {0: 400, 1: 150})
    pulls = answered_pulls(ssp)
    assert len(pulls) > 50
    # Each reply fits the shard's history somewhere after its pull, with the slowest clock
    # it reports; at such a moment the slowest worker was within 2 clocks of the puller.
    unfit = [pull for pull in pulls if pull.reported not in pull.possible]
    stale = [pull for pull in pulls if pull.reported < pull.clock - 2]
    assert (unfit, stale) == ([], []), (unfit[:5], stale[:5])
    # And the bound did bite: some pull arrived too far ahead and was held, or was
    # answered with the slowest worker exactly 2 clocks behind.
    held = [pull for pull in pulls if pull.on_arrival < pull.clock - 2]
    at_bound = [pull for pull in pulls if pull.reported == pull.clock - 2]
    assert held or at_bound, pulls

    asp = base.model_copy(
        update={
            "app_id": f"{base.app_id}-asp",
            "input_topic": f"{base.input_topic}-asp",
            "data_dir": base.data_dir / "asp",
        }
    )
    _, pushes, _ = run_job(asp, process_factory, {0: 400, 1: 150})
    assert sum(p.last_offset - p.first_offset + 1 for p in pushes) == 550


def test_a_worker_never_has_more_than_k_pulls_in_flight(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess]
) -> None:
    settings = dense_sgd_job(
        job_settings, shards=4, batch_size=8, max_pulls_in_flight=2, consistency="ssp:1"
    )
    run_job(settings, process_factory, {0: 200, 1: 200})
    sent = {
        m.request_id: (ts, m.worker)
        for ts, m in read_timed(settings.broker, settings.topic("shard"), settings.shards)
        if m.kind is Kind.PULL
    }
    answered = {
        m.request_id: ts
        for ts, m in read_timed(settings.broker, settings.topic("replies"), settings.partitions)
    }
    peak: dict[int, int] = {}
    for worker in (0, 1):
        # At equal timestamps count the answer first: never a false excess.
        steps = sorted(
            [(ts, 1) for ts, w in sent.values() if w == worker]
            + [(answered[r], 0) for r, (_, w) in sent.items() if w == worker and r in answered]
        )
        in_flight = np.cumsum([1 if pull else -1 for _, pull in steps])
        peak[worker] = int(in_flight.max())
    # Every mini-batch reads all 4 shards, yet never more than K = 2 at once.
    assert peak == {0: 2, 1: 2}
