"""The recovery watchdog seeks again a changelog partition that recovery reads nothing from."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping

from aiokafka.errors import IllegalStateError
from faust.types import TP

from kafka_ps.agents.recovery_watchdog import RecoveryWatchdog

STUCK = TP("j-server-params-changelog", 2)
MOVING = TP("j-server-params-changelog", 1)


class FakeRecovery:
    """Faust's recovery progress as the watchdog reads it."""

    def __init__(self, started: float) -> None:
        self.in_recovery = True
        self._recovery_started_at = started
        self._active_events_received_at: dict[TP, float] = {}
        self.active_offsets: Counter[TP] = Counter({STUCK: -1, MOVING: 6})
        self.highwaters = {STUCK: 14, MOVING: 9}

    def active_remaining(self) -> Counter[TP]:
        return Counter({tp: hw - self.active_offsets[tp] for tp, hw in self.highwaters.items()})


class FakeConsumer:
    def __init__(self, fails: bool = False) -> None:
        self.seeks: list[dict[TP, int]] = []
        self.fails = fails

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self.seeks.append(dict(partitions))
        if self.fails:
            raise IllegalStateError("No current assignment for partition")


def check(watchdog: RecoveryWatchdog) -> None:
    asyncio.run(watchdog.check())


def test_a_partition_silent_past_the_stall_is_sought_where_its_recovery_stands() -> None:
    recovery, consumer = FakeRecovery(time.monotonic() - 30), FakeConsumer()
    recovery._active_events_received_at[MOVING] = time.monotonic()
    check(RecoveryWatchdog(recovery, consumer, stall=20))
    assert consumer.seeks == [{STUCK: 0}]


def test_nothing_is_sought_before_the_stall_or_outside_recovery() -> None:
    recovery, consumer = FakeRecovery(time.monotonic() - 5), FakeConsumer()
    watchdog = RecoveryWatchdog(recovery, consumer, stall=20)
    check(watchdog)
    recovery._recovery_started_at -= 60
    recovery.in_recovery = False
    check(watchdog)
    assert consumer.seeks == []


def test_seeks_wait_a_stall_apart_and_stop_after_the_tries_until_the_next_recovery() -> None:
    recovery, consumer = FakeRecovery(time.monotonic() - 30), FakeConsumer()
    recovery.active_offsets[MOVING] = 9  # recovered: nothing left to read there
    watchdog = RecoveryWatchdog(recovery, consumer, stall=20, tries=2)
    check(watchdog)
    check(watchdog)  # just sought: not stalled again yet
    assert len(consumer.seeks) == 1
    for _ in range(3):
        watchdog.sought_at -= 20
        check(watchdog)
    assert len(consumer.seeks) == 2
    recovery._recovery_started_at -= 1  # a new recovery has its own tries
    check(watchdog)
    assert consumer.seeks == [{STUCK: 0}] * 3


def test_a_seek_that_fails_is_logged_and_tried_again_at_the_next_stall() -> None:
    recovery, consumer = FakeRecovery(time.monotonic() - 30), FakeConsumer(fails=True)
    recovery.active_offsets[MOVING] = 9
    watchdog = RecoveryWatchdog(recovery, consumer, stall=20)
    check(watchdog)
    watchdog.sought_at -= 20
    check(watchdog)
    assert consumer.seeks == [{STUCK: 0}] * 2
