"""Feature hashing remembers buckets per distinct feature, never confusing equal values of
different types, and gives the keys the documented hash says."""

from __future__ import annotations

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
