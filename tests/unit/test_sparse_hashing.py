"""Feature hashing remembers buckets per distinct feature, never confusing equal values of
different types, and gives the keys the documented hash says."""

from __future__ import annotations

import random

import pytest

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.models.sparse import FeatureHasher
from kafka_ps.tables.keys import hash_cross, hash_feature, param_key


def test_equal_values_of_different_types_keep_their_own_buckets() -> None:
    hasher = FeatureHasher(buckets=2**20, crosses=(("a", "b"),))
    records = [
        TrainingRecord(features={"a": value, "b": "x"}, label=1.0)
        for value in (1, 1.0, "1", 1, 1.0)
    ]
    for _ in range(2):  # the second pass reads every bucket from memory
        batch = hasher.encode(records)
        keys_of = [
            {batch.keys[j] for j in batch.indices[batch.indptr[r] : batch.indptr[r + 1]]}
            for r in range(len(records))
        ]
        for record, keys in zip(records, keys_of, strict=True):
            value = record.features["a"]
            assert keys == {
                param_key("w", "bias"),
                param_key("w", hash_feature("a", value, 2**20)),
                param_key("w", hash_feature("b", "x", 2**20)),
                param_key("w", hash_cross([("a", value), ("b", "x")], 2**20)),
            }
    assert keys_of[0] != keys_of[1] != keys_of[2]


def _rows(batch: object) -> list[list[tuple[bytes, float]]]:
    return [
        [(batch.keys[j], v) for j, v in zip(*batch.row(r), strict=True)]  # type: ignore[attr-defined]
        for r in range(len(batch))  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("buckets", [2**20, 8])
def test_a_mini_batch_encoded_by_column_has_the_rows_of_one_encoded_record_by_record(
    buckets: int,
) -> None:
    """Eight buckets make features of one record share buckets: they are summed alike."""
    hasher = FeatureHasher(buckets=buckets, crosses=(("a", "b"), ("b", "c")), numeric={"x"})
    rng = random.Random(5)
    records = [
        TrainingRecord(
            features={
                "a": rng.choice("pqrs"),
                "x": rng.uniform(-2, 2),
                "b": str(i % 7),
                "c": rng.choice(["z", 1, 1.0, "1"]),  # equal values of other types
            },
            label=float(i % 2),
        )
        for i in range(300)
    ]
    by_column = hasher._encode_columns(records)
    assert by_column is not None
    by_row = hasher._encode_rows(records)
    assert _rows(by_column) == _rows(by_row)
    assert sorted(by_column.keys) == sorted(by_row.keys)
    assert len(set(by_column.keys)) == len(by_column.keys)


def test_mixed_records_are_encoded_record_by_record() -> None:
    hasher = FeatureHasher(crosses=(("a", "b"),))
    mixed = [
        TrainingRecord(features={"a": "1", "b": "x"}),
        TrainingRecord(features={"a": 1, "b": "x"}),  # a number: its own bucket
        TrainingRecord(features={"b": "y"}),  # no cross
    ]
    assert hasher._encode_columns(mixed) is None
    assert hasher._encode_columns(mixed[:1]) is not None
    assert hasher._encode_columns(mixed[2:]) is None  # a cross it lacks
    assert _rows(hasher.encode(mixed)) == _rows(hasher._encode_rows(mixed))
