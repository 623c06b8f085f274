"""Every private name of faust-streaming, mode and aiokafka that kafka-ps touches, in one place.

Faust keeps no public read or committed position, no public hook for a stop signal, and
some of its behaviour needs a fix (each patch below says why). The patches, the accessors
for private attributes and the worker's signal hooks are all here, and nowhere else
(tests/unit/test_faust_compat.py checks that statically). Importing this module checks that
every private name it touches still exists, so that a release that renamed one stops
kafka-ps at start with one line naming it (:class:`FaustPatchError`) instead of silently
running without a fix or failing mid-job.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import aiokafka
import faust
from faust.streams import Stream
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, ConsumerT
from mode.utils.aiter import aiter
from mode.utils.queues import FlowControlEvent

from kafka_ps.tables.errors import KafkaPsError


class FaustPatchError(KafkaPsError, RuntimeError):
    """Something a patch replaces or relies on is missing from the installed libraries."""


#: Faust's own, kept to check what the patch replaces once it is in place.
_table_manager_start = getattr(TableManager.on_start, "_kps_original", TableManager.on_start)

#: (owner, attribute) pairs of class attributes this module replaces, overrides or calls.
CLASS_NAMES: list[tuple[type, str]] = [
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (ProducerBuffer, "_send_pending"),
    (ProducerBuffer, "size"),
    (FlowControlEvent, "resume"),
    (FlowControlEvent, "is_active"),
    (faust_aiokafka.Consumer, "seek_wait"),
    (Recovery, "active_remaining"),
    (TableManager, "on_start"),
    (TableManager, "_update_channels"),
    (Stream, "_enable_passive"),
    (Stream, "add_processor"),
    (Stream, "wait_for_stopped"),
    (faust.Worker, "_on_sigterm"),
    (faust.Worker, "_on_sigint"),
    (faust.Worker, "_sentinel_task"),
]

#: (code, attribute) pairs of instance attributes this module reads or sets: each is
#: assigned as ``self.<attribute>`` in that code (a class has none of them until then).
INSTANCE_NAMES: list[tuple[Callable[..., Any] | type, str]] = [
    (Stream.__init__, "_processors"),
    (Consumer.__init__, "_committed_offset"),
    (Consumer.__init__, "_read_offset"),
    (Recovery, "_recovery_started_at"),
    (Recovery, "_active_events_received_at"),
    (aiokafka.AIOKafkaConsumer.__init__, "_fetch_max_wait_ms"),
]


def _gone(name: str) -> FaustPatchError:
    installed = ", ".join(
        f"{package} {version(package)}"
        for package in ("faust-streaming", "mode-streaming", "aiokafka")
    )
    return FaustPatchError(
        f"{name} is gone ({installed}): kafka-ps's Faust compatibility layer "
        "(agents/faust_compat.py) needs review for this version"
    )


def check_faust_names(
    class_names: list[tuple[type, str]] = CLASS_NAMES,
    instance_names: list[tuple[Callable[..., Any] | type, str]] = INSTANCE_NAMES,
) -> None:
    """Raise :class:`FaustPatchError` unless every private or patched name exists."""
    for owner, name in class_names:
        if not hasattr(owner, name):
            raise _gone(f"{owner.__module__}.{owner.__qualname__}.{name}")
    for code, name in instance_names:
        if not re.search(rf"self\.{name}\b", inspect.getsource(code)):
            raise _gone(f"{code.__module__}.{code.__qualname__}: self.{name}")
    # _start_tables_at_once replaces this body: the wait, then these two steps.
    source = inspect.getsource(_table_manager_start)
    for step in ("self.sleep(", "self._update_channels()", "self.recovery.start()"):
        if step not in source:
            raise _gone(f"faust.tables.manager.TableManager.on_start: {step}")


check_faust_names()


def read_offset(consumer: ConsumerT, tp: TP) -> int | None:
    """The offset of the last record of ``tp`` the streams read, if any."""
    return consumer._read_offset.get(tp)  # type: ignore[attr-defined]


def committed_offset(consumer: ConsumerT, tp: TP) -> int | None:
    """The offset of ``tp`` the consumer last committed, if any."""
    return consumer._committed_offset.get(tp)  # type: ignore[attr-defined]


def recovery_started_at(recovery: Any) -> float | None:
    """When (``time.monotonic()``) the running table recovery started, if one did."""
    return recovery._recovery_started_at


def events_received_at(recovery: Any) -> dict[TP, float]:
    """When (``time.monotonic()``) the running recovery last read from each changelog."""
    return recovery._active_events_received_at


def enable_passive(stream: faust.StreamT) -> None:
    """Run ``stream``'s processors on its events without iterating it, as ``take_events`` does."""
    stream._enable_passive(aiter(stream.channel))  # type: ignore[attr-defined]


def remove_processor(stream: faust.StreamT, processor: Callable[..., Any]) -> None:
    """Undo ``stream.add_processor(processor)``, which Faust has no public way to do."""
    stream._processors.remove(processor)  # type: ignore[attr-defined]


class SignalledWorker(faust.Worker):
    """A :class:`faust.Worker` whose stop signals and last loop turns can be changed without
    overriding mode's private handlers.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`faust.Worker`.
    """

    #: Seconds the event loop turns after a clean stop before it closes (None: mode's 1.0).
    sentinel_seconds: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Only to say, in the signature, that the arguments are faust.Worker's.
        super().__init__(*args, **kwargs)

    def on_stop_signal(self) -> None:
        """Run on SIGTERM or SIGINT, before the worker starts stopping."""

    def _on_sigterm(self) -> None:
        self.on_stop_signal()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self.on_stop_signal()
        super()._on_sigint()

    async def _sentinel_task(self) -> None:
        if self.sentinel_seconds is None:
            await super()._sentinel_task()
        else:
            await asyncio.sleep(self.sentinel_seconds)


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
