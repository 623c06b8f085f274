"""The dead-letter topic: input that must not reach the model, kept with its reason.

A malformed training record, a push the shard rejects, a message that does not decode:
each is produced to ``J-dead-letters`` with its original bytes intact and headers that
say why (``kps-reason``, ``kps-detail``) and where it came from (``kps-topic``,
``kps-partition``, ``kps-offset``), and counted, so nothing is lost silently and no
process crashes on bad input.
"""

from __future__ import annotations

import logging
from collections import Counter

import faust

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic
        self.counts: Counter[str] = Counter()

    async def send(
        self, value: bytes, key: bytes | None, reason: str, detail: str, event: faust.EventT
    ) -> None:
        self.counts[reason] += 1
        log.warning(
            "dead letter (%s) from %s[%s]@%s: %s",
            reason,
            event.message.topic,
            event.message.partition,
            event.message.offset,
            detail,
        )
        headers = [
            ("kps-reason", reason.encode()),
            ("kps-detail", detail[:1000].encode(errors="replace")),
            ("kps-topic", event.message.topic.encode()),
            ("kps-partition", str(event.message.partition).encode()),
            ("kps-offset", str(event.message.offset).encode()),
        ]
        await self.app.producer.send(self.topic, key, value, None, None, headers)
