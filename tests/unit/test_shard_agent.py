"""The shard agent, driven event by event through an in-memory transport: pulls answered
from the table, pushes applied exactly once, the read position, seeks back over holes,
flush-then-acknowledge, BSP holds, ticks, and states forgotten on a rebalance."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from faust.types import TP

from kafka_ps.agents import server
from kafka_ps.agents.api import ParamRegistry, ParamSpec
from kafka_ps.agents.server import ShardAgent
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.init import Constant
from kafka_ps.tables.messages import Kind, PsMessage, decode_message, encode_message
from kafka_ps.tables.replay import DEFERRED_INDEX, DeferredPushes, deferred_key
from kafka_ps.tables.shard import Shard
from kafka_ps.tables.update_rules import make_rule
from tests.fakes import Acks, InMemoryTransport, Record, RecordingPublisher

W = b"w:0"
REGISTRY = ParamRegistry([ParamSpec("w", (2,), make_rule("add"), init=Constant(0.5))])


class Harness:
    """One shard agent, its table, and partition 0 of its shard topic."""

    def __init__(
        self,
        table: dict[bytes, bytes] | None = None,
        transport: InMemoryTransport | None = None,
        **fields: object,
    ) -> None:
        intervals = {"publish_interval": 60.0, "flush_interval": 60.0}
        fields = {"app_id": "j", "partitions": 2, "shards": 1, **intervals} | fields
        self.settings = JobSettings(**fields)  # type: ignore[arg-type]
        self.table: dict[bytes, bytes] = {} if table is None else table
        self.transport = InMemoryTransport() if transport is None else transport
        self.publisher = RecordingPublisher()
        self.acks = Acks()
        self.agent = ShardAgent(
            self.settings,
            REGISTRY,
            self.table,
            self.transport,
            self.publisher,
            self.transport.dead_letters(self.settings),
        )

    def produce(self, message: PsMessage | bytes) -> Record:
        value = message if isinstance(message, bytes) else encode_message(message)
        return self.transport.append(self.settings.topic("shard"), value)

    def serve(self, *records: Record) -> None:
        async def serve_all() -> None:
            for record in records:
                await self.agent.serve(record.event, self.acks)

        asyncio.run(serve_all())

    def flush(self) -> None:
        asyncio.run(self.agent.flush(self.agent.states[0], self.acks))

    def replies(self, worker: int) -> list[PsMessage]:
        return self.transport.messages(self.settings.topic("replies"), worker)

    def pull(self, worker: int = 0, clock: int = 0, request_id: int = 7) -> PsMessage:
        """Serve a pull of ``W``; the reply it got, if any."""
        answered = len(self.replies(worker))
        self.serve(self.produce(pull(worker, clock, request_id)))
        replies = self.replies(worker)
        assert len(replies) == answered + 1, "the pull was not answered"
        return replies[-1]


def push(worker: int = 0, offsets: tuple[int, int] = (0, 0), clock: int = 0) -> PsMessage:
    first, last = offsets
    values = [np.ones((1, 2))]
    return PsMessage(Kind.PUSH, worker, [W], values, clock, first_offset=first, last_offset=last)


def pull(worker: int = 0, clock: int = 0, request_id: int = 7) -> PsMessage:
    return PsMessage(Kind.PULL, worker, [W], clock=clock, request_id=request_id)


def value_of(reply: PsMessage) -> list[float]:
    return [float(x) for x in np.asarray(reply.values[0]).ravel()]


def value_of_key(shard: Shard) -> list[float]:
    return [float(x) for x in shard.pull([W])[0][0]]


def test_a_pull_is_answered_with_the_stored_value_on_the_worker_s_reply_partition() -> None:
    table: dict[bytes, bytes] = {}
    stored = Shard(REGISTRY, 0)
    stored.push([W], [np.array([[2.0, 3.0]])], offset=0)
    stored.flush(table)
    shard = Harness(table)
    reply = shard.pull(worker=1, request_id=42)
    assert reply.kind is Kind.REPLY
    assert (reply.worker, reply.request_id, list(reply.keys)) == (1, 42, [W])
    assert value_of(reply) == [2.5, 3.5]
    assert shard.replies(0) == []


def test_a_keyless_pull_is_answered_with_the_worker_s_clock_and_mark() -> None:
    shard = Harness()
    shard.serve(shard.produce(push(worker=1, offsets=(10, 14), clock=5)))
    shard.serve(shard.produce(PsMessage(Kind.PULL, 1, [], clock=0, request_id=8)))
    reply = shard.replies(1)[-1]
    assert (reply.request_id, list(reply.keys)) == (8, [])
    assert (reply.worker_clock, reply.mark) == (6, 14)  # its push ended clock 5
    assert (reply.first_offset, reply.last_offset) == (-1, -1)


def test_a_push_delivered_twice_is_applied_once() -> None:
    shard = Harness()
    record = shard.produce(push())
    shard.serve(record, record)
    assert value_of(shard.pull()) == [1.5, 1.5]


def test_a_new_push_of_work_the_shard_has_already_applied_is_dropped() -> None:
    shard = Harness()
    shard.serve(shard.produce(push(offsets=(3, 5))))
    shard.serve(shard.produce(push(offsets=(4, 5))))  # a takeover's replay, at a new offset
    assert value_of(shard.pull()) == [1.5, 1.5]
    assert shard.agent.replays["dropped"] == 1
    shard.serve(shard.produce(push(offsets=(6, 6))))
    assert value_of(shard.pull()) == [2.5, 2.5]


def test_events_are_acknowledged_only_by_the_flush_that_makes_them_durable() -> None:
    shard = Harness()
    shard.serve(shard.produce(push()), shard.produce(pull()))
    assert shard.acks.offsets[0] == []
    assert shard.table == {}
    shard.flush()
    assert shard.acks.offsets[0] == [0, 1]
    assert shard.table
    assert shard.publisher.published[-1][0] == 0
    assert list(shard.publisher.published[-1][1]) == [0, -1]  # worker 0's mark, worker 1's


def test_a_restarted_shard_skips_and_acknowledges_what_its_table_holds() -> None:
    first = Harness()
    records = [first.produce(push(offsets=(0, 0))), first.produce(push(offsets=(1, 1)))]
    first.serve(*records)
    first.flush()
    restarted = Harness(first.table, first.transport)
    # Faust's committed offset lags: the replay starts below the read position.
    restarted.serve(*records)
    assert restarted.acks.offsets[0] == [0, 1]
    assert value_of(restarted.pull()) == [2.5, 2.5]


def test_a_hole_in_the_offsets_sends_the_partition_back_before_anything_is_applied() -> None:
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[0], records[2])
    assert shard.transport.sought == {TP(shard.settings.topic("shard"), 0): 1}
    assert shard.agent.states[0].expected == 1
    shard.serve(records[1], records[2])
    assert value_of(shard.pull()) == [3.5, 3.5]


def test_a_partition_that_never_flushed_is_read_from_its_start() -> None:
    """Faust drops what it fetched for a partition while recovering the tables and, with no
    committed offset, never seeks back to it: the first event can arrive past the start."""
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[2])
    assert shard.transport.sought == {TP(shard.settings.topic("shard"), 0): 0}
    assert shard.agent.states[0].expected == 0
    shard.serve(*records)
    assert value_of(shard.pull()) == [3.5, 3.5]


def test_a_seek_back_goes_to_the_committed_offset_when_that_is_lower() -> None:
    """Faust commits only from its committed offset on: events it dropped in a rebalance
    below the table's position must be read again and acknowledged, or the partition never
    commits again."""
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[0])
    shard.flush()  # offset 0 is in the table; Faust has not committed past it yet
    tp = TP(shard.settings.topic("shard"), 0)
    shard.transport.committed_offsets[tp] = 0
    shard.serve(records[2])  # offset 1 is missing
    assert shard.transport.sought == {tp: 0}
    acked = len(shard.acks.offsets[0])
    shard.agent.states[0].sought -= server.SEEK_PATIENCE
    shard.serve(records[0])
    # Read again: acknowledged, not applied, and progress that puts off another seek.
    assert shard.acks.offsets[0][acked:] == [0]
    shard.transport.sought.clear()
    asyncio.run(shard.agent.tick())
    assert shard.transport.sought == {}
    shard.serve(*records[1:])
    assert value_of(shard.pull()) == [3.5, 3.5]


def test_after_a_seek_back_nothing_counts_until_its_target_arrives() -> None:
    """Faust can deliver what it fetched before the seek and then drop the refetched events
    below it as read already: taken in order, those would leave the committed offset's run
    of acknowledgements broken for good. They wait for the target, which the timer seeks
    again."""
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(4)]
    shard.serve(records[0])
    shard.flush()
    tp = TP(shard.settings.topic("shard"), 0)
    shard.transport.committed_offsets[tp] = 0
    shard.serve(records[3])  # offsets 1..2 missing: back to the committed offset 0
    assert shard.transport.sought == {tp: 0}
    shard.serve(records[1], records[2])  # fetched before the seek: the target has not come
    assert shard.agent.states[0].expected == 1
    shard.transport.sought.clear()
    shard.agent.states[0].sought -= server.SEEK_PATIENCE
    asyncio.run(shard.agent.tick())
    assert shard.transport.sought == {tp: 0}
    acked = len(shard.acks.offsets[0])
    shard.serve(*records)
    assert shard.acks.offsets[0][acked:] == [0]
    assert value_of(shard.pull()) == [4.5, 4.5]


def test_a_seek_target_that_never_comes_is_given_up_after_the_tries() -> None:
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[0], records[2])
    state = shard.agent.states[0]
    for _ in range(server.SEEK_TRIES - 1):  # the first seek was the hole's
        state.sought -= server.SEEK_PATIENCE
        asyncio.run(shard.agent.tick())
        assert state.awaiting == 1
    state.sought -= server.SEEK_PATIENCE
    asyncio.run(shard.agent.tick())
    assert state.awaiting is None
    shard.serve(records[1], records[2])
    assert value_of(shard.pull()) == [3.5, 3.5]


def test_a_seek_nothing_answers_is_repeated_by_the_timer_not_left_to_wait_forever() -> None:
    shard = Harness()
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[0], records[2])
    tp = TP(shard.settings.topic("shard"), 0)
    shard.transport.sought.clear()
    asyncio.run(shard.agent.tick())
    assert shard.transport.sought == {}  # still within SEEK_PATIENCE
    shard.agent.states[0].sought -= server.SEEK_PATIENCE  # nothing arrived meanwhile
    asyncio.run(shard.agent.tick())
    assert shard.transport.sought == {tp: 1}
    shard.serve(records[1], records[2])
    assert shard.agent.states[0].sought_tp is None  # in order again: no more seeks
    assert value_of(shard.pull()) == [3.5, 3.5]


def test_a_seek_that_hangs_does_not_stop_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    shard = Harness()

    async def hang(tp: TP, offset: int) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(shard.transport, "seek", hang)
    monkeypatch.setattr(server, "SEEK_PATIENCE", 0.05)
    records = [shard.produce(push(offsets=(i, i))) for i in range(3)]
    shard.serve(records[0], records[2])  # returns: the seek gave up after SEEK_PATIENCE
    assert shard.agent.states[0].expected == 1 and shard.agent.states[0].seeks == 1


def test_an_event_read_before_a_rebalance_is_ignored() -> None:
    shard = Harness()
    stale = shard.produce(push())
    shard.transport.generation = 2
    shard.serve(stale)
    assert shard.agent.states == {}
    assert shard.acks.offsets[0] == []


def test_under_bsp_a_pull_waits_for_the_slowest_worker_and_pushes_apply_together() -> None:
    shard = Harness(consistency="bsp")
    shard.serve(shard.produce(push(worker=0, clock=0)))
    shard.serve(shard.produce(pull(worker=0, clock=1)))
    assert shard.replies(0) == []  # worker 1 has not pushed clock 0 yet
    assert value_of(shard.pull(worker=1, clock=0)) == [0.5, 0.5]  # clock 0 sees no push
    shard.serve(shard.produce(push(worker=1, clock=0)))
    [held] = shard.replies(0)
    assert value_of(held) == [2.5, 2.5]  # both pushes of clock 0, and nothing else
    assert held.clock == 1


def test_under_bsp_a_held_push_the_table_lost_is_read_again_from_the_shard_topic() -> None:
    """The index of held pushes outlived one message (Faust sent the two changelog writes
    out of order and a SIGKILL fell between them): the push is read at its offset again,
    and applied once."""
    shard = Harness(consistency="bsp")
    shard.serve(shard.produce(push(worker=0, clock=0)))
    shard.flush()
    del shard.table[deferred_key(0)]  # the held push at shard-topic offset 0
    restarted = Harness(table=shard.table, transport=shard.transport, consistency="bsp")
    restarted.serve(restarted.produce(push(worker=1, clock=0)))
    assert value_of(restarted.pull(worker=0, clock=1)) == [2.5, 2.5]
    restarted.flush()
    assert DEFERRED_INDEX in shard.table and len(DeferredPushes(shard.table)) == 0


def test_a_rejected_push_goes_to_dead_letters_and_changes_nothing() -> None:
    shard = Harness()
    bad = PsMessage(Kind.PUSH, 0, [W], [np.array([[np.nan, 1.0]])], 0, 0, 0, 0)
    shard.serve(shard.produce(bad), shard.produce(b"not a message"))
    headers = [
        dict(record.headers)
        for record in shard.transport.records(shard.settings.topic("dead-letters"))
    ]
    # The push is the logic's doing; a message that is not kafka-ps's is bad input.
    assert [(h["kps-reason"], h["kps-blame"]) for h in headers] == [
        (b"non_finite_delta", b"logic"),
        (b"malformed", b"input"),
    ]
    assert value_of(shard.pull()) == [0.5, 0.5]


@pytest.mark.parametrize(
    ("flush_idle", "publish_idle", "ticks"),
    [(61.0, 0.0, 1), (59.0, 0.0, 0), (0.0, 11.0, 1), (0.0, 9.0, 0), (61.0, 11.0, 1)],
)
def test_a_partition_is_ticked_once_a_flush_or_a_publication_is_due(
    flush_idle: float, publish_idle: float, ticks: int
) -> None:
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(push()))
    state = shard.agent.states[0]
    state.last_flush -= flush_idle
    state.last_publish -= publish_idle
    asyncio.run(shard.agent.tick())
    asyncio.run(shard.agent.tick())  # a tick already sent is not sent again
    kinds = [message.kind for message in shard.transport.messages(shard.settings.topic("shard"))]
    assert kinds == [Kind.PUSH] + [Kind.TICK] * ticks


def test_a_partition_idle_for_two_publish_intervals_flushes_and_commits_at_once() -> None:
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(push()))
    state = shard.agent.states[0]
    state.last_event -= 19.0  # not yet idle for two publish intervals
    shard.serve(shard.produce(PsMessage(Kind.TICK, 0, [])))
    assert (shard.acks.offsets[0], shard.transport.commits) == ([], 0)
    state.last_event -= 2.0  # 21 s idle; the flush interval (60 s) has not passed
    asyncio.run(shard.agent.tick())
    (tick,) = shard.transport.records(shard.settings.topic("shard"))[2:]
    assert decode_message(tick.value).kind is Kind.TICK
    shard.serve(tick)
    assert shard.acks.offsets[0] == [0, 1, 2]
    assert shard.table
    assert shard.transport.commits == 1


def test_a_tick_that_finds_its_flush_no_longer_due_lets_the_next_one_be_sent() -> None:
    # Sent for an idle partition; an event came before it did: the partition is busy again.
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(pull()))
    state = shard.agent.states[0]
    state.last_event -= 21.0
    busy = shard.produce(pull(request_id=8))  # on its way as the tick is sent
    asyncio.run(shard.agent.tick())
    shard.serve(busy, shard.transport.records(shard.settings.topic("shard"))[2])
    assert shard.acks.offsets[0] == []  # not idle any more: no flush
    state.last_event -= 21.0  # idle again: the next tick goes out, and flushes
    asyncio.run(shard.agent.tick())
    (tick,) = shard.transport.records(shard.settings.topic("shard"))[3:]
    shard.serve(tick)
    assert shard.acks.offsets[0] == [0, 1, 2, 3]


def test_a_tick_does_not_count_as_activity() -> None:
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(push()))
    state = shard.agent.states[0]
    state.last_event -= 5.0
    shard.serve(shard.produce(PsMessage(Kind.TICK, 0, [])))
    assert time.monotonic() - state.last_event >= 5.0
    shard.serve(shard.produce(pull()))
    assert time.monotonic() - state.last_event < 5.0


def test_a_partition_with_nothing_to_publish_or_acknowledge_is_not_ticked() -> None:
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(push()))
    shard.flush()
    state = shard.agent.states[0]
    state.last_flush -= 61.0
    state.last_publish -= 11.0
    asyncio.run(shard.agent.tick())
    kinds = [message.kind for message in shard.transport.messages(shard.settings.topic("shard"))]
    assert kinds == [Kind.PUSH]


def test_a_tick_flushes_its_partition_once_a_flush_is_due() -> None:
    shard = Harness(flush_interval=60.0)
    shard.serve(shard.produce(push()))
    shard.agent.states[0].last_flush -= 61.0
    shard.serve(shard.produce(PsMessage(Kind.TICK, 0, [])))
    assert shard.acks.offsets[0] == [0, 1]
    assert shard.table


def test_between_flushes_a_shard_publishes_without_writing_or_acknowledging() -> None:
    shard = Harness(flush_interval=60.0, publish_interval=10.0)
    shard.serve(shard.produce(push(offsets=(0, 4))))
    assert shard.publisher.published == []
    shard.agent.states[0].last_publish -= 11.0
    shard.serve(shard.produce(PsMessage(Kind.TICK, 0, [])))
    assert [(p, list(marks)) for p, marks in shard.publisher.published] == [(0, [4, -1])]
    assert shard.table == {}
    assert shard.acks.offsets[0] == []
    # Published, not yet durable: a crash now replays the push, and the table gets it then.
    shard.agent.states[0].last_flush -= 61.0
    shard.serve(shard.produce(pull()))
    assert shard.acks.offsets[0] == [0, 1, 2]
    assert shard.table


def test_a_forgotten_partition_is_loaded_afresh_from_its_table() -> None:
    shard = Harness()
    shard.serve(shard.produce(push(offsets=(0, 0))))
    shard.flush()
    shard.serve(shard.produce(push(offsets=(1, 1))))  # in memory only
    shard.agent.forget([0])
    assert shard.agent.states == {}
    assert value_of_key(shard.agent.state_of(0).shard) == [1.5, 1.5]
    # The next owner replays from the committed offset, 1: the unflushed push comes again.
    shard.serve(shard.transport.records(shard.settings.topic("shard"))[1])
    assert value_of(shard.pull()) == [2.5, 2.5]


def test_stopping_publishes_every_state_and_closes_the_publisher() -> None:
    shard = Harness()
    shard.serve(shard.produce(push()))
    asyncio.run(shard.agent.stop())
    assert shard.publisher.published == [(0, None)]
    assert shard.publisher.closed
