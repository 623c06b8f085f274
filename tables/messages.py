"""Pull requests, pull replies and pushes: the messages on the shard and reply topics.

One message carries one shard's keys for one mini-batch, so a worker sends one pull and
one push per shard per mini-batch. Layout, little-endian:

    header   magic "KM", version u8, kind u8, worker i32, clock i64, request_id u64,
             first_offset|worker_clock i64, last_offset|mark i64, n_keys u32, n_values u32
    keys     (n_keys + 1) u32 end positions into the key blob, then the key blob
    values   (replies and pushes) n_keys + 1 u64 element positions, then the data:
             float64 in a version 1 message, float16 in a version 2 message (pushes
             compressed with KPS_PUSH_DTYPE=float16)

A reply's values for a key are all its slots (value and optimizer state), a push's
values its delta slots; the receiver reshapes them with the parameter's spec.

Two header slots mean one thing per kind: a reply's ``worker_clock`` and ``mark``, any
other message's ``first_offset`` and ``last_offset``. Only this module maps them, so the
wire stays as it was and no reader takes one for the other.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from kafka_ps.tables.errors import KafkaPsError

MAGIC = b"KM"
#: The message version says the value type: 1 float64, 2 float16.
VALUE_TYPES = {1: np.dtype("<f8"), 2: np.dtype("<f2")}
VERSION = 1
HALF = 2
#: Largest magnitude float16 holds; a push with a larger value goes as float64.
HALF_MAX = float(np.finfo(np.float16).max)
HEADER = struct.Struct("<2sBBiqQqqII")


class Kind(IntEnum):
    PULL = 1
    REPLY = 2
    PUSH = 3
    #: A server's note to itself on one of its shard partitions: time to flush it.
    TICK = 4


class MessageError(KafkaPsError, ValueError):
    """Bytes that are not a valid kafka-ps message; the message says why."""


@dataclass(frozen=True, eq=False)
class PsMessage:
    """One pull, reply, push or tick, as encoded on the shard and reply topics.

    Parameters
    ----------
    kind
        What the message is: :class:`Kind` ``PULL``, ``REPLY``, ``PUSH`` or ``TICK``.
    worker
        The logical worker that sent the pull or push, or that a reply answers (its reply
        partition); 0 on a tick.
    keys
        The parameter keys, all of one shard.
    values
        A reply's slots, or a push's delta slots, per key (flattened float arrays); empty
        (the default) for pulls and ticks.
    clock
        A pull's or push's worker clock; on a reply, the shard's slowest worker clock. -1
        (the default) for none.
    request_id
        Matches a reply to its pull (a random 63-bit id); 0 (the default) otherwise.
    first_offset
        A push: the first training offset it covers (inclusive). -1 (the default) for none;
        always -1 on a reply.
    last_offset
        A push: the last training offset it covers (inclusive), for the per-worker
        high-water mark. -1 (the default) for none; always -1 on a reply.
    worker_clock
        A reply: the requesting worker's own clock at the shard. -1 (the default) for none;
        always -1 on other kinds.
    mark
        A reply: the requesting worker's high-water mark at the shard, the highest training
        offset of its pushes applied there. -1 (the default) for none; always -1 on other
        kinds.
    """

    kind: Kind
    worker: int
    keys: Sequence[bytes]
    values: Sequence[np.ndarray] = ()
    clock: int = -1
    request_id: int = 0
    first_offset: int = -1
    last_offset: int = -1
    worker_clock: int = -1
    mark: int = -1


def encode_message(message: PsMessage, half: bool = False) -> bytes:
    """The message's bytes; with ``half`` its values as float16 when they fit."""
    keys = list(message.keys)
    version = VERSION
    if half and len(message.values):
        values = message.values
        if isinstance(values, np.ndarray):
            largest = float(np.abs(values).max(initial=0.0))
        else:
            largest = max(float(np.abs(np.asarray(v)).max(initial=0.0)) for v in values)
        version = HALF if largest <= HALF_MAX else VERSION
    wire = VALUE_TYPES[version]
    slot_a, slot_b = _offset_slots(message)
    key_ends = np.cumsum([len(key) for key in keys], dtype=np.uint32) if keys else []
    parts = [
        HEADER.pack(
            MAGIC,
            version,
            int(message.kind),
            message.worker,
            message.clock,
            message.request_id,
            slot_a,
            slot_b,
            len(keys),
            len(message.values),
        ),
        np.concatenate([[0], key_ends]).astype("<u4").tobytes(),
        b"".join(keys),
    ]
    if len(message.values):
        if len(message.values) != len(keys):
            raise MessageError(f"{len(message.values)} values for {len(keys)} keys")
        values = message.values
        if isinstance(values, np.ndarray):
            rows = values.reshape(len(keys), -1)
            ends = np.arange(len(keys) + 1, dtype="<u8") * rows.shape[1]
            parts += [ends.tobytes(), rows.astype(wire).tobytes()]
        else:
            sizes = [value.size for value in values]
            parts.append(np.concatenate([[0], np.cumsum(sizes)]).astype("<u8").tobytes())
            parts.append(np.concatenate([np.ravel(v) for v in values]).astype(wire).tobytes())
    return b"".join(parts)


def decode_message(data: bytes) -> PsMessage:
    """Parse and validate; anything malformed raises :class:`MessageError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    view = memoryview(data)
    if len(view) < HEADER.size:
        raise MessageError(f"{len(view)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, kind, worker, clock, request_id, slot_a, slot_b, n_keys, n_values = (
        HEADER.unpack_from(view)
    )
    wire = VALUE_TYPES.get(version)
    if magic != MAGIC or wire is None:
        raise MessageError(f"not a kafka-ps v1 or v2 message (magic {magic!r} v{version})")
    try:
        kind = Kind(kind)
    except ValueError:
        raise MessageError(f"unknown message kind {kind}") from None
    if n_values not in (0, n_keys):
        raise MessageError(f"{n_values} values for {n_keys} keys")
    position = HEADER.size
    key_ends = _array(view, position, "<u4", n_keys + 1)
    position += 4 * (n_keys + 1)
    blob_size = int(key_ends[-1])
    if key_ends[0] != 0 or np.any(np.diff(key_ends.astype(np.int64)) < 0):
        raise MessageError("key positions are not ascending")
    if position + blob_size > len(view):
        raise MessageError("key blob runs past the end of the message")
    blob = bytes(view[position : position + blob_size])
    position += blob_size
    bounds = key_ends.tolist()
    keys = [blob[bounds[i] : bounds[i + 1]] for i in range(n_keys)]
    values: Sequence[np.ndarray] = []
    if n_values:
        ends = _array(view, position, "<u8", n_keys + 1)
        position += 8 * (n_keys + 1)
        total = int(ends[-1])
        if ends[0] != 0 or np.any(np.diff(ends.astype(np.int64)) < 0):
            raise MessageError("value positions are not ascending")
        flat = _array(view, position, wire.str, total).astype(np.float64, copy=False)
        position += wire.itemsize * total
        sizes = np.diff(ends)
        if n_keys and (sizes == sizes[0]).all():
            # One array of n_keys rows: what a one-parameter push or reply carries.
            values = flat.reshape(n_keys, int(sizes[0]))
        else:
            values = np.split(flat, ends[1:-1].astype(np.int64))
    if position != len(view):
        raise MessageError(f"{len(view) - position} unexpected trailing bytes")
    if kind is Kind.REPLY:
        return PsMessage(
            kind, worker, keys, values, clock, request_id, worker_clock=slot_a, mark=slot_b
        )
    return PsMessage(kind, worker, keys, values, clock, request_id, slot_a, slot_b)


def _offset_slots(message: PsMessage) -> tuple[int, int]:
    """The two header slots after the request id, filled by the message's kind; a field
    the kind does not carry must be unset, or it would be lost on the way."""
    if message.kind is Kind.REPLY:
        if message.first_offset != -1 or message.last_offset != -1:
            raise MessageError("a reply carries no training offsets")
        return message.worker_clock, message.mark
    if message.worker_clock != -1 or message.mark != -1:
        raise MessageError(f"a {message.kind.name.lower()} carries no worker clock or mark")
    return message.first_offset, message.last_offset


def _array(view: memoryview, position: int, dtype: str, count: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize * count
    if position + size > len(view):
        raise MessageError(f"message truncated: needs {position + size} bytes, has {len(view)}")
    return np.frombuffer(view, dtype=dtype, count=count, offset=position)
