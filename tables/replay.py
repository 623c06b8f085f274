"""Exactly-once across worker replays: per-worker high-water marks and durable deferred pushes.

The per-key offset in :mod:`tables.shard` catches a push read twice from the shard topic
(a shard process restarted before committing). It cannot catch a *new* push of old work:
a worker that lost its partition before committing re-reads those training records and
pushes their deltas again, at a new shard-topic offset. For that, every push names its
logical worker ``w`` and the training offsets ``first..last`` it covers, and each shard
keeps ``hwm[w]``, the highest training offset it has accepted from ``w``
(:class:`HighWaterMarks`). A push with ``last <= hwm[w]`` is old work and is dropped.

That is exact only if a re-pushed batch never straddles a mark: a worker taking over a
partition asks every shard for its mark and cuts its batches there
(:func:`replay_segments`), so each replayed batch lies wholly at or below, or wholly above,
each shard's mark. (Shards' marks differ when a worker died between its pushes to
different shards of one batch.)

Under BSP a shard holds a push until every worker has reached its clock. Its shard-topic
offset may be committed meanwhile, so a held push lives in the table
(:class:`DeferredPushes`), changelogged like the parameters, and survives a crash.

A shard also keeps its **read position** (:class:`ReadPosition`): the shard-topic offset of
the first message whose effects are not in its table. The committed consumer offset should
never pass it, but Faust's commit tolerates holes in the acknowledged offsets, so a shard
loaded into a process reads its position first and goes back to it when Kafka delivers a
later message (see ``agents/server.py``).

Table layout (reserved keys, see :mod:`tables.clocks`): ``__hwm__:<w>`` int64 LE;
``__deferred__:<offset>`` the push message bytes; ``__deferred__`` the index, int64 LE
pairs ``(clock, offset)``; ``__position__`` int64 LE. Writes are ordered so that a
changelog holding a mark also holds what the mark vouches for: a push's parameter records,
then the held pushes and their index, then the marks (:data:`VOUCHING`), then the position.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, MutableMapping, Sequence
from contextlib import suppress

import numpy as np

from kafka_ps.tables.codec import CodecError

HWM_PREFIX = b"__hwm__:"
POSITION_KEY = b"__position__"
#: The bookkeeping keys that vouch for others, in the order a flush writes them after the
#: rest (:class:`~tables.write_back.WriteBack`): marks, then the read position.
VOUCHING = (HWM_PREFIX, POSITION_KEY)
DEFERRED_INDEX = b"__deferred__"
DEFERRED_PREFIX = b"__deferred__:"
_INT64 = struct.Struct("<q")


def hwm_key(worker: int) -> bytes:
    if isinstance(worker, bool) or not isinstance(worker, int) or worker < 0:
        raise ValueError(f"worker must be a non-negative int, got {worker!r}")
    return HWM_PREFIX + str(worker).encode()


def deferred_key(offset: int) -> bytes:
    return DEFERRED_PREFIX + str(offset).encode()


class HighWaterMarks:
    """``hwm[w]`` per logical worker: the highest training offset accepted from it (-1: none).

    Parameters
    ----------
    table
        The shard's durable mapping (its Faust table, or a dict in tests); nothing is
        cached, every call reads or writes it.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self, worker: int) -> int:
        try:
            stored = self.table[hwm_key(worker)]
        except KeyError:
            return -1
        if len(stored) != _INT64.size:
            raise CodecError(f"a high-water mark is {_INT64.size} bytes, got {len(stored)}")
        return _INT64.unpack(stored)[0]

    def covers(self, worker: int, last_offset: int) -> bool:
        """Is a push ending at training offset ``last_offset`` old work, already accepted?"""
        return 0 <= last_offset <= self.get(worker)

    def straddles(self, worker: int, first_offset: int, last_offset: int) -> bool:
        """Does the push overlap accepted work only in part? (Never, if workers cut their
        replayed batches at the marks; counted, and applied, if it happens.)"""
        return first_offset <= self.get(worker) < last_offset

    def raise_to(self, worker: int, last_offset: int) -> None:
        if last_offset > self.get(worker):
            self.table[hwm_key(worker)] = _INT64.pack(last_offset)


class ReadPosition:
    """The shard-topic offset of the first message whose effects are not in the table.

    Parameters
    ----------
    table
        The shard's durable mapping (its Faust table, or a dict in tests); nothing is
        cached, every call reads or writes it.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self) -> int | None:
        """The stored position; None for a shard that has never flushed one."""
        try:
            stored = self.table[POSITION_KEY]
        except KeyError:
            return None
        if len(stored) != _INT64.size:
            raise CodecError(f"a read position is {_INT64.size} bytes, got {len(stored)}")
        return _INT64.unpack(stored)[0]

    def set(self, offset: int) -> None:
        if offset != self.get():
            self.table[POSITION_KEY] = _INT64.pack(offset)


class DeferredPushes:
    """Pushes a BSP shard holds until their clock is complete, kept in its table.

    Parameters
    ----------
    table
        The shard's durable mapping (its Faust table, or a dict in tests); nothing is
        cached, every call reads or writes it.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def _index(self) -> np.ndarray:
        try:
            stored = self.table[DEFERRED_INDEX]
        except KeyError:
            return np.empty((0, 2), dtype="<i8")
        if len(stored) % 16:
            raise CodecError(f"deferred-push index of {len(stored)} bytes is not int64 pairs")
        return np.frombuffer(stored, dtype="<i8").reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._index())

    def add(self, clock: int, offset: int, message: bytes) -> None:
        """Hold the push read at shard-topic ``offset``; a second add of it changes nothing."""
        index = self._index()
        if (index[:, 1] == offset).any():
            return
        self.table[deferred_key(offset)] = message
        self.table[DEFERRED_INDEX] = np.vstack([index, [[clock, offset]]]).astype("<i8").tobytes()

    def take_due(self, below_clock: float) -> list[tuple[int, bytes | None]]:
        """``(offset, message)`` of every held push with clock < ``below_clock``, in
        (clock, offset) order. Call :meth:`done` once each has been applied.

        A message is None where the index outlived it: Faust may send two table writes to
        the changelog out of order, and a SIGKILL between them kept the index entry but not
        the message (found by the chaos test under BSP). The push is still on the shard
        topic at its offset, where the caller reads it again.
        """
        index = self._index()
        due = index[index[:, 0] < below_clock]
        due = due[np.lexsort((due[:, 1], due[:, 0]))]
        return [(int(offset), self._message(int(offset))) for _, offset in due]

    def _message(self, offset: int) -> bytes | None:
        try:
            return self.table[deferred_key(offset)]
        except KeyError:
            return None

    def done(self, offsets: Sequence[int]) -> None:
        if not offsets:
            return
        index = self._index()
        self.table[DEFERRED_INDEX] = index[~np.isin(index[:, 1], offsets)].tobytes()
        for offset in offsets:
            with suppress(KeyError):  # a message the index outlived (see take_due)
                del self.table[deferred_key(offset)]


def replay_segments(offsets: Sequence[int], marks: Iterable[int]) -> list[slice]:
    """Split one partition's batch of training ``offsets`` (ascending) so that no piece
    straddles a shard's high-water mark; pieces at or below every mark are left out.

    Each slice indexes ``offsets``. A piece ends wherever a mark falls between two of
    its offsets, so each shard either has all of a piece already or none of it.
    """
    marks = sorted(set(marks))
    if not offsets:
        return []
    lowest = marks[0] if marks else -1
    start = bisect.bisect_right(offsets, lowest)
    segments: list[slice] = []
    for mark in marks[1:]:
        end = bisect.bisect_right(offsets, mark)
        if end > start:
            segments.append(slice(start, end))
            start = end
    if start < len(offsets):
        segments.append(slice(start, len(offsets)))
    return segments
