"""Hashed sparse features for the linear models, encoded a mini-batch at a time.

Every feature ``name=value`` of ``record.features`` is categorical by default: it hashes
to bucket ``hash_feature(name, value, buckets)`` of parameter ``w`` with feature value 1.
Features listed in ``numeric`` instead hash by name alone and carry their value. Each
configured cross (a tuple of feature names, all present in the record) adds one
categorical feature ``hash_cross(...)``. Every record also has the bias feature, stored
under the string index ``w:bias`` so that it can never collide with a hashed bucket.

A mini-batch becomes one :class:`SparseBatch`: the unique keys it touches (what to pull
once and push once) and, per record, positions into those keys in CSR form, so a model
gathers a record's local weights with one fancy index.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.models.hyper import positive_int
from kafka_ps.tables.keys import hash_cross, hash_feature, param_key, stable_hash

BIAS = "bias"
#: Distinct features whose buckets a hasher remembers.
MAX_CACHED = 1 << 20
Feature = float | int | str | None


@dataclass(frozen=True, eq=False)
class SparseBatch:
    """A mini-batch of hashed features.

    Record ``r`` has features ``values[indptr[r]:indptr[r+1]]`` at positions
    ``indices[indptr[r]:indptr[r+1]]`` of ``keys``; positions within a record are unique
    (features that share a bucket are summed). ``labels`` is NaN where a record has none.

    Parameters
    ----------
    keys
        The unique keys of parameter ``w`` the mini-batch touches, what to pull and push.
    indices
        Positions into ``keys`` of every record's features, record after record (CSR).
    values
        The feature values, aligned with ``indices``.
    indptr
        ``len(records) + 1`` offsets: record ``r``'s features are ``indptr[r]:indptr[r+1]``.
    labels
        One label per record, NaN for an unlabelled record.
    """

    keys: list[bytes]
    indices: np.ndarray
    values: np.ndarray
    indptr: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and values of record ``r``'s features."""
        start, stop = self.indptr[r], self.indptr[r + 1]
        return self.indices[start:stop], self.values[start:stop]

    def margins(self, weights: np.ndarray) -> np.ndarray:
        """``w · x`` of every record, for per-position ``weights``; vectorised over the batch.

        Every record has at least the bias feature, so no CSR row is empty.
        """
        return np.add.reduceat(weights[self.indices] * self.values, self.indptr[:-1])

    def feature_sums(self, per_record: np.ndarray) -> np.ndarray:
        """``Σ_r per_record[r] · x_r`` per position: a mini-batch gradient for linear models."""
        weights = np.repeat(per_record, np.diff(self.indptr)) * self.values
        return np.bincount(self.indices, weights=weights, minlength=len(self.keys))


def batch_labels(records: Sequence[TrainingRecord]) -> np.ndarray:
    """The records' labels as floats, NaN where absent; infinite labels are refused."""
    labels = np.array([math.nan if r.label is None else r.label for r in records], dtype=np.float64)
    if np.isinf(labels).any():
        raise ValueError("a training record has an infinite label")
    return labels


@dataclass(frozen=True)
class FeatureHasher:
    """Turns records into a :class:`SparseBatch` over keys of parameter ``name``.

    Parameters
    ----------
    name
        The parameter whose keys the features hash to; ``"w"`` by default.
    buckets
        Hash buckets, >= 1; 2**20 by default.
    crosses
        Feature crosses, each a non-empty tuple of feature names; none by default.
    numeric
        Names of features that hash by name alone and carry their value; none by default,
        so every feature is categorical.
    """

    name: str = "w"
    buckets: int = 2**20
    crosses: tuple[tuple[str, ...], ...] = ()
    numeric: frozenset[str] = frozenset()
    #: Bucket of each categorical feature (and cross) seen: hashing a distinct feature
    #: once, not once per record, is most of what encoding costs. Cleared when full.
    _buckets: dict[tuple[object, ...], tuple[object, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: The key of each bucket seen (-1: the bias).
    _key_of: dict[int, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: Per feature name (or cross), the bucket of each string value (tuple of them) seen.
    _strings: dict[tuple[str, ...], dict[object, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        positive_int("buckets", self.buckets)
        for cross in self.crosses:
            if not cross or not all(isinstance(part, str) for part in cross):
                raise ValueError(f"a cross must be a non-empty tuple of feature names: {cross!r}")

    @property
    def bias_key(self) -> bytes:
        return param_key(self.name, BIAS)

    def feature_key(self, name: str, value: Feature = None) -> bytes:
        """The key a feature's weight is stored under (``value`` is ignored if numeric)."""
        return param_key(self.name, self._bucket(name, value))

    def _bucket(self, name: str, value: Feature) -> int:
        if name in self.numeric:
            # The name alone: its text has no "=", so it is not any categorical feature's.
            return stable_hash(name.encode()) % self.buckets
        return hash_feature(name, value, self.buckets)

    def _value(self, name: str, value: Feature) -> float:
        if name not in self.numeric:
            return 1.0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"numeric feature {name!r} has a non-number {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"numeric feature {name!r} is not finite: {value!r}")
        return float(value)

    def _remember(self, memo: tuple[object, ...], types: tuple[type, ...], bucket: int) -> int:
        if len(self._buckets) >= MAX_CACHED:
            self._buckets.clear()
        self._buckets[memo] = (types, bucket)
        return bucket

    def _feature(self, item: tuple[str, Feature]) -> int:
        """The bucket of categorical feature ``item = (name, value)``, hashed once."""
        hit = self._buckets.get(item)
        # Equal keys may differ in type (1, 1.0, True), and their buckets differ.
        if hit is not None and hit[0] is type(item[1]):
            return hit[1]
        return self._remember(item, type(item[1]), self._bucket(*item))  # type: ignore[arg-type]

    def _cross(self, index: int, parts: list[Feature]) -> int:
        memo = (index, *parts)
        types = tuple(map(type, parts))
        hit = self._buckets.get(memo)
        if hit is not None and hit[0] == types:
            return hit[1]
        pairs = list(zip(self.crosses[index], parts, strict=True))
        return self._remember(memo, types, hash_cross(pairs, self.buckets))

    def encode(self, records: Sequence[TrainingRecord]) -> SparseBatch:
        """The mini-batch's keys and CSR rows: record ``r`` has the bias, then its features
        in its own order (a numeric one carrying its value), then its crosses."""
        return self._encode_columns(records) or self._encode_rows(records)

    def _columns(self, records: Sequence[TrainingRecord]) -> list[tuple[Feature, ...]] | None:
        """One tuple of values per feature name, when every record has the same names;
        None otherwise."""
        if not records:
            return None
        names = list(records[0].features)
        if not names:
            return None
        features = [record.features for record in records]
        if set(map(len, features)) != {len(names)}:
            return None
        try:
            rows = list(map(itemgetter(*names), features))
        except KeyError:
            return None
        if len(names) == 1:
            return [tuple(rows)]
        return list(zip(*rows, strict=True))

    def _encode_columns(self, records: Sequence[TrainingRecord]) -> SparseBatch | None:
        """:meth:`encode` a column at a time: each distinct value (or combination, for a
        cross) is looked up once per mini-batch column instead of once per record.

        The same keys, rows and values as :meth:`_encode_rows`, for the records it takes:
        every record has the same feature names.
        """
        columns = self._columns(records)
        if columns is None:
            return None
        names = list(records[0].features)
        by_name = dict(zip(names, columns, strict=True))
        if any(part not in by_name for cross in self.crosses for part in cross):
            return None
        rows = len(records)
        buckets = [np.full(rows, -1, dtype=np.int64)]  # -1: the bias
        weights = [np.ones(rows)]
        for name, column in zip(names, columns, strict=True):
            if name in self.numeric:
                buckets.append(np.full(rows, self._bucket(name, None), dtype=np.int64))
                weights.append(np.array([self._value(name, v) for v in column]))
            else:
                buckets.append(self._column_buckets((name,), column))
                weights.append(np.ones(rows))
        for cross in self.crosses:
            combos = list(zip(*(by_name[part] for part in cross), strict=True))
            buckets.append(self._column_buckets(cross, combos))
            weights.append(np.ones(rows))
        table = np.stack(buckets, axis=1)
        values = np.stack(weights, axis=1)
        keep = _first_in_row(table, values)
        buckets_used, inverse = np.unique(table, return_inverse=True)
        return SparseBatch(
            keys=self._keys(buckets_used.tolist()),
            indices=inverse.reshape(table.shape)[keep].astype(np.intp),
            values=values[keep],
            indptr=np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.intp),
            labels=batch_labels(records),
        )

    def _keys(self, buckets: list[int]) -> list[bytes]:
        """The keys of ``buckets`` (-1: the bias), each made once and remembered."""
        memo = self._key_of
        found = [memo.get(bucket) for bucket in buckets]
        if None in found:
            prefix = self.name.encode() + b":"
            if len(memo) >= MAX_CACHED:
                memo.clear()
            for i, key in enumerate(found):
                if key is None:
                    bucket = buckets[i]
                    key = prefix + (b"%d" % bucket if bucket >= 0 else BIAS.encode())
                    memo[bucket] = found[i] = key
        return found  # type: ignore[return-value]

    def _column_buckets(self, names: tuple[str, ...], column: Sequence[object]) -> np.ndarray:
        """Buckets of one column of categorical values (a cross: tuples of them), each
        distinct one hashed once.

        Only strings (tuples of strings) are remembered: equal values of other types (1,
        1.0, True) hash apart, and no number equals a string, so a hit is always right."""
        memo = self._strings.setdefault(names, {})
        found = list(map(memo.get, column))
        if None in found:
            if len(memo) >= MAX_CACHED:
                memo.clear()
            for i, bucket in enumerate(found):
                if bucket is None:
                    value = column[i]
                    hit = memo.get(value)  # a value new to this batch, met again in it
                    if hit is not None:
                        found[i] = hit
                        continue
                    if len(names) == 1:
                        bucket = found[i] = hash_feature(names[0], value, self.buckets)
                        strings = type(value) is str
                    else:
                        pairs = list(zip(names, value, strict=True))
                        bucket = found[i] = hash_cross(pairs, self.buckets)
                        strings = all(type(part) is str for part in value)
                    if strings:
                        memo[value] = bucket
        return np.array(found, dtype=np.int64)

    def _encode_rows(self, records: Sequence[TrainingRecord]) -> SparseBatch:
        positions: dict[int | str, int] = {BIAS: 0}
        slot_of = positions.setdefault
        indices: list[int] = []
        values: list[float] = []
        indptr = [0]
        numeric, crosses = self.numeric, self.crosses
        for record in records:
            features = record.features
            slots, weights = [0], [1.0]
            for item in features.items():
                if numeric and item[0] in numeric:
                    bucket, weight = self._bucket(*item), self._value(*item)
                else:
                    bucket, weight = self._feature(item), 1.0
                slots.append(slot_of(bucket, len(positions)))
                weights.append(weight)
            for index, cross in enumerate(crosses):
                try:
                    parts = [features[part] for part in cross]
                except KeyError:
                    continue
                slots.append(slot_of(self._cross(index, parts), len(positions)))
                weights.append(1.0)
            if len(set(slots)) != len(slots):
                slots, weights = _merge(slots, weights)
            indices += slots
            values += weights
            indptr.append(len(indices))
        prefix = self.name.encode() + b":"
        return SparseBatch(
            keys=[
                prefix + (b"%d" % bucket if isinstance(bucket, int) else bucket.encode())
                for bucket in positions
            ],
            indices=np.array(indices, dtype=np.intp),
            values=np.array(values, dtype=np.float64),
            indptr=np.array(indptr, dtype=np.intp),
            labels=batch_labels(records),
        )


def _first_in_row(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which cells of ``table`` (a row of buckets per record) are the first of their bucket
    in their row; a later one's value is added to the first's in ``values`` (as
    :func:`_merge` does for one record)."""
    keep = np.ones(table.shape, dtype=bool)
    ordered = np.sort(table, axis=1)
    for r in np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1)).tolist():
        first: dict[int, int] = {}
        for c, bucket in enumerate(table[r].tolist()):
            if bucket in first:
                values[r, first[bucket]] += values[r, c]
                keep[r, c] = False
            else:
                first[bucket] = c
    return keep


def _merge(slots: list[int], weights: list[float]) -> tuple[list[int], list[float]]:
    """Features of one record that share a bucket, summed into one position."""
    row: dict[int, float] = {}
    for slot, weight in zip(slots, weights, strict=True):
        row[slot] = row.get(slot, 0.0) + weight
    return list(row), list(row.values())


def make_hasher(
    buckets: int, crosses: Collection[Sequence[str]], numeric: Collection[str]
) -> FeatureHasher:
    """A hasher for parameter ``w`` from a model's hyper-parameters."""
    return FeatureHasher(
        buckets=buckets,
        crosses=tuple(tuple(cross) for cross in crosses),
        numeric=frozenset(numeric),
    )
