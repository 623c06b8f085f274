"""The shared frame of the linear models on hashed sparse features.

Every such model stores one weight per hashed feature in parameter ``w`` (shape ``(1,)``)
and handles a mini-batch the same way: encode the records (:class:`SparseBatch`), pull
the keys they touch once, let the model predict and learn, and push once the keys whose
delta is not zero. A subclass only says which update rule its shard applies and how it
learns (:meth:`HashedLinearModel.learn`). Numeric features are standardised online by
default (:mod:`agents.models.scaling`), with their moments in a second parameter.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Collection, Sequence

import numpy as np

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParamSpec,
    TrainingRecord,
)
from kafka_ps.agents.models.kernels import warm_up_soon
from kafka_ps.agents.models.scaling import NumericScaler
from kafka_ps.agents.models.sparse import SparseBatch, make_hasher
from kafka_ps.tables.update_rules import UpdateRule

#: Mini-batches a model keeps encoded between rows_to_pull and on_batch.
PLANNED = 4


class HashedLinearModel(BatchWorkerLogic):
    """A :class:`BatchWorkerLogic` over parameter ``w``, one weight per hashed feature.

    Subclasses check their own hyper-parameters first and then call ``__init__``, so that
    a bad value is reported in the order of the signature (``buckets`` and the rest last).

    Parameters
    ----------
    rule
        The server-side update rule of ``w``.
    buckets
        Hash buckets of parameter ``w`` (keys ``w:0`` to ``w:<buckets - 1>``, plus
        ``w:bias``), >= 1.
    crosses
        Feature crosses, each a non-empty sequence of feature names; a record holding all
        of them gets one extra categorical feature per cross.
    numeric
        Names of features that hash by name alone and carry their numeric value; every
        other feature is categorical (``name=value`` with value 1).
    standardize
        Whether numeric values are standardised online before the model sees them
        (:class:`~agents.models.scaling.NumericScaler`, parameter ``moments``).
    """

    def __init__(
        self,
        rule: UpdateRule,
        buckets: int,
        crosses: Collection[Sequence[str]],
        numeric: Collection[str],
        standardize: bool,
    ) -> None:
        self.hasher = make_hasher(buckets, crosses, numeric)
        #: Mini-batches whose keys a worker asked for, encoded, until they are learned.
        self._planned: list[tuple[Sequence[TrainingRecord], SparseBatch]] = []
        self.params: tuple[ParamSpec, ...] = (ParamSpec(self.hasher.name, (1,), rule),)
        self.scaler = NumericScaler(self.hasher, numeric) if numeric and standardize else None
        if self.scaler is not None:
            self.params += (self.scaler.spec,)

    def open(self) -> None:
        warm_up_soon()

    def rows_to_pull(self, records: Sequence[TrainingRecord]) -> Sequence[bytes]:
        batch = self.hasher.encode(records)
        # Kept for on_batch(records): a worker asks for the next mini-batch's keys while
        # the one before learns. A few at most, in case a planned one never comes.
        self._planned = [*self._planned[-(PLANNED - 1) :], (records, batch)]
        return batch.keys

    def _encoded(self, records: Sequence[TrainingRecord]) -> SparseBatch:
        """The records' batch: the one :meth:`rows_to_pull` encoded, or a new one."""
        for i, (planned, batch) in enumerate(self._planned):
            if planned is records:
                del self._planned[i]
                return batch
        return self.hasher.encode(records)

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        batch = self._encoded(records)
        scaled = None
        if self.scaler is None:
            pulled = await ps.pull_rows(batch.keys)
        else:
            # The weights first: their rows may have been pulled ahead (rows_to_pull).
            pulled, moments = await asyncio.gather(
                ps.pull_rows(batch.keys), ps.pull_rows(self.scaler.keys)
            )
            scaled = self.scaler.scale(batch, moments[:, 0])
            batch = scaled.batch
        delta = self.learn(records, batch, pulled[:, :, 0], ps)
        changed = np.flatnonzero(delta.reshape(len(batch.keys), -1).any(axis=1))
        if len(changed):
            rows = delta.reshape(len(batch.keys), *self.params[0].delta_shape)[changed]
            ps.push_rows([batch.keys[j] for j in changed.tolist()], rows)
        # After the weights, which go out as the rows they are (the client's fast path).
        if scaled is not None and scaled.keys:
            ps.push_rows(scaled.keys, scaled.deltas)

    @abstractmethod
    def learn(
        self,
        records: Sequence[TrainingRecord],
        batch: SparseBatch,
        state: np.ndarray,
        ps: BatchParameterServerClient,
    ) -> np.ndarray:
        """Output a prediction per record and learn from the mini-batch; return the deltas.

        ``state[j]`` holds the pulled slots of ``batch.keys[j]`` (the weight, then the
        rule's state). The result has one row per key, of the rule's ``delta_slots``
        numbers (or one number per key for a one-slot delta); all-zero rows are not pushed.
        """
