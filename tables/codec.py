"""The value format of parameter-table records and of the model-updates topic.

One record holds a parameter's value, its optimizer state and the exactly-once
bookkeeping (the shard-topic offset of the last push applied), so that they are always
written together. The format is a fixed little-endian header followed by raw
little-endian arrays, so any language can read it; ``docs/formats.md`` gives the exact
layout. Never pickle.
"""

from __future__ import annotations

import math
import operator
import struct
from dataclasses import dataclass

import numpy as np

from kafka_ps.tables.errors import KafkaPsError

MAGIC = b"KP"
FORMAT_VERSION = 1

#: magic, version, dtype code, ndim, n_slots, rule id; then shard offset, clock.
_LEAD = "<2sBBBBH"
HEADER = struct.Struct(_LEAD + "qq")
#: Where the header's shard offset starts (:func:`encode_values` writes it per record).
OFFSET_AT = struct.calcsize(_LEAD)
DIM = struct.Struct("<I")

#: Wire dtype codes; arrays are always stored little-endian.
DTYPE_CODES: dict[np.dtype, int] = {
    np.dtype("<f4"): 1,
    np.dtype("<f8"): 2,
    np.dtype("<i8"): 3,
    np.dtype("<i4"): 4,
}
CODE_DTYPES: dict[int, np.dtype] = {code: dtype for dtype, code in DTYPE_CODES.items()}

_U8_MAX = 0xFF
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_I64_MAX = 2**63 - 1


class CodecError(KafkaPsError, ValueError):
    """A record that cannot be encoded or decoded; the message says why."""


@dataclass(frozen=True, eq=False)
class ParamRecord:
    """A parameter's stored state.

    ``slots[0]`` is the parameter value; the remaining slots are optimizer state of the
    same shape and dtype. ``offset`` is the shard-topic offset of the last push applied
    and ``clock`` the writer's clock; -1 means none. ``rule_id`` names the update rule
    that wrote the record (0 = none).

    Parameters
    ----------
    slots
        The value (``slots[0]``) and the update rule's state, numpy arrays of one shape and
        one supported dtype; 1 to 255 of them.
    offset
        Shard-topic offset of the last push applied, or -1 (the default) for none.
    clock
        The writer's clock, or -1 (the default) for none.
    rule_id
        The :attr:`~tables.update_rules.UpdateRule.rule_id` of the rule that wrote the
        record, 0 to 65535; 0 (the default) for none.
    """

    slots: tuple[np.ndarray, ...]
    offset: int = -1
    clock: int = -1
    rule_id: int = 0

    def __post_init__(self) -> None:
        try:
            slots = tuple(self.slots)
        except TypeError as error:
            raise CodecError("slots must be a sequence of numpy arrays") from error
        object.__setattr__(self, "slots", slots)
        if not 1 <= len(slots) <= _U8_MAX:
            raise CodecError(f"a record needs 1 to {_U8_MAX} slots, got {len(slots)}")
        first = slots[0]
        for i, slot in enumerate(slots):
            if not isinstance(slot, np.ndarray):
                raise CodecError(f"slot {i} is a {type(slot).__name__}, not a numpy array")
            if slot.shape != first.shape or slot.dtype != first.dtype:
                raise CodecError(
                    f"slot {i} is {slot.dtype}{list(slot.shape)}, "
                    f"slot 0 is {first.dtype}{list(first.shape)}"
                )
        if first.dtype.newbyteorder("<") not in DTYPE_CODES:
            raise CodecError(f"unsupported dtype {first.dtype}")
        if first.ndim > _U8_MAX or any(d > _U32_MAX for d in first.shape):
            raise CodecError(f"shape {first.shape} does not fit the header")
        for field, low, high in (
            ("rule_id", 0, _U16_MAX),
            ("offset", -1, _I64_MAX),
            ("clock", -1, _I64_MAX),
        ):
            try:
                number = operator.index(getattr(self, field))
            except TypeError as error:
                raise CodecError(f"{field} must be an integer") from error
            if not low <= number <= high:
                raise CodecError(f"{field} must be in [{low}, {high}], got {number}")
            object.__setattr__(self, field, number)

    @property
    def value(self) -> np.ndarray:
        return self.slots[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.slots[0].shape

    @property
    def dtype(self) -> np.dtype:
        return self.slots[0].dtype


def _head(
    wire: np.dtype, shape: tuple[int, ...], n_slots: int, rule_id: int, offset: int, clock: int
) -> bytes:
    """A record's header and dims, everything before its arrays."""
    code = DTYPE_CODES[wire]
    header = HEADER.pack(MAGIC, FORMAT_VERSION, code, len(shape), n_slots, rule_id, offset, clock)
    return header + b"".join(DIM.pack(d) for d in shape)


def encode_record(rec: ParamRecord) -> bytes:
    """The wire bytes of ``rec``."""
    wire = rec.dtype.newbyteorder("<")
    head = _head(wire, rec.shape, len(rec.slots), rec.rule_id, rec.offset, rec.clock)
    arrays = (slot.astype(wire, copy=False).tobytes(order="C") for slot in rec.slots)
    return b"".join((head, *arrays))


def encode_value(value: np.ndarray, offset: int = -1, clock: int = -1) -> bytes:
    """A one-slot record: the form of the model-updates topic."""
    return encode_record(ParamRecord((np.asarray(value),), offset=offset, clock=clock))


def encode_values(values: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """:func:`encode_value` of each row of ``values`` ``(m, *shape)`` with its shard offset
    from ``offsets`` ``(m,)``, byte for byte, at once.

    A shard publishes thousands of values per flush, so the records are built as the rows
    of one array (the header copied to every row, then each row's offset and value written
    in), not one by one; the values are trusted to be of a supported dtype (a shard's own).
    """
    m, *shape = values.shape
    if not m:
        return []
    wire = values.dtype.newbyteorder("<")
    head = _head(wire, tuple(shape), 1, 0, -1, -1)
    size = len(head) + math.prod(shape) * wire.itemsize
    rows = np.empty((m, size), dtype=np.uint8)
    rows[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rows[:, OFFSET_AT : OFFSET_AT + 8] = offsets.astype("<i8").reshape(m, 1).view(np.uint8)
    rows[:, len(head) :] = np.ascontiguousarray(values, dtype=wire).reshape(m, -1).view(np.uint8)
    raw = rows.tobytes()
    return [raw[i * size : (i + 1) * size] for i in range(m)]


def decode_record(data: bytes | bytearray | memoryview) -> ParamRecord:
    """Parse and fully validate a record; raise :class:`CodecError` on any malformed input.

    The returned arrays are zero-copy views of ``data`` and are marked read-only, so
    they stay valid while ``data`` lives and must not be written to; update rules
    return new arrays, and callers that need to write should ``copy()`` first. When
    ``data`` is a mutable buffer, mutating it later changes the arrays too.
    """
    try:
        buf = memoryview(data).cast("B")
    except (TypeError, ValueError) as error:
        raise CodecError(
            f"record must be a bytes-like object, not {type(data).__name__}"
        ) from error
    if len(buf) < HEADER.size:
        raise CodecError(
            f"record of {len(buf)} bytes is shorter than the {HEADER.size}-byte header"
        )
    magic, version, code, ndim, n_slots, rule_id, offset, clock = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise CodecError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise CodecError(f"unsupported format version {version}, expected {FORMAT_VERSION}")
    dtype = CODE_DTYPES.get(code)
    if dtype is None:
        raise CodecError(f"unknown dtype code {code}")
    if n_slots < 1:
        raise CodecError("record has no slots")
    if offset < -1 or clock < -1:
        raise CodecError(f"offset {offset} and clock {clock} must be >= -1")
    start = HEADER.size + ndim * DIM.size
    if len(buf) < start:
        raise CodecError(f"record of {len(buf)} bytes is truncated inside its {ndim} dims")
    shape = tuple(DIM.unpack_from(buf, HEADER.size + i * DIM.size)[0] for i in range(ndim))
    count = 1
    for d in shape:
        count *= d
    slot_bytes = count * dtype.itemsize
    expected = start + n_slots * slot_bytes
    if len(buf) != expected:
        raise CodecError(
            f"record is {len(buf)} bytes; {n_slots} slots of {count} {dtype} elements "
            f"need {expected}"
        )
    slots = []
    for i in range(n_slots):
        slot = np.frombuffer(buf, dtype=dtype, count=count, offset=start + i * slot_bytes)
        slot = slot.reshape(shape)
        slot.flags.writeable = False
        slots.append(slot)
    return ParamRecord(tuple(slots), offset=offset, clock=clock, rule_id=rule_id)
