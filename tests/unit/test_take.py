"""A worker's take is bounded by the records its events hold (agents/take.py)."""

from __future__ import annotations

import asyncio

import faust
import msgpack
import pytest

from kafka_ps.agents.batches import encode_batch, encode_packed, records_in
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.take import take_records

RECORD = encode_record({"a": "x"}, label=1.0, fmt="msgpack")


@pytest.mark.parametrize("count", [1, 13, 14, 100, 70_000])
def test_a_batch_weighs_its_records_and_a_packed_message_its_sources(count: int) -> None:
    assert records_in(encode_batch([RECORD] * count)) == count
    packed = encode_packed(list(range(count)), [None] * count, [RECORD] * count)
    assert records_in(packed) == count


@pytest.mark.parametrize(
    "value",
    [
        encode_record({"a": "x"}, label=1.0),
        RECORD,
        msgpack.packb(["not-a-batch", 1, 2, 3]),
        msgpack.packb([]),
        b"",
        b"\x92",  # an array header and nothing after it
    ],
)
def test_anything_else_weighs_one_record(value: bytes) -> None:
    assert records_in(value) == 1


def test_a_take_ends_once_its_events_hold_the_records_asked_for() -> None:
    """Five batches of 600 records at most 1,000 a take: takes of two events (1,200
    records), the last one when ``within`` passes; every event acknowledged once."""
    app = faust.App("take-test", broker="kafka://127.0.0.1:9", store="memory://")
    takes: list[list[int]] = []
    seen: list[faust.EventT] = []
    topic = app.topic("in", value_type=bytes)

    @app.agent(topic)
    async def learn(stream: faust.StreamT) -> None:
        async for events in take_records(stream, 1000, 0.05, records_in):
            takes.append([records_in(event.value) for event in events])
            assert not any(event.message.acked for event in events)  # not before learned
            seen.extend(events)

    async def run() -> None:
        async with learn.test_context() as agent:
            for _ in range(5):
                await agent.put(encode_batch([RECORD] * 600))
            for _ in range(100):
                if sum(map(len, takes)) == 5:
                    break
                await asyncio.sleep(0.01)

    asyncio.run(run())
    assert takes == [[600, 600], [600, 600], [600]]
    assert all(event.message.acked for event in seen)


@pytest.mark.parametrize(("consistency", "most"), [("asp", 4 * 256), ("bsp", 256), ("ssp:2", 256)])
def test_a_take_holds_one_clock_under_bsp_and_ssp_and_a_few_under_asp(
    consistency: str, most: int
) -> None:
    from kafka_ps.agents.settings import JobSettings
    from kafka_ps.agents.worker import take_size

    assert take_size(JobSettings(app_id="j", consistency=consistency, batch_size=256)) == most
