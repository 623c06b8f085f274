"""Many training records in one Kafka message: the ``kps-batch`` and ``kps-packed`` formats.

A worker pays a fixed cost per Kafka message (one Faust event), so records travel many to
a message wherever the producer can do it (docs/formats.md):

``kps-batch`` (what ``kps produce`` and the client SDK write): a msgpack array
    ``["kps-batch", 1, record, record, ...]`` where each record is one msgpack training
    record map (:mod:`agents.records`), byte for byte what a one-record message would hold.
    All its records share the message's offset as their training offset.

``kps-packed`` (written by the job's own packer from one-record messages, see
:mod:`agents.packer`): ``["kps-packed", 1, [offset, ...], [key, ...], value, value, ...]``
    with the source topic's offset, key and original value bytes of each message packed.
    Each packed message keeps its source offset as its training offset, so the
    exactly-once rules (high-water marks over training offsets) read the same as if the
    worker had read the source topic itself.

Anything else is a one-record message. :func:`split_message` turns any of them into
:class:`Item` s; a malformed container raises :class:`~agents.records.BadRecordError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgpack

from kafka_ps.agents.records import BadRecordError
from kafka_ps.tables.dead_letters import DeadLetterReason

BATCH_TAG = "kps-batch"
PACKED_TAG = "kps-packed"
VERSION = 1
_ARRAY_BYTES = frozenset({*range(0x90, 0xA0), 0xDC, 0xDD})


class Item(NamedTuple):
    """One record's bytes and where it came from.

    Parameters
    ----------
    offset
        Training offset: the source message's offset.
    value
        The record's bytes.
    key
        The source message's key.
    index
        Position inside a ``kps-batch`` message; None for a one-record message.
    """

    offset: int
    value: bytes
    key: bytes | None = None
    index: int | None = None


def encode_batch(records: Sequence[bytes]) -> bytes:
    """A ``kps-batch`` message of msgpack-encoded records (as ``encode_record(..., fmt=
    "msgpack")`` writes them); they are embedded byte for byte."""
    packer = msgpack.Packer(use_bin_type=True)
    head = (
        packer.pack_array_header(len(records) + 2) + packer.pack(BATCH_TAG) + packer.pack(VERSION)
    )
    return b"".join((head, *records))


def encode_packed(
    offsets: Sequence[int], keys: Sequence[bytes | None], values: Sequence[bytes]
) -> bytes:
    """A ``kps-packed`` message of source messages (offset, key, original value)."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [
        packer.pack_array_header(len(values) + 4),
        packer.pack(PACKED_TAG),
        packer.pack(VERSION),
        packer.pack(list(offsets)),
        packer.pack(list(keys)),
    ]
    parts += [packer.pack(value) for value in values]
    return b"".join(parts)


_BATCH_HEAD = msgpack.packb(BATCH_TAG)
_PACKED_HEAD = msgpack.packb(PACKED_TAG)


def records_in(data: bytes) -> int:
    """How many records a message holds, read from its first bytes alone: a ``kps-batch``
    message's records, a ``kps-packed`` message's source messages, else 1. What a take of
    training events weighs (:mod:`agents.take`); a malformed container is found later, by
    :func:`split_message`."""
    if not data or data[0] not in _ARRAY_BYTES:
        return 1
    first = data[0]
    if first < 0xDC:
        count, start = first & 0x0F, 1
    else:
        width = 2 if first == 0xDC else 4
        count, start = int.from_bytes(data[1 : 1 + width], "big"), 1 + width
    if data.startswith(_BATCH_HEAD, start):
        return max(1, count - 2)
    if data.startswith(_PACKED_HEAD, start):
        return max(1, count - 4)
    return 1


def _container(data: bytes) -> tuple[msgpack.Unpacker, int, str] | None:
    """An unpacker past the tag and version of a batch or packed message, its item count
    and its tag; None for a one-record message."""
    if not data or data[0] not in _ARRAY_BYTES:
        return None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=len(data) + 1)
    unpacker.feed(data)
    try:
        count = unpacker.read_array_header()
        tag = unpacker.unpack() if count >= 2 else None
        if tag not in (BATCH_TAG, PACKED_TAG):
            return None
        version = unpacker.unpack()
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData) as error:
        raise BadRecordError(
            DeadLetterReason.MALFORMED, f"not a valid record batch: {error}"
        ) from None
    if version != VERSION:
        raise BadRecordError(
            DeadLetterReason.MALFORMED, f"{tag} version {version!r}, expected {VERSION}"
        )
    return unpacker, count - 2, tag


def split_message(data: bytes, offset: int, key: bytes | None = None) -> list[Item]:
    """The records of the message read at ``offset``: one, a batch's, or a packed message's."""
    opened = _container(data)
    if opened is None:
        return [Item(offset, data, key)]
    unpacker, count, tag = opened
    try:
        if tag == BATCH_TAG:
            return list(_batch_items(unpacker, data, count, offset, key))
        return list(_packed_items(unpacker, count))
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.OutOfData) as error:
        raise BadRecordError(
            DeadLetterReason.MALFORMED, f"not a valid {tag} message: {error}"
        ) from None


def _batch_items(
    unpacker: msgpack.Unpacker, data: bytes, count: int, offset: int, key: bytes | None
) -> Iterable[Item]:
    for index in range(count):
        start = unpacker.tell()
        unpacker.skip()
        yield Item(offset, data[start : unpacker.tell()], key, index)
    if unpacker.tell() != len(data):
        raise ValueError(f"{len(data) - unpacker.tell()} trailing bytes")


def _packed_items(unpacker: msgpack.Unpacker, count: int) -> Iterable[Item]:
    offsets, keys = unpacker.unpack(), unpacker.unpack()
    values = [unpacker.unpack() for _ in range(count - 2)]
    if not (len(offsets) == len(keys) == len(values)):
        raise ValueError(f"{len(offsets)} offsets, {len(keys)} keys, {len(values)} values")
    for source, key, value in zip(offsets, keys, values, strict=True):
        if type(source) is not int or not isinstance(value, bytes):
            raise TypeError("packed offsets must be integers and values bytes")
        if value and value[0] in _ARRAY_BYTES:
            yield from split_message(value, source, key)
        else:
            yield Item(source, value, key)  # a one-record message, as split_message says
