"""What the worker and shard agents need of Kafka, as a seam they can be tested through.

In production :class:`FaustTransport` sends through the Faust app's producer and seeks its
consumer, and a :class:`~kafka_ps.agents.replies.ReplyRouter` hands pull replies back; a
test drives :class:`~kafka_ps.agents.worker.WorkerAgent` and
:class:`~kafka_ps.agents.server.ShardAgent` through in-memory fakes of both instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import faust
from faust.types import TP

from kafka_ps.agents.client import read_one
from kafka_ps.agents.faust_compat import committed_offset
from kafka_ps.tables.messages import PsMessage

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class Transport(Protocol):
    """Sends messages and positions the consumer, as the agents' Faust app does."""

    async def send(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Produce ``value`` to ``partition`` of ``topic`` (the key's when ``None``)."""

    async def seek(self, tp: TP, offset: int) -> None:
        """Read the consumed partition ``tp`` again from ``offset``."""

    async def read(self, topic: str, partition: int, offset: int) -> bytes:
        """The value of the message at ``offset`` of ``partition`` of ``topic``."""

    def committed(self, tp: TP) -> int | None:
        """The offset the consumer last committed for ``tp`` (the next one to read), if
        it knows one."""

    def commit(self) -> None:
        """Commit the acknowledged offsets soon, without waiting for it."""

    @property
    def generation(self) -> int:
        """The consumer group's current generation: events of an older one predate a
        rebalance."""


class Replies(Protocol):
    """Pull replies addressed to a logical worker's reply partition, by request id."""

    async def ensure(self, worker: int) -> None:
        """Make sure replies to logical worker ``worker`` are being read."""

    def expect(self, request_id: int) -> asyncio.Future[PsMessage]:
        """A future for the reply to ``request_id``."""

    def forget(self, request_id: int) -> None:
        """Stop waiting for the reply to ``request_id``."""


class Acknowledger(Protocol):
    """Where a shard acknowledges the events whose effects are in its table (a Faust
    stream in ``noack`` mode)."""

    async def ack(self, event: faust.EventT) -> bool: ...


class FaustTransport:
    """The transport of a Faust app: its producer and consumer.

    Parameters
    ----------
    app
        The Faust app the agents run in.
    bootstrap
        The job's brokers (``KPS_BROKER``), for the reads outside the app's consumer.
    """

    def __init__(self, app: faust.App, bootstrap: str) -> None:
        self.app = app
        self.bootstrap = bootstrap
        #: Commits under way: a task nobody refers to may be collected before it ends.
        self.commits: set[asyncio.Task[bool]] = set()

    async def send(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
    ) -> None:
        await self.app.producer.send(topic, key, value, partition, None, headers)

    async def seek(self, tp: TP, offset: int) -> None:
        await self.app.consumer.seek_wait({tp: offset})

    async def read(self, topic: str, partition: int, offset: int) -> bytes:
        return await asyncio.to_thread(read_one, self.bootstrap, topic, partition, offset)

    def committed(self, tp: TP) -> int | None:
        return committed_offset(self.app.consumer, tp)

    def commit(self) -> None:
        task = asyncio.ensure_future(self._commit())
        self.commits.add(task)
        task.add_done_callback(self.commits.discard)
        task.add_done_callback(_finished)

    async def _commit(self) -> bool:
        """Faust's own commit, as its commit timer runs it: the producer flushed first, then
        the offsets. While another commit is under way (the timer's, or one asked for a
        moment ago) Faust's returns when that one ends, without committing; so commit once
        more then (measured: a shard's acknowledgements otherwise waited up to the timer's
        next commit, 0.4 s at a job's end)."""
        consumer = self.app.consumer
        return await consumer.commit() or await consumer.commit()

    @property
    def generation(self) -> int:
        return self.app.consumer_generation_id


def _finished(task: asyncio.Task[bool]) -> None:
    """Log a commit that failed; Faust's commit timer tries again."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("commit failed: %s", task.exception())
