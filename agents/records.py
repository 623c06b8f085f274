"""The training-record wire format: JSON objects or msgpack maps, parsed strictly.

A record is one object with these fields, all optional except that ``features`` or
``dense`` must be there (either may be empty):

==========  ===================================================================
``features``  object: feature name -> number or string (sparse or categorical)
``dense``     list of numbers (a dense feature vector)
``label``     number; a record without one is only predicted, not learned from, where
              the job allows that (``require_label=False``), else rejected
``key``       non-empty string: the record's own key (e.g. a user or event id)
``ts``        number: event time in seconds
==========  ===================================================================

A field set to ``null`` (``nil``) counts as absent. Anything else is rejected with a
:class:`BadRecordError` whose ``reason`` is one of
:data:`~tables.dead_letters.RECORD_REASONS`, so that a worker can send the record to the
dead-letter topic with that reason in a header (invariant 7 in
docs/architecture.md#invariants): undecodable bytes, unknown fields, wrong types (a
boolean is not a number), NaN or infinite numbers, oversized records, too many features
and feature names that would break parameter keys or feature crosses (``:``, ``=`` and
``&`` are their separators).

The format is told by the first byte: a JSON object starts with ``{`` (after optional
whitespace), a msgpack map with 0x80-0x8f, 0xde or 0xdf.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from functools import partial
from itertools import chain, repeat
from typing import Any, Literal

import msgpack
import numpy as np
import orjson

from kafka_ps.agents.api import TrainingRecord, frozen
from kafka_ps.tables.dead_letters import DeadLetterReason, RejectedError

Format = Literal["json", "msgpack"]

MAX_RECORD_BYTES = 1 << 20
MAX_FEATURES = 10_000
MAX_NAME_CHARS = 256
FIELDS = frozenset({"features", "dense", "label", "key", "ts"})
#: Characters a feature name must not contain: the parameter-key and cross separators.
NAME_FORBIDDEN = frozenset(":=&")

#: Feature names already checked: names repeat from record to record, so each is checked once.
_GOOD_NAMES: set[str] = set()
MAX_GOOD_NAMES = 100_000

_JSON_WHITESPACE = b" \t\n\r"
_MSGPACK_MAP_BYTES = frozenset({*range(0x80, 0x90), 0xDE, 0xDF})
#: Encodes a decoded msgpack record back, to prove it had no name twice. One packer serves
#: every thread: ``pack`` runs in C under the GIL, without a callback, and resets itself.
_PACKER = msgpack.Packer(use_bin_type=True)
_TEXT = {str}
_FLOAT = {float}
_BYTES = {bytes}
_JSON_OPEN = {ord("{")}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: A quote then JSON whitespace: a name may have whitespace before its colon.
_QUOTE_SPACE = re.compile(rb'"[ \t\n\r]')
_unpack = partial(msgpack.unpackb, raw=False, strict_map_key=True)


class BadRecordError(RejectedError):
    """A training record that must not reach a model (see :class:`RejectedError`)."""


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: object) -> bool:
    # Exact types: a decoded bool is not a number, and decoders make no subclasses.
    return type(value) is int or type(value) is float


def _finite(value: int | float, where: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise BadRecordError(DeadLetterReason.NON_FINITE, f"{where} is not finite: {_show(value)}")
    return number


def _number(value: object, where: str) -> float:
    if not _is_number(value):
        raise BadRecordError(
            DeadLetterReason.WRONG_TYPE, f"{where} must be a number, got {_type_name(value)}"
        )
    return _finite(value, where)  # type: ignore[arg-type]


def _features(value: object) -> dict[str, float | int | str]:
    if not isinstance(value, dict):
        raise BadRecordError(
            DeadLetterReason.WRONG_TYPE, f"features must be an object, got {_type_name(value)}"
        )
    if len(value) > MAX_FEATURES:
        raise BadRecordError(
            DeadLetterReason.TOO_MANY_FEATURES,
            f"{len(value)} features, at most {MAX_FEATURES} allowed",
        )
    for name, feature in value.items():
        if type(feature) is str and name in _GOOD_NAMES:
            continue  # the common case: a known name with a categorical value
        if type(name) is not str:
            raise BadRecordError(
                DeadLetterReason.WRONG_TYPE,
                f"feature names must be strings, got {_type_name(name)}",
            )
        if not name or len(name) > MAX_NAME_CHARS or not NAME_FORBIDDEN.isdisjoint(name):
            raise BadRecordError(
                DeadLetterReason.BAD_FEATURE_NAME,
                f"feature name {_show(name)} must have 1-{MAX_NAME_CHARS} characters "
                "and none of ':', '=', '&'",
            )
        if type(feature) is str:
            continue
        if not _is_number(feature):
            raise BadRecordError(
                DeadLetterReason.WRONG_TYPE,
                f"feature {_show(name)} must be a number or a string, got {_type_name(feature)}",
            )
        _finite(feature, f"feature {_show(name)}")
    if len(_GOOD_NAMES) < MAX_GOOD_NAMES:
        _GOOD_NAMES.update(value)  # every name has passed the checks above
    return value


def _dense(value: object) -> np.ndarray:
    if not isinstance(value, list):
        raise BadRecordError(
            DeadLetterReason.WRONG_TYPE, f"dense must be a list, got {_type_name(value)}"
        )
    for i, item in enumerate(value):
        if not _is_number(item):
            raise BadRecordError(
                DeadLetterReason.WRONG_TYPE, f"dense[{i}] must be a number, got {_type_name(item)}"
            )
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:
        raise BadRecordError(
            DeadLetterReason.NON_FINITE, "dense has an integer too large for a float"
        ) from None
    if not np.isfinite(array).all():
        raise BadRecordError(DeadLetterReason.NON_FINITE, "dense has NaN or infinite values")
    return array


def _key(value: object) -> bytes:
    if type(value) is not str:
        raise BadRecordError(
            DeadLetterReason.WRONG_TYPE, f"key must be a string, got {_type_name(value)}"
        )
    if not value:
        raise BadRecordError(DeadLetterReason.WRONG_TYPE, "key must not be empty")
    return value.encode()


def record_from_object(obj: object, partition: int = 0, offset: int = -1) -> TrainingRecord:
    """Validate a decoded record object and build its :class:`TrainingRecord`."""
    if not isinstance(obj, dict):
        raise BadRecordError(
            DeadLetterReason.NOT_OBJECT, f"a record must be an object, got {_type_name(obj)}"
        )
    unknown = [name for name in obj if name not in FIELDS]
    if unknown:
        raise BadRecordError(
            DeadLetterReason.UNKNOWN_FIELD,
            f"unknown field {_show(unknown[0])}; known: {', '.join(sorted(FIELDS))}",
        )
    fields = {name: value for name, value in obj.items() if value is not None}
    if "features" not in fields and "dense" not in fields:
        raise BadRecordError(DeadLetterReason.EMPTY, "a record needs 'features' or 'dense'")
    features = _features(fields["features"]) if "features" in fields else {}
    dense = _dense(fields["dense"]) if "dense" in fields else None
    label = _number(fields["label"], "label") if "label" in fields else None
    key = _key(fields["key"]) if "key" in fields else None
    ts = _number(fields["ts"], "ts") if "ts" in fields else None
    return _record(features, dense, label, key, ts, partition, offset)


def _record(
    features: dict[str, float | int | str],
    dense: np.ndarray | None,
    label: float | None,
    key: bytes | None,
    ts: float | None,
    partition: int,
    offset: int,
) -> TrainingRecord:
    """A checked record's :class:`TrainingRecord`, every field given (so built at once)."""
    return frozen(
        TrainingRecord,
        features=features,
        dense=dense,
        label=label,
        key=key,
        timestamp=ts,
        partition=partition,
        offset=offset,
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BadRecordError(DeadLetterReason.MALFORMED, "an object has a duplicate name")
    return obj


def _reject_constant(name: str) -> None:
    raise BadRecordError(DeadLetterReason.NON_FINITE, f"JSON constant {name} is not allowed")


def _decode(data: bytes) -> object:
    if data[:1] and data[0] in _MSGPACK_MAP_BYTES:
        kind = "msgpack"
    elif data.lstrip(_JSON_WHITESPACE)[:1] == b"{":
        kind = "JSON"
    elif not data.strip(_JSON_WHITESPACE):
        raise BadRecordError(DeadLetterReason.EMPTY, "the record is empty")
    else:
        raise BadRecordError(
            DeadLetterReason.NOT_OBJECT,
            f"not a JSON object or msgpack map (starts with {_show(data[:8])})",
        )
    try:
        if kind == "msgpack":
            return msgpack.unpackb(
                data, raw=False, strict_map_key=True, object_pairs_hook=_reject_duplicates
            )
        obj = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
        if _SURROGATE_ESCAPE.search(data):
            # JSON escapes can spell lone surrogates, which no later .encode() survives.
            json.dumps(obj, ensure_ascii=False).encode()
        return obj
    except BadRecordError:
        raise
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as error:
        detail = str(error) or type(error).__name__
        raise BadRecordError(
            DeadLetterReason.MALFORMED, f"not valid {kind}: {_show(detail, 120)}"
        ) from None


def parse_record(
    data: bytes,
    partition: int = 0,
    offset: int = -1,
    *,
    max_size: int = MAX_RECORD_BYTES,
    require_label: bool = False,
) -> TrainingRecord:
    """Parse one training record read at ``partition``/``offset``.

    Raises :class:`BadRecordError` and nothing else, whatever the bytes.
    """
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise BadRecordError(
                DeadLetterReason.WRONG_TYPE, f"a record must be bytes, got {_type_name(data)}"
            )
        data = bytes(data)
    if len(data) > max_size:
        raise BadRecordError(
            DeadLetterReason.TOO_LARGE, f"{len(data)} bytes, at most {max_size} allowed"
        )
    record = _fast_record(data, partition, offset)
    if record is None:
        record = record_from_object(_decode(data), partition, offset)
    if require_label and record.label is None:
        raise BadRecordError(DeadLetterReason.MISSING_LABEL, "the record has no label")
    return record


#: Floats at least this large may be integers too big for 64 bits, which orjson reads as
#: floats and the exact path as integers (a categorical feature hashes their text).
_EXACT_FLOAT = float(2**53)


def _fast_number(value: object) -> float | None:
    """A plain finite number as a float; None for anything the exact path must judge."""
    kind = type(value)
    if kind is float:
        return value if -_EXACT_FLOAT < value < _EXACT_FLOAT else None  # type: ignore[operator,return-value]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    return None


def _fast_record(data: bytes, partition: int, offset: int) -> TrainingRecord | None:
    """The common record, parsed with orjson (or msgpack's C decoder) and checked in bulk;
    None for anything else, which the exact path (:func:`_decode`,
    :func:`record_from_object`) then parses, accepts or rejects with its reason.

    Whatever this accepts, the exact path accepts as the same record. orjson and msgpack
    keep the last of duplicate names, so a record is taken here only when it provably has
    none: in JSON without whitespace before a colon every name is a string followed by
    ``":`` (an escaped quote inside a string can only add to the count), so as many ``":``
    as names means no name twice; a msgpack record
    must encode back to the same bytes. orjson refuses NaN, infinities and lone surrogates
    itself.
    """
    first = data[:1]
    try:
        if first == b"{":
            obj = orjson.loads(data)
            msgpack_record = False
        elif first and data[0] in _MSGPACK_MAP_BYTES:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
            msgpack_record = True
        else:
            return None
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if type(obj) is not dict:
        return None
    record = _fast_checked(obj, partition, offset)
    if record is None:
        return None
    if msgpack_record:
        if _PACKER.pack(obj) != data:
            return None
    elif data.count(b'":') != len(obj) + len(record.features) or _QUOTE_SPACE.search(data):
        # A quote then whitespace: a name may have whitespace before its colon.
        return None
    return record


def _fast_checked(obj: dict, partition: int, offset: int) -> TrainingRecord | None:
    """The record of a decoded object whose every field is of the common kind, checked in
    bulk; None for anything else (:func:`record_from_object` judges it)."""
    fields = _fast_fields(obj)
    return None if fields is None else _record(*fields, partition, offset)


def _fast_fields(
    obj: dict,
) -> tuple[dict, np.ndarray | None, float | None, bytes | None, float | None] | None:
    """The checked features, dense, label, key and ts of :func:`_fast_checked`."""
    if not FIELDS.issuperset(obj):
        return None
    features = obj.get("features")
    if features is not None:
        if type(features) is not dict or len(features) > MAX_FEATURES:
            return None
        if not _GOOD_NAMES.issuperset(features):
            return None
        kinds = set(map(type, features.values()))
        if not kinds <= _TEXT and any(
            type(value) is not str and _fast_number(value) is None for value in features.values()
        ):
            return None
    dense = obj.get("dense")
    if dense is not None:
        if type(dense) is not list or not all(_fast_number(v) is not None for v in dense):
            return None
        dense = np.array(dense, dtype=np.float64)
    label = obj.get("label")
    if label is not None and (label := _fast_number(label)) is None:
        return None
    ts = obj.get("ts")
    if ts is not None and (ts := _fast_number(ts)) is None:
        return None
    key = obj.get("key")
    if key is not None:
        if type(key) is not str or not key:
            return None
        key = key.encode()
    if features is None and dense is None:
        return None
    return features or {}, dense, label, key, ts


_DICT = {dict}
_LABELS = {float, int, type(None)}
_KEYS = {str, type(None)}
_FEATURE_VALUES = {str, float, int}


def parse_records(
    values: list[bytes],
    partition: int,
    offsets: list[int],
    *,
    max_size: int = MAX_RECORD_BYTES,
    require_label: bool = False,
) -> list[TrainingRecord] | None:
    """The records of ``values`` (read at ``partition``/``offsets``), parsed and checked a
    column at a time, when every one is of the common kind that :func:`_fast_record` takes:
    the same records as :func:`parse_record` gives one by one. None when any is not, and
    then :func:`parse_record` must judge them one by one (a bad one has its reason there).

    Per record only the decoding runs in C; the checks :func:`_fast_checked` makes per
    record run here once over every record's names, types and numbers.
    """
    if not values or set(map(type, values)) != _BYTES:
        return None
    sizes = list(map(len, values))
    if min(sizes) == 0 or max(sizes) > max_size:
        return None
    firsts = set(map(bytes.__getitem__, values, repeat(0)))
    try:
        if firsts == _JSON_OPEN:
            objs = list(map(orjson.loads, values))
        elif firsts <= _MSGPACK_MAP_BYTES:
            objs = list(map(_unpack, values))
        else:
            return None
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if set(map(type, objs)) != _DICT or not FIELDS.issuperset(chain.from_iterable(objs)):
        return None
    columns = _checked_columns(objs, require_label)
    if columns is None:
        return None
    features = columns[0]
    if firsts == _JSON_OPEN:
        # As in _fast_record, summed: each record has at least as many '":' as names.
        names = sum(map(len, objs)) + sum(map(len, features))
        counts = sum(map(bytes.count, values, repeat(b'":')))
        if counts != names or any(map(_QUOTE_SPACE.search, values)):
            return None
    elif list(map(_PACKER.pack, objs)) != values:
        return None
    return [
        _record(f, d, y, k, t, partition, o)
        for f, d, y, k, t, o in zip(*columns, offsets, strict=True)
    ]


def _checked_columns(objs: list[dict], require_label: bool) -> tuple[list, ...] | None:
    """Features, dense vectors, labels, keys and timestamps of decoded records, checked
    as :func:`_fast_checked` checks one; None if any record is not of the common kind."""
    features = [obj.get("features") for obj in objs]
    if set(map(type, features)) != _DICT:
        return None  # a record without features (dense only): judged one by one
    if max(map(len, features)) > MAX_FEATURES:
        return None
    if not _GOOD_NAMES.issuperset(chain.from_iterable(features)):
        return None
    kinds = set(map(type, chain.from_iterable(map(dict.values, features))))
    if not kinds <= _TEXT:
        if not kinds <= _FEATURE_VALUES:
            return None
        numbers = [v for f in features for v in f.values() if type(v) is not str]
        if not _exact(numbers):
            return None
    dense = [obj.get("dense") for obj in objs]
    if dense.count(None) != len(dense):
        dense = [_fast_dense(d) for d in dense]
        if any(d is _MISSING for d in dense):
            return None
    labels = _numbers([obj.get("label") for obj in objs])
    stamps = _numbers([obj.get("ts") for obj in objs])
    if labels is None or stamps is None or (require_label and None in labels):
        return None
    keys = [obj.get("key") for obj in objs]
    if not set(map(type, keys)) <= _KEYS or "" in keys:
        return None
    keys = [None if k is None else k.encode() for k in keys]
    return features, dense, labels, keys, stamps


_MISSING = object()


def _fast_dense(value: object) -> object:
    """A record's dense vector as :func:`_fast_checked` takes it; :data:`_MISSING` if not."""
    if value is None:
        return None
    if type(value) is not list or not all(_fast_number(v) is not None for v in value):
        return _MISSING
    return np.array(value, dtype=np.float64)


def _exact(numbers: list) -> bool:
    """Whether every one of ``numbers`` (ints and floats) is what :func:`_fast_number` takes:
    finite, and below 2**53 in magnitude if a float."""
    floats = [v for v in numbers if type(v) is float]
    if not floats:
        return True
    largest = np.abs(np.array(floats, dtype=np.float64)).max()
    return bool(largest < _EXACT_FLOAT)  # False for NaN


def _numbers(column: list) -> list | None:
    """A column of labels or timestamps as :func:`_fast_number` takes each (None kept);
    None if any is not a plain number."""
    kinds = set(map(type, column))
    if kinds == _FLOAT:
        return column if _exact(column) else None
    if not kinds <= _LABELS:
        return None
    present = [v for v in column if v is not None]
    if not _exact(present):
        return None
    return [None if v is None else float(v) for v in column]


def _json_bytes(obj: Mapping[str, object]) -> bytes:
    """Compact JSON: orjson's, or the standard library's for what orjson refuses (integers
    beyond 64 bits, which it cannot write, and lone surrogates, which neither can)."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(value: object) -> object:
    """A numpy scalar as the Python number it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def encode_record(
    features: Mapping[str, float | int | str] | None = None,
    dense: Iterable[float] | np.ndarray | None = None,
    label: float | None = None,
    key: str | None = None,
    ts: float | None = None,
    fmt: Format = "json",
    *,
    max_size: int = MAX_RECORD_BYTES,
) -> bytes:
    """One training record as bytes; it is validated first, so it always parses.

    numpy scalars and arrays are accepted and written as plain numbers.
    """
    if fmt not in ("json", "msgpack"):
        raise ValueError(f"fmt must be 'json' or 'msgpack', got {fmt!r}")
    obj: dict[str, object] = {}
    if features is not None:
        kinds = set(map(type, features.values()))
        if not kinds <= _FEATURE_VALUES and any(issubclass(kind, np.generic) for kind in kinds):
            obj["features"] = {name: _plain(value) for name, value in features.items()}
        else:
            obj["features"] = dict(features)
    if dense is not None:
        if isinstance(dense, np.ndarray) and dense.ndim != 1:
            raise BadRecordError(
                DeadLetterReason.WRONG_TYPE, f"dense must be 1-D, got shape {dense.shape}"
            )
        if isinstance(dense, np.ndarray) and dense.dtype.kind in "iuf":
            obj["dense"] = dense.astype(np.float64).tolist()
        else:
            obj["dense"] = [_plain(value) for value in dense]
    if label is not None:
        obj["label"] = _plain(label)
    if key is not None:
        obj["key"] = _plain(key)
    if ts is not None:
        obj["ts"] = _plain(ts)
    if _fast_fields(obj) is None:  # the common record, checked in bulk
        record_from_object(obj)
    return _serialized(obj, fmt, max_size)


def record_from_fields(fields: Mapping[str, Any], offset: int = -1) -> TrainingRecord:
    """The record a worker parses from :func:`encode_record`'s keyword arguments (a record
    as a mapping, as :func:`kafka_ps.run` and :func:`~agents.checks.check_logic` take it),
    so a check in process sees what the job sees on Kafka."""
    return parse_record(encode_record(**fields), 0, offset)


def encode_fields(
    fields: Mapping[str, Any], fmt: Format = "json", *, max_size: int = MAX_RECORD_BYTES
) -> bytes:
    """:func:`encode_record` of a mapping of its fields (a data set's records): the same
    record; a plain dict of the common kind is written as it is, without the copy and the
    per-field conversions that are most of a producer's cost per record."""
    # None is checked last, when every value is plain: ``in`` would compare an array.
    if type(fields) is dict and _fast_fields(fields) is not None and None not in fields.values():
        return _serialized(fields, fmt, max_size)
    return encode_record(**fields, fmt=fmt, max_size=max_size)


def _serialized(obj: Mapping[str, object], fmt: Format, max_size: int) -> bytes:
    """A checked record's bytes in ``fmt``, at most ``max_size`` of them."""
    try:
        data = _json_bytes(obj) if fmt == "json" else msgpack.packb(obj, use_bin_type=True)
    except UnicodeEncodeError:
        raise BadRecordError(DeadLetterReason.MALFORMED, "a string is not valid Unicode") from None
    except OverflowError:
        raise BadRecordError(
            DeadLetterReason.WRONG_TYPE, "an integer does not fit in 64 bits"
        ) from None
    if len(data) > max_size:
        raise BadRecordError(
            DeadLetterReason.TOO_LARGE, f"{len(data)} bytes, at most {max_size} allowed"
        )
    return data
