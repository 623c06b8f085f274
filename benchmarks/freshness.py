"""Freshness: from a training record's produce time to the model-updates record that holds it.

Every publication of shard ``s`` (every ``KPS_PUBLISH_INTERVAL``) sends its changed parameter
records to model-updates, then one marks record with key ``__marks__:<s>`` in partition
``s``: a little-endian int64 array indexed by logical worker (training partition) holding
the highest training offset whose push that publication includes (-1: none yet). A record
at offset ``o`` of training partition ``w`` is in shard ``s``'s published model from the
first marks record of ``s`` with ``value[w] >= o``; it is in the whole published model once
every shard has got there. So its freshness is

    max over shards s of (CreateTime of that marks record of s) - (CreateTime of the record)

Timestamps are Kafka CreateTime (set by each producer when it sends), in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kafka_ps.agents.client import read_all

MARKS_PREFIX = b"__marks__:"

Marks = Sequence[tuple[int, np.ndarray]]
"""One shard's marks records in log order: (CreateTime ms, high-water mark per worker)."""


def freshness_ms(
    records: Sequence[tuple[int, int, int]], marks_by_shard: Mapping[int, Marks]
) -> np.ndarray:
    """Freshness in ms of each ``(worker, offset, produce_ms)`` record; NaN where some shard
    never published a marks record that covers it (or there are no marks at all)."""
    if not records:
        return np.empty(0)
    table = np.asarray(records, dtype=np.int64).reshape(-1, 3)
    workers, offsets, produced = table[:, 0], table[:, 1], table[:, 2]
    if not marks_by_shard:
        return np.full(len(table), np.nan)
    latest = np.full(len(table), -np.inf)
    for marks in marks_by_shard.values():
        seen = _first_cover_ms(workers, offsets, marks)
        latest = np.maximum(latest, seen)  # NaN (never covered) wins over any time
    return latest - produced


def _first_cover_ms(workers: np.ndarray, offsets: np.ndarray, marks: Marks) -> np.ndarray:
    """Per record, the CreateTime of the first marks record covering it; NaN if none does."""
    seen = np.full(len(workers), np.nan)
    if not marks:
        return seen
    times = np.array([time for time, _ in marks], dtype=np.float64)
    width = max(len(array) for _, array in marks)
    # One row per marks record, one column per worker; a worker beyond a record's array is -1.
    grid = np.full((len(marks), width), -1, dtype=np.int64)
    for row, (_, array) in enumerate(marks):
        grid[row, : len(array)] = array
    # "First record with value >= o" is a search on the running maximum, which is sorted.
    reach = np.maximum.accumulate(grid, axis=0)
    for worker in np.unique(workers):
        mine = workers == worker
        if worker >= width:
            continue
        index = np.searchsorted(reach[:, worker], offsets[mine], side="left")
        covered = index < len(marks)
        hits = np.full(len(index), np.nan)
        hits[covered] = times[index[covered]]
        seen[mine] = hits
    return seen


@dataclass(frozen=True)
class Freshness:
    """Quantiles of freshness over the records some marks cover; None when none are."""

    records: int
    covered: int
    p50_ms: float | None
    p99_ms: float | None


def summarize(values_ms: np.ndarray) -> Freshness:
    covered = values_ms[~np.isnan(values_ms)]
    if not len(covered):
        return Freshness(len(values_ms), 0, None, None)
    p50, p99 = np.percentile(covered, [50, 99])
    return Freshness(len(values_ms), len(covered), float(p50), float(p99))


def read_produce_times(bootstrap: str, topic: str) -> list[tuple[int, int, int]]:
    """``(partition, offset, CreateTime ms)`` of every record of a training topic."""
    return [
        (message.partition(), message.offset(), message.timestamp()[1])
        for message in read_all(bootstrap, topic)
    ]


def read_marks(bootstrap: str, topic: str) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Every ``__marks__:<shard>`` record of a model-updates topic, per shard, in log order."""
    return marks_by_shard(
        (message.key(), message.value(), message.timestamp()[1])
        for message in read_all(bootstrap, topic)
    )


def marks_by_shard(
    messages: Iterable[tuple[bytes | None, bytes | None, int]],
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """The marks records among ``(key, value, CreateTime ms)`` messages, per shard."""
    shards: dict[int, list[tuple[int, np.ndarray]]] = {}
    for key, value, time in messages:
        if key is None or value is None or not key.startswith(MARKS_PREFIX):
            continue
        shard = int(key[len(MARKS_PREFIX) :])
        shards.setdefault(shard, []).append((time, np.frombuffer(value, dtype="<i8")))
    return shards
