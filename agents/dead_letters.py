"""The dead-letter topic: input that must not reach the model, kept with its reason.

A malformed training record, a push the shard rejects, a message that does not decode:
each is produced to ``J-dead-letters`` with its original bytes intact and headers that
say why (``kps-reason``, ``kps-detail``), whose fault it is (``kps-blame``) and where it
came from (``kps-topic``, ``kps-partition``, ``kps-offset``), and counted, so nothing is
lost silently and no process crashes on bad input. Every process publishes its counts by
reason to the job's metrics topic (:func:`report_counts`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass

import faust

from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.dead_letters import Blame, DeadLetterReason

__all__ = ["Blame", "DeadLetterReason", "DeadLetters", "Origin", "report_counts"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where a dead letter was read.

    Parameters
    ----------
    topic, partition, offset
        The message it was read from.
    index
        For a record inside a ``kps-batch`` message, its index there.
    """

    topic: str
    partition: int
    offset: int
    index: int | None = None

    @classmethod
    def of(cls, event: faust.EventT) -> Origin:
        message = event.message
        return cls(message.topic, message.partition, message.offset)


class DeadLetters:
    """Sends a process's dead letters and counts them by reason.

    Parameters
    ----------
    app
        The process's Faust app, whose producer sends them.
    topic
        The job's dead-letter topic.
    """

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic
        self.counts: Counter[DeadLetterReason] = Counter()

    async def send(
        self,
        value: bytes,
        key: bytes | None,
        reason: DeadLetterReason,
        detail: str,
        source: faust.EventT | Origin,
        blame: Blame = Blame.INPUT,
    ) -> None:
        reason = DeadLetterReason(reason)  # a bare string must name a reason too
        origin = source if isinstance(source, Origin) else Origin.of(source)
        self.counts[reason] += 1
        log.warning(
            "dead letter (%s) from %s[%s]@%s: %s",
            reason,
            origin.topic,
            origin.partition,
            origin.offset,
            detail,
        )
        headers = [
            ("kps-reason", reason.encode()),
            ("kps-detail", detail[:1000].encode(errors="replace")),
            ("kps-blame", blame.encode()),
            ("kps-topic", origin.topic.encode()),
            ("kps-partition", str(origin.partition).encode()),
            ("kps-offset", str(origin.offset).encode()),
        ]
        if origin.index is not None:
            headers.append(("kps-index", str(origin.index).encode()))
        await self.app.producer.send(self.topic, key, value, None, None, headers)


def report_counts(
    app: faust.App, settings: JobSettings, role: str, dead_letters: DeadLetters
) -> None:
    """Publish this process's dead-letter counts to the metrics topic every
    ``metrics_interval`` seconds if they changed, and once more at shutdown."""
    topic = settings.topic("metrics")
    process = f"{socket.gethostname()}:{os.getpid()}"
    published: dict[str, int] = {}

    async def publish() -> None:
        counts = dict(dead_letters.counts)
        report = {"role": role, "process": process, "dead_letters": counts}
        await app.producer.send(topic, None, json.dumps(report).encode(), None, None, None)
        published.clear()
        published.update(counts)

    @app.timer(settings.metrics_interval)
    async def report_changed_counts() -> None:
        if dead_letters.counts != published:
            await publish()

    @app.on_before_shutdown.connect
    async def report_last_counts(app: faust.App, **_: object) -> None:
        await publish()
