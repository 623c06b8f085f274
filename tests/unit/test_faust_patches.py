"""The faust-streaming fixes kafka-ps applies, checked on Faust's own classes."""

from __future__ import annotations

import asyncio

import pytest
from faust.tables.manager import TableManager
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from kafka_ps.agents.faust_patches import FaustPatchError, apply_faust_patches, check_patch_targets


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


def test_the_table_manager_starts_without_waiting_a_second() -> None:
    apply_faust_patches(10)
    steps: list[str] = []

    class Manager:
        should_stop = False

        async def _update_channels(self) -> None:
            steps.append("channels")

        class recovery:  # the attribute Faust's manager has
            @staticmethod
            async def start() -> None:
                steps.append("recovery")

    async def start() -> float:
        started = asyncio.get_running_loop().time()
        await TableManager.on_start(Manager())  # type: ignore[arg-type]
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(start()) < 0.5  # Faust's own waits 1.0 s
    assert steps == ["channels", "recovery"]


def test_the_patched_names_exist_in_the_installed_libraries() -> None:
    check_patch_targets()


def test_a_missing_patch_target_stops_with_one_line_naming_it() -> None:
    class Renamed:
        pass

    with pytest.raises(FaustPatchError, match=r"Renamed\.resume is gone") as error:
        check_patch_targets([(Renamed, "resume")])
    assert "\n" not in str(error.value)
