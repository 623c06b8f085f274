"""A server shard's logic over its parameter table: answer pulls, apply pushes.

The table is any mapping of key -> encoded :class:`~tables.codec.ParamRecord` (a Faust
RocksDB table in a server process, a dict in tests). Parameters are created lazily:
a pull of a key never pushed is answered with ``param_init(key)`` and nothing is stored.

Exactly-once application under at-least-once delivery: every stored record keeps the
shard-topic offset of the last push applied to it. One partition feeds a shard, so a
push replayed after a crash (offset <= the stored one) is skipped for that key, and its
stored value is written again in case the crash lost the changelog record.

A push's keys are grouped by parameter and, for element-wise rules, stacked and updated
in one vectorised call: per-key Python work was most of a shard's time.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from tables.codec import decode_batch, decode_record, encode_batch
from tables.params import ParamRegistry, ParamSpec, UnknownParameterError
from tables.update_rules import BadDeltaError


class RejectedPush(ValueError):
    """A push that must not reach the model; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def check_delta_size(key: bytes, delta: np.ndarray, shape: tuple[int, ...]) -> None:
    if delta.size != math.prod(shape):
        raise RejectedPush("wrong_shape", f"{key!r}: {delta.size} values, expected {shape}")


@dataclass(frozen=True)
class PushResult:
    #: (key, encoded record) for every key written.
    written: list[tuple[bytes, bytes]]
    applied: int
    skipped: int


class Shard:
    def __init__(self, table: MutableMapping[bytes, bytes], registry: ParamRegistry) -> None:
        self.table = table
        self.registry = registry

    def _stored(self, key: bytes) -> bytes | None:
        """One lookup: ``Mapping.get`` on a Faust table asks RocksDB twice."""
        try:
            return self.table[key]
        except KeyError:
            return None

    def _group(self, keys: Sequence[bytes]) -> dict[str, tuple[ParamSpec, list[int]]]:
        groups: dict[str, tuple[ParamSpec, list[int]]] = {}
        for i, key in enumerate(keys):
            name = key[: key.rfind(b":")].decode(errors="replace")
            group = groups.get(name)
            if group is None:
                group = groups[name] = (self.registry.spec_for(key), [])
            group[1].append(i)
        return groups

    def _load(self, spec: ParamSpec, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Stored or initial slots ``(m, n_slots, *shape)`` and stored offsets (-1: none)."""
        stored = [self._stored(key) for key in keys]
        present = [i for i, blob in enumerate(stored) if blob is not None]
        slots = np.empty((len(keys), *spec.slot_shape), dtype=spec.dtype)
        offsets = np.full(len(keys), -1, dtype=np.int64)
        blobs = [stored[i] for i in present]
        batch = decode_batch(blobs, spec.n_slots, spec.shape, spec.dtype) if blobs else None
        if batch is not None:
            slots[present], offsets[present] = batch
        else:
            for i in present:
                record = decode_record(stored[i])
                slots[i], offsets[i] = np.stack(record.slots), record.offset
        for i, blob in enumerate(stored):
            if blob is None:
                slots[i] = np.stack(spec.initial_slots(keys[i]))
        return slots, offsets

    def pull(self, keys: Sequence[bytes]) -> list[np.ndarray]:
        """Per key, all slots stacked: shape ``(n_slots, *shape)``."""
        values: list[np.ndarray] = [np.empty(0)] * len(keys)
        for spec, indices in self._group(keys).values():
            slots, _ = self._load(spec, [keys[i] for i in indices])
            for row, i in enumerate(indices):
                values[i] = slots[row]
        return values

    def validate(
        self, keys: Sequence[bytes], deltas: Sequence[np.ndarray]
    ) -> dict[str, tuple[ParamSpec, list[int]]]:
        """Check a whole push before any of it is applied, so a bad push changes nothing."""
        if len(keys) != len(deltas):
            raise RejectedPush("malformed", f"{len(deltas)} deltas for {len(keys)} keys")
        if len(set(keys)) != len(keys):
            raise RejectedPush("malformed", "a push names a key twice")
        try:
            groups = self._group(keys)
        except UnknownParameterError as error:
            raise RejectedPush("unknown_parameter", str(error)) from None
        for spec, indices in groups.values():
            shape = spec.delta_shape
            for i in indices:
                check_delta_size(keys[i], deltas[i], shape)
        if deltas and not np.isfinite(np.concatenate([np.ravel(d) for d in deltas])).all():
            raise RejectedPush("non_finite_delta", "a delta has NaN or Inf")
        return groups

    def push(self, keys: Sequence[bytes], deltas: Sequence[np.ndarray], offset: int) -> PushResult:
        """Apply one push read at shard-topic ``offset``; raise :class:`RejectedPush` if bad."""
        groups = self.validate(keys, deltas)
        written: list[tuple[bytes, bytes]] = []
        skipped = 0
        for spec, indices in groups.values():
            group_keys = [keys[i] for i in indices]
            slots, offsets = self._load(spec, group_keys)
            fresh = offsets < offset
            for row in np.flatnonzero(~fresh):
                written.append((group_keys[row], self.table[group_keys[row]]))
            skipped += int((~fresh).sum())
            rows = np.flatnonzero(fresh)
            if not len(rows):
                continue
            delta = np.stack([deltas[indices[row]].reshape(spec.delta_shape) for row in rows])
            new = self._apply(spec, slots[rows], delta.astype(spec.dtype, copy=False))
            encoded = encode_batch(new, offset, spec.rule.rule_id)
            written += [(group_keys[row], blob) for row, blob in zip(rows, encoded, strict=True)]
        for key, blob in written:
            self.table[key] = blob
        return PushResult(written, len(written) - skipped, skipped)

    @staticmethod
    def _apply(spec: ParamSpec, slots: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """New slots ``(m, n_slots, *shape)`` from ``m`` stacked deltas."""
        try:
            if spec.rule.elementwise:
                new = spec.rule.apply(tuple(np.moveaxis(slots, 1, 0)), np.moveaxis(delta, 1, 0))
                return np.stack(new, axis=1)
            return np.stack(
                [np.stack(spec.rule.apply(tuple(s), d)) for s, d in zip(slots, delta, strict=True)]
            )
        except BadDeltaError as error:
            raise RejectedPush("bad_delta", str(error)) from None
