"""The faust-streaming fixes kafka-ps applies, checked on Faust's own classes."""

from __future__ import annotations

import asyncio

from mode.utils.queues import FlowControlEvent, FlowControlQueue

from app.faust_patches import apply_faust_patches


def test_a_resume_while_flowing_keeps_queued_messages() -> None:
    apply_faust_patches(10)

    async def scenario() -> list[str]:
        flow = FlowControlEvent(initially_suspended=True)
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        queue.put_nowait("before the rebalance")
        flow.resume()  # suspended -> flowing: stale messages are dropped, as Faust intends
        assert queue.empty()
        queue.put_nowait("first message at the committed offset")
        flow.resume()  # already flowing: must not drop it
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(scenario()) == ["first message at the committed offset"]
