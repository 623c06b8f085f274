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

import numpy as np

from agents.api import TrainingRecord
from agents.models.hyper import positive_int
from tables.keys import hash_cross, hash_feature, param_key, stable_hash

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
    """Turns records into a :class:`SparseBatch` over keys of parameter ``name``."""

    name: str = "w"
    buckets: int = 2**20
    crosses: tuple[tuple[str, ...], ...] = ()
    numeric: frozenset[str] = frozenset()
    #: Bucket of each categorical feature (and cross) seen: hashing a distinct feature
    #: once, not once per record, is most of what encoding costs. Cleared when full.
    _buckets: dict[tuple[object, ...], int] = field(
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

    def _cached(self, name: str, value: Feature) -> int:
        # The value's type is part of the key: 1, 1.0 and True hash to different buckets.
        memo = (name, type(value), value)
        bucket = self._buckets.get(memo)
        if bucket is None:
            if len(self._buckets) >= MAX_CACHED:
                self._buckets.clear()
            bucket = self._buckets[memo] = self._bucket(name, value)
        return bucket

    def _cross(self, features: dict[str, Feature], cross: tuple[str, ...]) -> int:
        parts = tuple((part, type(features[part]), features[part]) for part in cross)
        bucket = self._buckets.get(parts)
        if bucket is None:
            if len(self._buckets) >= MAX_CACHED:
                self._buckets.clear()
            pairs = [(part, features[part]) for part in cross]
            bucket = self._buckets[parts] = hash_cross(pairs, self.buckets)
        return bucket

    def encode(self, records: Sequence[TrainingRecord]) -> SparseBatch:
        positions: dict[int | str, int] = {BIAS: 0}
        indices: list[int] = []
        values: list[float] = []
        indptr = [0]
        numeric = self.numeric
        for record in records:
            row: dict[int, float] = {0: 1.0}
            features = record.features
            for name, value in features.items():
                if name in numeric:
                    bucket, number = self._bucket(name, value), self._value(name, value)
                else:
                    bucket, number = self._cached(name, value), 1.0
                slot = positions.setdefault(bucket, len(positions))
                row[slot] = row.get(slot, 0.0) + number
            for cross in self.crosses:
                if all(part in features for part in cross):
                    slot = positions.setdefault(self._cross(features, cross), len(positions))
                    row[slot] = row.get(slot, 0.0) + 1.0
            indices.extend(row)
            values.extend(row.values())
            indptr.append(len(indices))
        return SparseBatch(
            keys=[param_key(self.name, bucket) for bucket in positions],
            indices=np.array(indices, dtype=np.intp),
            values=np.array(values, dtype=np.float64),
            indptr=np.array(indptr, dtype=np.intp),
            labels=batch_labels(records),
        )


def make_hasher(
    buckets: int, crosses: Collection[Sequence[str]], numeric: Collection[str]
) -> FeatureHasher:
    """A hasher for parameter ``w`` from a model's hyper-parameters."""
    return FeatureHasher(
        buckets=buckets,
        crosses=tuple(tuple(cross) for cross in crosses),
        numeric=frozenset(numeric),
    )
