"""A Faust process's stop: its last loop turns take a moment, not mode's second."""

from __future__ import annotations

import asyncio

import faust

from kafka_ps.app.stopping import BoundedWorker


def test_the_event_loop_closes_without_modes_one_second_wait() -> None:
    async def last_turns(worker_class: type[faust.Worker]) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await worker_class._sentinel_task(worker_class.__new__(worker_class))
        return loop.time() - started

    assert asyncio.run(last_turns(faust.Worker)) >= 1.0  # what it replaces
    assert asyncio.run(last_turns(BoundedWorker)) < 0.5
