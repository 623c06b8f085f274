"""Online standardisation of the numeric features of the hashed linear models.

A numeric feature carries its raw value, so one measured in thousands takes steps a
thousand times larger than one measured in units, and a feature far from zero needs the
bias to undo its mean; River users put a ``StandardScaler`` before ``LogisticRegression``
for that reason. :class:`NumericScaler` does the same inside the model: each numeric value
``x`` is replaced by ``(x - mean) / std`` over the labelled records learned before it.

The running moments ``(count, Σx, Σx²)`` of each numeric feature are a parameter of the
model, ``moments:<bucket>`` (``bucket`` is the feature's bucket of ``w``), kept by the
shards with rule ``add``: sums, so pushes from any number of workers merge exactly, and the
moments survive restarts and are exported with the weights. A mini-batch pulls them once
and computes, by cumulative sums over its records in order, the moments every record
would have seen one record at a time: the scaling does not depend on the batch size.

A record is scaled by the moments of the records before it (its own label takes no part in
its prediction); a feature seen fewer than twice, or always with one value, scales to 0,
as River's scaler does. Only labelled records add to the moments: a record predicted only
is not learned from, in the moments as in the weights.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from kafka_ps.agents.api import ParamSpec
from kafka_ps.agents.models.sparse import FeatureHasher, SparseBatch
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import Add

MOMENTS = "moments"
#: A variance below this share of the mean square is rounding: the feature is constant.
TINY = 1e-12


@dataclass(frozen=True)
class Scaled:
    """A mini-batch with its numeric values standardised, and what it adds to the moments.

    Parameters
    ----------
    batch
        The mini-batch, numeric values replaced by their standardised values.
    keys
        The moments keys the mini-batch adds to.
    deltas
        ``(len(keys), 1, 3)``: the count, sum and sum of squares each key gains.
    """

    batch: SparseBatch
    keys: list[bytes]
    deltas: np.ndarray


class NumericScaler:
    """Standardises the numeric features of a :class:`FeatureHasher`'s mini-batches.

    Parameters
    ----------
    hasher
        The model's hasher; every name in ``numeric`` must be one of its numeric features.
    numeric
        The numeric features to standardise, not empty. Two of them in one bucket could not
        be told apart, so that raises ``ValueError`` (more ``buckets`` fix it).
    """

    def __init__(self, hasher: FeatureHasher, numeric: Collection[str]) -> None:
        names = sorted(numeric)
        if not names:
            raise ValueError("a scaler needs at least one numeric feature")
        self.weight_keys = [hasher.feature_key(name) for name in names]
        if len(set(self.weight_keys)) != len(names):
            raise ValueError(
                f"numeric features {names} share hash buckets of {hasher.buckets}; "
                "raise buckets so that each has its own"
            )
        # The weight's index, its bucket, after the parameter name.
        self.keys = [param_key(MOMENTS, int(key.partition(b":")[2])) for key in self.weight_keys]
        self.spec = ParamSpec(MOMENTS, (3,), Add())

    def scale(self, batch: SparseBatch, moments: np.ndarray) -> Scaled:
        """Standardise ``batch``'s numeric values by the pulled ``moments`` (the value slot
        of every key of :attr:`keys`, ``(len(keys), 3)``) and the batch's earlier records."""
        position = {key: p for p, key in enumerate(batch.keys)}
        present = [j for j, key in enumerate(self.weight_keys) if key in position]
        rows = len(batch)
        # Which numeric feature (column j) each stored value is, -1 for any other.
        feature_of = np.full(len(batch.keys), -1, dtype=np.intp)
        feature_of[[position[self.weight_keys[j]] for j in present]] = present
        entry_feature = feature_of[batch.indices]
        entries = np.flatnonzero(entry_feature >= 0)
        entry_row = np.repeat(np.arange(rows), np.diff(batch.indptr))[entries]
        columns = entry_feature[entries]

        # Per record and feature: the value's count, sum and square, from labelled records.
        x = batch.values[entries]
        learned = ~np.isnan(batch.labels[entry_row])
        gained = np.zeros((rows, len(self.keys), 3))
        gained[entry_row, columns] = np.stack(
            [learned.astype(np.float64), np.where(learned, x, 0.0), np.where(learned, x * x, 0.0)],
            axis=1,
        )
        # The moments each record sees: the pulled ones plus the batch's records before it.
        seen = moments[None] + np.cumsum(gained, axis=0) - gained
        count, total, squares = (seen[entry_row, columns, i] for i in range(3))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total / count
            variance = squares / count - mean * mean
            # Rounding leaves a constant feature a variance of about 1e-16 of its square.
            spread = variance > TINY * squares / count
            scaled = np.where((count >= 2) & spread, (x - mean) / np.sqrt(variance), 0.0)
        values = batch.values.copy()
        values[entries] = scaled
        deltas = gained.sum(axis=0)
        changed = np.flatnonzero(deltas[:, 0])
        return Scaled(
            replace(batch, values=values),
            [self.keys[j] for j in changed.tolist()],
            deltas[changed][:, None, :],
        )
