"""A job's input, produced in a thread of its own once the job's processes are ready."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from kafka_ps.agents.client import Record, produce
from kafka_ps.agents.settings import JobSettings


class Feeder:
    """Produces ``feed`` to the job's input topic from :meth:`open` on.

    Its producer is made at once, before the job's processes are ready: a new idempotent
    producer waits about half a second for its producer id before its first record is
    sent, and that wait now passes while the processes start, not inside the job's clock.

    Parameters
    ----------
    settings
        The job: its broker and input topic.
    feed
        Kafka records ready to send (key, value, partition).
    """

    def __init__(self, settings: JobSettings, feed: Iterable[Record]) -> None:
        self._go = threading.Event()
        self._cancelled = False
        self.thread = threading.Thread(
            target=produce,
            args=(settings.broker, settings.input_topic, self._gated(feed)),
            name="kps-feeder",
        )
        self.thread.start()

    def _gated(self, feed: Iterable[Record]) -> Iterator[Record]:
        self._go.wait()
        if not self._cancelled:
            yield from feed

    def open(self) -> None:
        """Start sending the feed."""
        self._go.set()

    @property
    def done(self) -> bool:
        """Whether every record is sent and acknowledged (or the feeder gave up)."""
        return not self.thread.is_alive()

    def close(self) -> None:
        """Wait for the feed to be sent; a feeder never opened sends nothing."""
        if not self._go.is_set():
            self._cancelled = True
            self._go.set()
        self.thread.join()
