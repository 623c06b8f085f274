"""The counting job: each record adds a signed 64-bit increment to the counter its key names.

It is the smallest stateful job there is, so it checks the machinery every real model
relies on: a RocksDB-backed table with raw byte values, partitioned by key, whose
compacted changelog restores it after a restart or the loss of local disk.

Each count is stored as a :class:`~tables.codec.ParamRecord` holding the input offset of
the last increment applied to it. One input partition feeds one table partition, so an
increment replayed after a crash or by Faust's own re-delivery is recognised by its
offset and skipped: application is idempotent, and exact under at-least-once delivery.
``idempotent=False`` turns that off, so that a benchmark can measure what it saves.

Records: key = counter name (bytes), value = int64 little-endian increment, produced to
partition ``shard_of(key, P)`` of the input topic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import partial

import faust
import numpy as np

from kafka_ps.agents.client import Record
from kafka_ps.agents.jobs import Job
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import TopicSpec
from kafka_ps.tables.codec import ParamRecord, decode_record, encode_record
from kafka_ps.tables.keys import shard_of
from kafka_ps.tables.rocksdb import rocksdb_options

COUNTS_TABLE = "counts"
INCREMENT = 8

log = logging.getLogger(__name__)


def encode_increment(value: int) -> bytes:
    return value.to_bytes(INCREMENT, "little", signed=True)


def decode_increment(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def encode_count(count: int, offset: int) -> bytes:
    return encode_record(ParamRecord((np.array([count], dtype=np.int64),), offset=offset))


def decode_count(data: bytes) -> int:
    """The count in a stored table value."""
    return int(decode_record(data).value[0])


def increment_records(increments: Iterable[tuple[bytes, int]], partitions: int) -> Iterator[Record]:
    """Input records for (key, increment) pairs, each sent to its key's partition."""
    for key, increment in increments:
        yield key, encode_increment(increment), shard_of(key, partitions)


def changelog_topic(settings: JobSettings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def counter_topics(settings: JobSettings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.input_topic, settings.partitions),
        TopicSpec(changelog_topic(settings, COUNTS_TABLE), settings.partitions, compacted=True),
    ]


def register_counter(app: faust.App, settings: JobSettings, idempotent: bool = True) -> None:
    counts = app.Table(
        COUNTS_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        options=rocksdb_options(),
    )
    increments = app.topic(
        settings.input_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )

    @app.agent(increments)
    async def count(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if event.key is None or len(event.value) != INCREMENT:
                log.warning("skipping malformed increment at offset %s", event.message.offset)
                continue
            offset = event.message.offset
            stored = counts.get(event.key)
            record = decode_record(stored) if stored is not None else None
            if record is not None and idempotent and record.offset >= offset:
                # Written again: the crash may have lost this write's changelog record.
                counts[event.key] = stored
                continue
            count = int(record.value[0]) if record is not None else 0
            counts[event.key] = encode_count(count + decode_increment(event.value), offset)


#: ``kps host benchmarks.counter:COUNTER``: the offset-versioned counter.
COUNTER = Job(register_counter, counter_topics)
#: Without the offset check: at-least-once as Faust gives it, for the baseline benchmark.
COUNTER_NAIVE = Job(partial(register_counter, idempotent=False), counter_topics)
