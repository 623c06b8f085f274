"""Vector clocks and consistency models (BSP, SSP, ASP) for a server shard.

A shard keeps one clock per logical worker (= training partition). A worker's clock is the
number of mini-batches it has pushed, so a worker computing batch ``c`` pulls "at clock
``c``". The shard answers that pull only when its slowest worker has clock
``>= c - staleness`` (invariant 5); BSP is staleness 0, SSP staleness ``s``, ASP unbounded.

Clocks live in the shard's own table, so they are changelogged and rebuilt with the
parameters, and a logical worker keeps its clock when its partition moves to another
process. Worker ``w``'s clock is stored under the reserved key ``b"__clock__:<w>"`` as an
8-byte little-endian signed integer. :mod:`tables.codec` is not used: its records carry
arrays, an update-rule id and an offset, none of which a counter needs, and a bare int64 is
readable from any language. **Parameter names must not start with ``"__"``**: that prefix is
reserved for shard bookkeeping (Faust's own changelog-offset key also uses it).

Pulls that cannot be answered yet wait in :class:`PendingPulls`, which the shard drains
after every clock advance, so a waiting reply costs no polling or spinning.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import re
import struct
from collections.abc import Collection, MutableMapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from kafka_ps.tables.codec import CodecError
from kafka_ps.tables.errors import KafkaPsError

#: Keys starting with this are shard bookkeeping, never parameters.
RESERVED_PREFIX = b"__"
CLOCK_PREFIX = b"__clock__:"
CLOCK = struct.Struct("<q")

_I64_MAX = 2**63 - 1
_PARSE = re.compile(r"(bsp|asp|ssp:([0-9]+))")

T = TypeVar("T")


def _non_negative(name: str, number: int) -> int:
    """``number`` as an ``int`` >= 0; bools and floats are refused."""
    try:
        if isinstance(number, bool):
            raise TypeError
        value = operator.index(number)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(number).__name__}") from None
    if not 0 <= value <= _I64_MAX:
        raise ValueError(f"{name} must be in [0, {_I64_MAX}], got {value}")
    return value


def is_reserved(key: bytes) -> bool:
    """True for table keys that are shard bookkeeping rather than parameters."""
    return bytes(key).startswith(RESERVED_PREFIX)


def clock_key(worker: int) -> bytes:
    """The table key of logical worker ``worker``'s clock."""
    return CLOCK_PREFIX + str(_non_negative("worker", worker)).encode()


def encode_clock(clock: int) -> bytes:
    return CLOCK.pack(_non_negative("clock", clock))


def decode_clock(data: bytes | bytearray | memoryview) -> int:
    """Parse a stored clock; raise :class:`~tables.codec.CodecError` if malformed."""
    if len(data) != CLOCK.size:
        raise CodecError(f"a clock is {CLOCK.size} bytes, got {len(data)}")
    (clock,) = CLOCK.unpack(data)
    if clock < 0:
        raise CodecError(f"stored clock {clock} is negative")
    return clock


@dataclass(frozen=True)
class Consistency:
    """How far a worker may run ahead of a shard's slowest worker.

    ``staleness`` is the bound ``s`` (0 for BSP) or ``None`` for ASP (unbounded).
    ``str()`` gives the text that :meth:`parse` reads back.

    Parameters
    ----------
    staleness
        The bound ``s``, a non-negative int: a worker at clock ``c`` is answered once the
        shard's slowest worker reaches ``c - s`` (0 is BSP). ``None`` is ASP: never wait.
    """

    staleness: int | None

    def __post_init__(self) -> None:
        if self.staleness is not None:
            object.__setattr__(self, "staleness", _non_negative("staleness", self.staleness))

    @classmethod
    def bsp(cls) -> Consistency:
        return cls(0)

    @classmethod
    def ssp(cls, staleness: int) -> Consistency:
        return cls(_non_negative("staleness", staleness))

    @classmethod
    def asp(cls) -> Consistency:
        return cls(None)

    @classmethod
    def parse(cls, text: str) -> Consistency:
        """Read ``"bsp"``, ``"ssp:<s>"`` (``s`` a non-negative integer) or ``"asp"``."""
        match = _PARSE.fullmatch(text.strip().lower()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"consistency must be 'bsp', 'ssp:<s>' with s a non-negative integer, "
                f"or 'asp'; got {text!r}"
            )
        if match[1] == "bsp":
            return cls.bsp()
        if match[1] == "asp":
            return cls.asp()
        return cls.ssp(int(match[2]))

    @property
    def bounded(self) -> bool:
        return self.staleness is not None

    def allows(self, worker_clock: int, minimum_clock: int) -> bool:
        """May a worker at ``worker_clock`` read a shard whose slowest worker is at
        ``minimum_clock``?"""
        return self.staleness is None or minimum_clock >= worker_clock - self.staleness

    def __str__(self) -> str:
        if self.staleness is None:
            return "asp"
        return "bsp" if self.staleness == 0 else f"ssp:{self.staleness}"


class VectorClock:
    """The per-worker clocks of one shard, stored durably in its table.

    Nothing is cached: every read goes to the mapping. With Faust, one table object
    serves every shard partition of the process and a read inside stream iteration sees
    only the current event's partition, so use this only from the shard's stream
    iteration (outside it Faust would search all partitions and find another shard's
    clock).

    Parameters
    ----------
    table
        The shard's durable mapping (its Faust table, or a dict in tests) holding one
        clock per worker id; read and written through on every call.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self, worker: int) -> int:
        """Worker ``worker``'s clock; 0 if it has never advanced here."""
        try:
            stored = self.table[clock_key(worker)]
        except KeyError:
            return 0
        return decode_clock(stored)

    def advance(self, worker: int, clock: int) -> bool:
        """Raise ``worker``'s clock to ``clock``; return whether it changed.

        Clocks never go down: a replayed push carries an older (or equal) clock, and that
        is a no-op that writes nothing.
        """
        clock = _non_negative("clock", clock)
        if clock <= self.get(worker):
            return False
        self.table[clock_key(worker)] = encode_clock(clock)
        return True

    def minimum(self, workers: Collection[int]) -> int:
        """The slowest clock among ``workers``; workers never seen count as 0."""
        if not workers:
            raise ValueError("minimum clock of an empty set of workers")
        return min(self.get(w) for w in workers)

    def ready(self, worker_clock: int, workers: Collection[int], consistency: Consistency) -> bool:
        """May a pull from a worker at ``worker_clock`` be answered now?"""
        if not consistency.bounded:
            return True
        return consistency.allows(worker_clock, self.minimum(workers))


class PendingPullsFull(KafkaPsError, RuntimeError):
    """More pulls are waiting than the configured bound allows."""


@dataclass(order=True)
class _Held(Generic[T]):
    clock: int
    seq: int
    payload: T = field(compare=False)
    worker: int | None = field(default=None, compare=False)
    superseded: bool = field(default=False, compare=False)


class PendingPulls(Generic[T]):
    """Pulls that wait for the shard's slowest worker to catch up.

    A pull from a worker at clock ``c`` becomes answerable once the minimum clock reaches
    ``c - s``, so the pulls are kept in a heap by clock and :meth:`release` pops only those
    now allowed, then returns them in arrival order. Call :meth:`release` after every
    clock advance; nothing here polls.

    Memory is bounded twice. A worker has at most ``per_worker`` (its K) pulls in flight,
    so when it sends one more, its oldest held pull is one it gave up on after a timeout
    and asked again: that one is dropped, never answered. ``limit`` caps the total against
    clients that do not say who they are. Held pulls live in memory only; after a crash
    or rebalance the worker's pull times out and is asked again.

    Parameters
    ----------
    limit
        The most pulls held in total, >= 1; one more raises :class:`PendingPullsFull`
        (the default 10 000 guards against clients that do not say who they are).
    per_worker
        The most pulls held per worker, >= 1: the worker's number of pulls in flight ``K``;
        one more drops that worker's oldest held pull, never answered. ``None`` (the
        default) sets no per-worker bound.
    """

    def __init__(self, limit: int = 10_000, per_worker: int | None = None) -> None:
        if _non_negative("limit", limit) == 0:
            raise ValueError("limit must be positive")
        if per_worker is not None and _non_negative("per_worker", per_worker) == 0:
            raise ValueError("per_worker must be positive")
        self.limit = limit
        self.per_worker = per_worker
        self._heap: list[_Held[T]] = []
        self._by_worker: dict[int, list[_Held[T]]] = {}
        self._superseded = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap) - self._superseded

    def add(self, worker_clock: int, payload: T, worker: int | None = None) -> None:
        """Hold ``payload``, a pull from ``worker`` at ``worker_clock``."""
        clock = _non_negative("worker_clock", worker_clock)
        held = _Held(clock, next(self._seq), payload, worker)
        if worker is not None and self.per_worker is not None:
            mine = self._by_worker.setdefault(worker, [])
            if len(mine) >= self.per_worker:
                mine.pop(0).superseded = True
                self._superseded += 1
        if len(self) >= self.limit:
            raise PendingPullsFull(f"{len(self)} pulls are already waiting")
        if worker is not None and self.per_worker is not None:
            self._by_worker[worker].append(held)
        heapq.heappush(self._heap, held)

    def release(self, minimum_clock: int, consistency: Consistency) -> list[T]:
        """Remove and return, in arrival order, every held pull that is now allowed."""
        if consistency.staleness is None:
            released = self._heap
            self._heap = []
        else:
            threshold = minimum_clock + consistency.staleness
            released = []
            while self._heap and self._heap[0].clock <= threshold:
                released.append(heapq.heappop(self._heap))
        answered = []
        for held in released:
            if held.superseded:
                self._superseded -= 1
                continue
            if held.worker is not None and held.worker in self._by_worker:
                self._by_worker[held.worker].remove(held)
            answered.append(held)
        answered.sort(key=operator.attrgetter("seq"))
        return [held.payload for held in answered]
