"""The worker agent, against shard agents, through an in-memory transport: pushes reach
the shard of each key, clocks advance, work already learned or pushed is not learned
again, bad records go to dead letters, and predictions go out one message per mini-batch."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import pytest

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    Prediction,
    TrainingRecord,
)
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.keys import param_key, shard_of
from kafka_ps.tables.messages import Kind, decode_message
from kafka_ps.tables.update_rules import make_rule
from tests.fakes import InMemoryJob


class Count(BatchWorkerLogic):
    """Counts records per feature ``k`` in ``c:<k>``; predicts the count so far; fails on
    a record with feature ``bug``."""

    task = "regression"
    params = (ParamSpec("c", (1,), make_rule("add")),)

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        keys = [key_of(record) for record in records]
        counts = await ps.pull_many(sorted(set(keys)))
        deltas: Counter[bytes] = Counter()
        for record, key in zip(records, keys, strict=True):
            if "bug" in record.features:
                raise ValueError("cannot learn this record")
            ps.output(Prediction(float(counts[key][0][0]), record.label))
            deltas[key] += 1
        ps.push_many({key: np.array([[n]], dtype=float) for key, n in deltas.items()})


def key_of(record: TrainingRecord) -> bytes:
    return param_key("c", int(record.features["k"]))


def records(*ks: int) -> list[bytes]:
    return [encode_record({"k": k}, label=1.0) for k in ks]


def job(**fields: object) -> InMemoryJob:
    fields = {"app_id": "j", "partitions": 1, "shards": 2, "pack_input": False} | fields
    return InMemoryJob(JobSettings(**fields), Count())  # type: ignore[arg-type]


def run(ps: InMemoryJob, steps: Callable[[InMemoryJob], Awaitable[None]]) -> None:
    """Run ``steps`` while the shards serve; when they have served it all, flush them."""

    async def main() -> None:
        async with ps.running():
            await asyncio.wait_for(steps(ps), timeout=20)
            await asyncio.wait_for(ps.drain(), timeout=20)
            await ps.flush_shards()

    asyncio.run(main())


def count(ps: InMemoryJob, k: int) -> float:
    return float(ps.value(param_key("c", k))[0])


def test_a_mini_batch_s_pushes_reach_the_shard_of_each_key_and_are_counted() -> None:
    ps = job(shards=3, batch_size=4)
    events = ps.feed(records(*range(8), 0))
    run(ps, lambda ps: ps.worker.train(events))
    pushed: Counter[int] = Counter()
    for shard in range(3):
        for message in ps.transport.messages(ps.settings.topic("shard"), shard):
            if message.kind is Kind.PUSH:
                assert {shard_of(key, 3) for key in message.keys} <= {shard}
                pushed[shard] += len(message.keys)
    assert sum(pushed.values()) == 9 - 1 + 1  # keys 0..7 once each, key 0 again in batch 3
    assert [count(ps, k) for k in range(8)] == [2.0] + [1.0] * 7


@pytest.mark.parametrize("consistency", ["bsp", "ssp:1"])
def test_clocks_advance_one_per_mini_batch_on_every_shard(consistency: str) -> None:
    ps = job(consistency=consistency, batch_size=2)
    events = ps.feed(records(1, 2, 3, 4, 5, 6))
    run(ps, lambda ps: ps.worker.train(events))
    assert ps.worker.clocks[0] == 3
    assert [agent.states[p].clocks.get(0) for p, agent in enumerate(ps.shards)] == [3, 3]
    assert [count(ps, k) for k in range(1, 7)] == [1.0] * 6


def test_predictions_go_out_one_message_per_mini_batch_and_read_the_batch_s_own_writes() -> None:
    ps = job(batch_size=2)
    events = ps.feed(records(5, 5, 5, 5))
    run(ps, lambda ps: ps.worker.train(events))
    published = ps.transport.records(ps.settings.topic("predictions"), 0)
    assert [record.key for record in published] == [b"0:0-1", b"0:2-3"]
    assert [json.loads(record.value)["values"] for record in published] == [[0, 0], [2, 2]]
    assert count(ps, 5) == 4.0


def test_a_mini_batch_s_predictions_are_sent_before_its_pushes() -> None:
    """A push raises the shards' marks, past which a takeover learns nothing again: the
    predictions must already be out by then, or a crash between the two loses them."""
    ps = job(batch_size=2)
    events = ps.feed(records(5, 6, 7, 8))
    sent: list[str] = []
    send = ps.transport.send

    async def noting(topic: str, value: bytes, *args: object, **kwargs: object) -> None:
        if topic == ps.settings.topic("predictions"):
            sent.append("predictions")
        elif topic == ps.settings.topic("shard") and decode_message(value).kind is Kind.PUSH:
            sent.append("push")
        await send(topic, value, *args, **kwargs)  # type: ignore[arg-type]

    ps.transport.send = noting  # type: ignore[method-assign]
    run(ps, lambda ps: ps.worker.train(events))
    assert sent[0] == "predictions" and sent.count("predictions") == 2
    second = sent.index("predictions", 1)
    assert set(sent[1:second]) == {"push"} and set(sent[second + 1 :]) == {"push"}


def test_records_delivered_again_are_not_learned_twice() -> None:
    ps = job(batch_size=3)
    events = ps.feed(records(1, 2, 3, 4))

    async def twice(ps: InMemoryJob) -> None:
        await ps.worker.train(events)
        await ps.worker.train(events[1:])  # a restarted packer's repeat

    run(ps, twice)
    assert [count(ps, k) for k in (1, 2, 3, 4)] == [1.0] * 4
    assert ps.worker.learned[0] == 3


def test_a_takeover_learns_again_only_what_no_shard_has() -> None:
    ps = job(batch_size=2)
    events = ps.feed(records(1, 2, 3, 4, 5, 6))

    async def taken_over(ps: InMemoryJob) -> None:
        await ps.worker.train(events[:4])
        # The partition moves away and back before its offsets were committed.
        ps.worker.forget([0])
        assert ps.worker.clocks == {}
        await ps.worker.train(events)

    run(ps, taken_over)
    assert [count(ps, k) for k in range(1, 7)] == [1.0] * 6
    assert ps.worker.clocks[0] == 3


def test_a_replayed_mini_batch_is_cut_where_a_shard_s_mark_falls() -> None:
    a, b = 0, 4
    assert (shard_of(param_key("c", a), 2), shard_of(param_key("c", b), 2)) == (0, 1)
    ps = job(batch_size=2)
    events = ps.feed(records(a, b, a, b, a, b))

    async def taken_over(ps: InMemoryJob) -> None:
        await ps.worker.train(events[:3])  # batches 0-1 (both shards), 2 (shard 0 only)
        ps.worker.forget([0])
        await ps.worker.train(events)  # marks 2 and 1: 2-3 would straddle shard 0's mark

    run(ps, taken_over)
    assert (count(ps, a), count(ps, b)) == (3.0, 3.0)
    assert sum(agent.replays["straddled"] for agent in ps.shards) == 0


def test_a_worker_reads_its_clock_and_mark_from_every_shard_s_reply() -> None:
    a, b = 0, 4
    ps = job(batch_size=2)
    events = ps.feed(records(a, b, a))
    state: list[tuple[int, int]] = []

    async def ask(ps: InMemoryJob) -> None:
        await ps.worker.train(events)  # batch 0-1 on both shards, then 2 on shard 0 only
        state.extend(await ps.worker.client_for(0, 0).shard_state())

    run(ps, ask)
    shards = [
        (agent.states[p].clocks.get(0), agent.states[p].marks.get(0))
        for p, agent in enumerate(ps.shards)
    ]
    assert state == shards
    assert [mark for _, mark in state] == [2, 1]


def test_bad_records_go_to_dead_letters_and_the_rest_are_learned() -> None:
    ps = job(batch_size=10)
    bug = encode_record({"k": 3, "bug": 1}, label=1.0)
    events = ps.feed([*records(1), b"{not json", bug, *records(2)])
    run(ps, lambda ps: ps.worker.train(events))
    dead = ps.transport.records(ps.settings.topic("dead-letters"))
    headers = [dict(record.headers) for record in dead]
    assert [(h["kps-reason"], h["kps-blame"], h["kps-offset"]) for h in headers] == [
        (b"malformed", b"input", b"1"),
        (b"model_error", b"logic", b"2"),
    ]
    assert [count(ps, k) for k in (1, 2, 3)] == [1.0, 1.0, 0.0]


class Counted(Count):
    """:class:`Count` that counts its runs."""

    def __init__(self) -> None:
        self.runs = 0

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        self.runs += 1
        await super().on_batch(records, ps)


@pytest.mark.parametrize("bad", [{37}, {3, 40, 41}])
def test_a_failing_mini_batch_is_bisected_for_its_bad_records(bad: set[int]) -> None:
    """k bad records of n cost O(k log n) dry runs, which pull each key once, not a run
    and a pull per record; the bad go to dead letters in order, the rest learn once."""
    n, logic = 64, Counted()
    settings = JobSettings(app_id="j", partitions=1, shards=2, pack_input=False, batch_size=n)
    ps = InMemoryJob(settings, logic)
    fields = [{"k": t % 8, "bug": 1} if t in bad else {"k": t % 8} for t in range(n)]
    events = ps.feed([encode_record(f, label=1.0) for f in fields])
    run(ps, lambda ps: ps.worker.train(events))

    dead = [dict(r.headers) for r in ps.transport.records(settings.topic("dead-letters"))]
    assert [(h["kps-reason"], h["kps-blame"], int(h["kps-offset"])) for h in dead] == [
        (b"model_error", b"logic", t) for t in sorted(bad)
    ]
    assert [count(ps, k) for k in range(8)] == [
        sum(1 for t in range(k, n, 8) if t not in bad) for k in range(8)
    ]
    published = ps.transport.records(settings.topic("predictions"), 0)
    assert len(published) == 1
    assert json.loads(published[0].value)["offsets"] == [t for t in range(n) if t not in bad]
    checks = logic.runs - 2  # the mini-batch that failed, and the one learned
    assert checks <= len(bad) * 2 * int(np.log2(n))
    pulls = [
        message
        for shard in range(2)
        for message in ps.transport.messages(settings.topic("shard"), shard)
        if message.kind == Kind.PULL and message.keys
    ]
    # Per shard: the failed run, the dry runs of the two halves, the learned run.
    assert len(pulls) <= 4 * 2


def test_a_heartbeat_advances_idle_workers_under_bounded_staleness_only() -> None:
    bounded, asynchronous = job(consistency="ssp:1", partitions=2), job(partitions=2)

    async def beat(ps: InMemoryJob) -> None:
        ps.worker.busy.add(1)
        await ps.worker.heartbeat([0, 1])

    run(bounded, beat)
    assert bounded.worker.clocks == {0: 1}
    assert [agent.states[p].clocks.get(0) for p, agent in enumerate(bounded.shards)] == [1, 1]
    run(asynchronous, beat)
    assert asynchronous.worker.clocks == {}
    assert asynchronous.transport.records(asynchronous.settings.topic("shard"), 0) == []


def test_a_worker_handed_over_in_a_rebalance_gets_heartbeats_until_the_rebalance_ends() -> None:
    # Revoked from this process, nobody's yet: under BSP every take elsewhere waits for its
    # clock, and the rebalance waits for those takes.
    ps = job(consistency="bsp", partitions=2)

    def clocks_of_1() -> list[int | None]:
        return [agent.states[p].clocks.get(1) for p, agent in enumerate(ps.shards)]

    async def rebalance(ps: InMemoryJob) -> None:
        await ps.worker.heartbeat([0, 1])
        ps.worker.forget([1])
        ps.worker.last_batch = {w: 0.0 for w in ps.worker.last_batch}
        await ps.worker.heartbeat([0])

    run(ps, rebalance)
    assert clocks_of_1() == [2, 2]
    assert 1 not in ps.worker.clocks  # read from the shards, not kept: maybe not ours again

    async def ended(ps: InMemoryJob) -> None:
        ps.worker.rebalance_ended()
        ps.worker.last_batch = {w: 0.0 for w in ps.worker.last_batch}
        await ps.worker.heartbeat([0])

    run(ps, ended)
    assert clocks_of_1() == [2, 2]  # another process's now
    assert [agent.states[p].clocks.get(0) for p, agent in enumerate(ps.shards)] == [3, 3]


def test_a_hashed_model_learns_through_the_agents_what_it_learns_in_process() -> None:
    """Pulls and pushes by rows (agents/worker.py), pulled ahead of the push before them,
    against real shard agents give the parameters the in-process server (agents/local.py)
    gives, on the same mini-batches."""
    from kafka_ps.agents.local import LocalParameterServer
    from kafka_ps.agents.models import FtrlLogisticRegression
    from kafka_ps.agents.records import parse_record

    rng = np.random.default_rng(3)
    values = [
        encode_record(
            {"a": str(rng.integers(20)), "b": str(rng.integers(5)), "n": float(rng.normal())},
            label=float(rng.integers(2)),
        )
        for _ in range(300)
    ]
    model = FtrlLogisticRegression(crosses=[("a", "b")], numeric=["n"], buckets=64)
    settings = JobSettings(app_id="j", partitions=1, shards=3, pack_input=False, batch_size=50)
    ps = InMemoryJob(settings, model)
    events = ps.feed(values)

    async def steps(ps: InMemoryJob) -> None:
        # Three mini-batches a take: the second's and third's rows are pulled ahead.
        for start in range(0, len(events), 150):
            await ps.worker.train(events[start : start + 150])

    run(ps, steps)
    local = LocalParameterServer(model.params)
    records = [parse_record(value) for value in values]
    local.run(
        FtrlLogisticRegression(crosses=[("a", "b")], numeric=["n"], buckets=64),
        records,
        batch_size=50,
    )
    snapshot = local.snapshot()
    assert len(snapshot) > 30
    # Each mini-batch's keys were pulled once: the rows pulled ahead were the ones used.
    # Six mini-batches, each pulling w from three shards and the moments of "n" from one.
    pulls = [
        message
        for shard in range(3)
        for message in ps.transport.messages(settings.topic("shard"), shard)
        if message.kind == Kind.PULL and message.keys
    ]
    assert len(pulls) <= 6 * (3 + 1)
    for key, value in snapshot.items():
        assert np.array_equal(ps.value(key), value), key
