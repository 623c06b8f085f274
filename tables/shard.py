"""A server shard's logic over its parameter table: answer pulls, apply pushes.

The table is any mapping of key -> encoded :class:`~tables.codec.ParamRecord` (a Faust
RocksDB table in a worker process, a dict in tests). Parameters are created lazily:
a pull of a key never pushed is answered with ``param_init(key)`` and nothing is stored.

Exactly-once application under at-least-once delivery: every stored record keeps the
shard-topic offset of the last push applied to it. One partition feeds a shard, so a
push replayed after a crash (offset <= the stored one) is skipped for that key, and its
stored value is written again in case the crash lost the changelog record.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from tables.codec import ParamRecord, decode_record, encode_record
from tables.params import ParamRegistry, ParamSpec, UnknownParameterError
from tables.update_rules import BadDeltaError


class RejectedPush(ValueError):
    """A push that must not reach the model; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class PushResult:
    #: (key, encoded record) for every key written, in push order.
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

    def pull(self, keys: Sequence[bytes]) -> list[np.ndarray]:
        """Per key, all slots stacked: shape ``(n_slots, *shape)``."""
        values = []
        for key in keys:
            spec = self.registry.spec_for(key)
            stored = self._stored(key)
            slots = decode_record(stored).slots if stored is not None else spec.initial_slots(key)
            values.append(np.stack(slots))
        return values

    def validate(self, keys: Sequence[bytes], deltas: Sequence[np.ndarray]) -> list[ParamSpec]:
        """Check a whole push before any of it is applied, so a bad push changes nothing."""
        if len(keys) != len(deltas):
            raise RejectedPush("malformed", f"{len(deltas)} deltas for {len(keys)} keys")
        if len(set(keys)) != len(keys):
            raise RejectedPush("malformed", "a push names a key twice")
        specs = []
        for key, delta in zip(keys, deltas, strict=True):
            try:
                spec = self.registry.spec_for(key)
            except UnknownParameterError as error:
                raise RejectedPush("unknown_parameter", str(error)) from None
            if delta.size != int(np.prod(spec.delta_shape)):
                raise RejectedPush(
                    "wrong_shape", f"{key!r}: {delta.size} values, expected {spec.delta_shape}"
                )
            if not np.all(np.isfinite(delta)):
                raise RejectedPush("non_finite", f"{key!r}: delta has NaN or Inf")
            specs.append(spec)
        return specs

    def push(self, keys: Sequence[bytes], deltas: Sequence[np.ndarray], offset: int) -> PushResult:
        """Apply one push read at shard-topic ``offset``; raise :class:`RejectedPush` if bad."""
        specs = self.validate(keys, deltas)
        updates: list[tuple[bytes, bytes]] = []
        skipped = 0
        for key, delta, spec in zip(keys, deltas, specs, strict=True):
            stored = self._stored(key)
            record = decode_record(stored) if stored is not None else None
            if record is not None and record.offset >= offset:
                updates.append((key, stored))
                skipped += 1
                continue
            slots = record.slots if record is not None else spec.initial_slots(key)
            try:
                new = spec.rule.apply(slots, delta.reshape(spec.delta_shape).astype(spec.dtype))
            except BadDeltaError as error:
                raise RejectedPush("bad_delta", f"{key!r}: {error}") from None
            encoded = encode_record(ParamRecord(new, offset=offset, rule_id=spec.rule.rule_id))
            updates.append((key, encoded))
        for key, encoded in updates:
            self.table[key] = encoded
        return PushResult(updates, len(updates) - skipped, skipped)
