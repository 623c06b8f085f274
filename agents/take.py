"""Takes of training events bounded by the records they hold, not by their count.

Faust's ``stream.take_events(max_, within)`` counts events. A worker's events hold one
record, or a thousand or more (``kps-batch`` and ``kps-packed`` messages): a take of
``batch_size`` packed events from a backlog held a million records, and a rebalance waits
until a revoked worker has learned and acknowledged every event of its take (Faust's
``stream_wait_empty``), so a second worker process waited for the whole backlog before it
got a partition. :func:`take_records` is ``take_events`` with a weight per event: a take
ends once its events hold ``max_records`` records (or ``within`` seconds pass), and its
events are acknowledged after the body of the loop has learned them, as with
``take_events``.

It relies on private names ``take_events`` itself uses, reached through
:mod:`agents.faust_compat`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import faust
from mode.utils.futures import notify

from kafka_ps.agents.faust_compat import enable_passive, remove_processor


async def take_records(
    stream: faust.StreamT,
    max_records: int,
    within: float,
    records_in: Callable[[object], int],
) -> AsyncIterator[list[faust.EventT]]:
    """Events of ``stream`` a take at a time: a take ends when its events hold at least
    ``max_records`` records (``records_in(value)`` each) or ``within`` seconds after the
    previous one, if it holds any. Its events are acknowledged once the loop body that
    received them is done."""
    events: list[faust.EventT] = []
    held = 0
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future | None = None
    acks = stream.enable_acks

    async def add(value: object) -> object:
        nonlocal consuming, held
        if consuming is not None:
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("a take found no current event")
        events.append(event)
        held += records_in(value)
        if held >= max_records:
            full.set()
            consumed.clear()
            await stream.wait(consumed)  # type: ignore[arg-type]
        return value

    stream.enable_acks = False  # acknowledged here, after the loop body
    stream.add_processor(add)
    enable_passive(stream)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(full, timeout=within)  # type: ignore[arg-type]
            if not events:
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                for event in events:
                    await stream.ack(event)
                events.clear()
                held = 0
                notify(consuming)
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks
        remove_processor(stream, add)
