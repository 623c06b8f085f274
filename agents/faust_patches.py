"""Fixes to faust-streaming behaviour that kafka-ps depends on, applied before an app starts.

Each one is a small monkeypatch with the reason it exists; all are idempotent. Each one
replaces or relies on a private name of faust-streaming, mode or aiokafka: importing this
module checks that every such name still exists, so that a release that renamed one stops
kafka-ps at start with one line naming it (:class:`FaustPatchError`) instead of silently
running without the fix.
"""

from __future__ import annotations

import inspect
from typing import Any

import aiokafka
from faust.streams import Stream
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from mode.utils.queues import FlowControlEvent

from kafka_ps.agents.take import STREAM_TARGETS
from kafka_ps.tables.errors import KafkaPsError


class FaustPatchError(KafkaPsError, RuntimeError):
    """Something a patch replaces or relies on is missing from the installed libraries."""


#: Faust's own, kept to check what the patch replaces once it is in place.
_table_manager_start = getattr(TableManager.on_start, "_kps_original", TableManager.on_start)

#: (owner, attribute) pairs that the patches below replace or call.
PATCH_TARGETS: list[tuple[type, str]] = [
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (ProducerBuffer, "_send_pending"),
    (ProducerBuffer, "size"),
    (FlowControlEvent, "resume"),
    (FlowControlEvent, "is_active"),
    (faust_aiokafka.Consumer, "seek_wait"),
    (Recovery, "active_remaining"),
    (TableManager, "on_start"),
    (TableManager, "_update_channels"),
    *STREAM_TARGETS,
]


def check_patch_targets(targets: list[tuple[type, str]] = PATCH_TARGETS) -> None:
    """Raise :class:`FaustPatchError` unless every patched or used name exists."""
    for owner, name in targets:
        if not hasattr(owner, name):
            raise FaustPatchError(
                f"{owner.__module__}.{owner.__qualname__}.{name} is gone: kafka-ps's Faust "
                "patches need review for this faust-streaming/mode/aiokafka version"
            )
    if "self._processors" not in inspect.getsource(Stream.__init__):
        raise FaustPatchError(
            "faust.streams.Stream no longer keeps _processors: kafka-ps's record-bounded "
            "take (agents/take.py) needs review for this faust-streaming version"
        )
    # FaustTransport.committed reads it: the offsets the consumer last committed.
    if "self._committed_offset" not in inspect.getsource(Consumer.__init__):
        raise FaustPatchError(
            "faust's Consumer no longer keeps _committed_offset: kafka-ps's shard seek-back "
            "(agents/transport.py) needs review for this faust-streaming version"
        )
    # agents/recovery_watchdog.py reads when recovery started and last heard from each tp.
    source = inspect.getsource(Recovery)
    for name in ("self._recovery_started_at", "self._active_events_received_at"):
        if name not in source:
            raise FaustPatchError(
                f"faust's Recovery no longer keeps {name.removeprefix('self.')}: kafka-ps's "
                "recovery watchdog needs review for this faust-streaming version"
            )
    # _start_tables_at_once replaces this body: the wait, then these two steps.
    source = inspect.getsource(_table_manager_start)
    for step in ("self.sleep(", "self._update_channels()", "self.recovery.start()"):
        if step not in source:
            raise FaustPatchError(
                "faust's TableManager.on_start has changed: kafka-ps's start without its "
                "one-second wait needs review for this faust-streaming version"
            )
    # _with_fetch_wait sets this attribute on each aiokafka consumer it creates.
    if "self._fetch_max_wait_ms" not in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__):
        raise FaustPatchError(
            "aiokafka.AIOKafkaConsumer no longer keeps _fetch_max_wait_ms: kafka-ps's fetch-"
            "wait patch needs review for this aiokafka version"
        )


check_patch_targets()
_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def _with_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's consumer long-poll for ``fetch_max_wait_ms`` instead of its fixed 1500 ms.

    aiokafka keeps one fetch in flight per broker and leaves out partitions that still
    have buffered records. A pull that lands on such a partition waits for the in-flight
    fetch to expire: with Faust's hard-coded 1500 ms that was the median pull latency
    (measured 1.66 s). Short waits cost only idle fetch requests on a quiet topic.
    """

    def create(self: Any, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = _create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create


def _count_sends_in_progress() -> None:
    """Make Faust's producer-buffer flush wait for the message it is sending, not only the
    queued ones.

    Table writes reach the changelog through Faust's ``ProducerBuffer``: a task pops each
    message off a queue, then awaits its hand-over to aiokafka. ``flush()``, which Faust
    runs before committing source offsets, waits only until the queue is empty, so a
    message popped but not yet handed over (aiokafka waiting on metadata or a full
    accumulator) is missed, and the source offset can be committed before the changelog
    record is sent. A SIGKILL then loses that record, and the committed offset means no
    replay ever writes it again.
    """
    if getattr(ProducerBuffer, "_kps_counts_sends", False):
        return
    send_pending = ProducerBuffer._send_pending
    queued = ProducerBuffer.size

    async def counted(self: ProducerBuffer, fut: Any) -> None:
        self._kps_sending = getattr(self, "_kps_sending", 0) + 1
        try:
            await send_pending(self, fut)
        finally:
            self._kps_sending -= 1

    ProducerBuffer._send_pending = counted
    ProducerBuffer.size = property(
        lambda self: queued.fget(self) + getattr(self, "_kps_sending", 0)
    )
    ProducerBuffer._kps_counts_sends = True


def _keep_queued_messages_on_repeated_resume() -> None:
    """Make Faust's flow control clear its stream queues only when flow really resumes.

    ``FlowControlEvent.resume()`` clears every stream queue, to drop messages of partitions
    revoked while flow was suspended. Faust's recovery calls it once mid-way (to read
    changelogs) and again after seeking the stream partitions to their committed offsets,
    with flow already running in between: a message fetched in that window, the first one
    at the committed offset, was cleared from its queue unprocessed. Faust's commit logic
    tolerates a one-offset hole at the head of the acked offsets, so the next commit went
    past it and the message was lost for good (found by the chaos benchmark: pushes lost
    after shard processes were SIGKILLed). A resume while flowing now clears nothing; at
    worst a message is processed twice, which the exactly-once rules absorb.
    """
    if getattr(FlowControlEvent, "_kps_keeps_queued", False):
        return
    resume = FlowControlEvent.resume

    def resume_if_suspended(self: FlowControlEvent) -> None:
        if self.is_active():
            return
        resume(self)

    FlowControlEvent.resume = resume_if_suspended
    FlowControlEvent._kps_keeps_queued = True


def _start_tables_at_once() -> None:
    """Start Faust's table manager without its one-second wait.

    ``TableManager.on_start`` sleeps a second so that tables an agent creates as it starts
    are still registered before their changelogs are subscribed. kafka-ps creates every
    table before its app starts (:func:`~kafka_ps.agents.server.register_server`; a later
    one still fails loudly: "Too late to add tables"), so the wait only delayed every
    process's start, and every restart after a crash, by a second.
    """
    if getattr(TableManager, "_kps_starts_at_once", False):
        return

    async def on_start(self: TableManager) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    on_start._kps_original = _table_manager_start  # type: ignore[attr-defined]
    TableManager.on_start = on_start
    TableManager._kps_starts_at_once = True


def apply_faust_patches(fetch_max_wait_ms: int) -> None:
    _with_fetch_wait(fetch_max_wait_ms)
    _start_tables_at_once()
    _count_sends_in_progress()
    _keep_queued_messages_on_repeated_resume()
