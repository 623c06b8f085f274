"""A watchdog over Faust's table recovery: a changelog partition that recovery waits for but
reads nothing from is sought again.

Seen in a server-kill chaos run: after two rebalances a second apart, Faust's recovery sought
a newly assigned changelog partition (15 records) to its start, resumed fetching, and then
received nothing from it for minutes ("No event received for active tp ... since recovery
start", logged every 5 s), so the process never served its shards again and the job never
finished. Faust only warns. Faust has more than one path that drops fetched records (its
read-offset check, and a stream partition left out of the active set while recovery runs),
so the watchdog does not guess which one: a partition that has read nothing for
``stall`` seconds while records remain is sought again to where its recovery stands, as
Faust's own seek does, at most ``tries`` times per recovery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka.errors import KafkaError
from faust.types import TP

from kafka_ps.agents.faust_compat import events_received_at, recovery_started_at

log = logging.getLogger(__name__)

#: Seconds without an event from a partition that still has records to recover.
STALL_SECONDS = 20.0
#: Seeks per recovery; a recovery that a seek does not move is left to Faust.
TRIES = 3


class Seeker(Protocol):
    async def seek_wait(self, partitions: Mapping[TP, int]) -> None: ...


class RecoveryWatchdog:
    """Seeks again the changelog partitions a running recovery reads nothing from.

    Parameters
    ----------
    recovery
        Faust's ``app.tables.recovery`` (its progress: ``in_recovery``,
        ``active_remaining()``, ``active_offsets`` and when it started and last heard
        from each partition).
    consumer
        Faust's consumer, whose ``seek_wait`` recovery itself uses.
    stall, tries
        Seconds without an event before a seek, and seeks per recovery.
    """

    def __init__(
        self, recovery: Any, consumer: Seeker, stall: float = STALL_SECONDS, tries: int = TRIES
    ) -> None:
        self.recovery = recovery
        self.consumer = consumer
        self.stall = stall
        self.tries = tries
        self.started: float | None = None
        self.seeks = 0
        self.sought_at = 0.0

    def stalled(self, now: float) -> dict[TP, int]:
        """Partitions of the running recovery with records left and no event for ``stall``
        seconds (since the recovery started, or since the last seek), each with the offset
        to read next."""
        recovery = self.recovery
        started = recovery_started_at(recovery)
        if not recovery.in_recovery or started is None:
            return {}
        if started != self.started:
            self.started, self.seeks, self.sought_at = started, 0, started
        received = events_received_at(recovery)
        return {
            tp: max(recovery.active_offsets[tp] + 1, 0)
            for tp, remaining in recovery.active_remaining().items()
            if remaining > 0 and now - max(received.get(tp, started), self.sought_at) >= self.stall
        }

    async def check(self) -> None:
        """Seek again what has stalled, if this recovery has seeks left."""
        stalled = self.stalled(time.monotonic())
        if not stalled or self.seeks >= self.tries:
            return
        self.seeks += 1
        self.sought_at = time.monotonic()
        log.warning(
            "table recovery has read nothing from %s for %.0f s; seeking again (%d of %d)",
            ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in stalled.items()),
            self.stall,
            self.seeks,
            self.tries,
        )
        try:
            await self.consumer.seek_wait(stalled)
        except (KafkaError, TimeoutError) as error:  # say, revoked meanwhile: next check
            log.warning("seeking the stalled changelog partitions failed: %r", error)
