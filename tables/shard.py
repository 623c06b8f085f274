"""A server shard's logic: answer pulls and apply pushes on its pages of parameters.

The shard works on in-memory :class:`~tables.pages.Slab` pages (a write-back cache);
:meth:`Shard.flush` writes the pages changed since the last flush to the table (any
mapping: a Faust RocksDB table in a server process, a dict in tests) and
:meth:`Shard.load` reads them back. Parameters are created lazily: a pull of a key never
pushed is answered with ``param_init(key)`` and nothing is stored.

Exactly-once application under at-least-once delivery: every page keeps the shard-topic
offset of the last push applied to it (its stamp). One partition feeds a shard, so a
push replayed after a crash (offset <= the stamp) is skipped for that page. The server
acknowledges a push only once a flush has written its pages, so what a crash loses is
exactly what the replay applies again.

A push's keys are grouped by parameter and updated in one vectorised call per parameter:
per-key Python work was most of a shard's time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from kafka_ps.tables.dead_letters import DeadLetterReason, RejectedError
from kafka_ps.tables.pages import DEFAULT_PAGE_SIZE, Slab, flush_slab, load_slab
from kafka_ps.tables.params import ParamRegistry, ParamSpec, UnknownParameterError
from kafka_ps.tables.update_rules import BadDeltaError


class RejectedPush(RejectedError):
    """A push that must not reach the model (see :class:`RejectedError`)."""


def check_delta_size(key: bytes, delta: np.ndarray, shape: tuple[int, ...]) -> None:
    if delta.size != math.prod(shape):
        raise RejectedPush(
            DeadLetterReason.WRONG_SHAPE, f"{key!r}: {delta.size} values, expected {shape}"
        )


@dataclass(frozen=True)
class PushResult:
    """What one :meth:`Shard.push` did with its keys.

    Parameters
    ----------
    applied
        Keys whose delta was folded into the stored value.
    skipped
        Keys whose page had already seen this push (a replay after a crash): left as they
        were.
    """

    applied: int
    skipped: int


@dataclass(frozen=True)
class FlushResult:
    """The pages a flush wrote to the table, and their bytes.

    Parameters
    ----------
    pages
        Pages written to the table.
    bytes
        Their encoded size in bytes.
    """

    pages: int
    bytes: int


class Shard:
    """One shard partition's parameters.

    Parameters
    ----------
    registry
        The job's parameters.
    shard
        The shard's number, part of its page keys.
    page_size
        Rows per page of each parameter.
    """

    def __init__(
        self, registry: ParamRegistry, shard: int = 0, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self.registry = registry
        self.shard = shard
        self.page_size = page_size
        self.slabs: dict[str, Slab] = {}

    def slab(self, spec: ParamSpec) -> Slab:
        slab = self.slabs.get(spec.name)
        if slab is None:
            slab = self.slabs[spec.name] = Slab(spec, self.page_size)
        return slab

    def load(self, table: Mapping[bytes, bytes]) -> None:
        """Read every parameter's pages of this shard from ``table``."""
        self.slabs = {
            spec.name: load_slab(table, self.shard, spec, self.page_size)
            for spec in self.registry.specs.values()
        }

    def flush(self, table: MutableMapping[bytes, bytes]) -> FlushResult:
        """Write the pages changed since the last flush."""
        written = [flush_slab(table, self.shard, slab) for slab in self.slabs.values()]
        return FlushResult(sum(pages for pages, _ in written), sum(size for _, size in written))

    def _group(self, keys: Sequence[bytes]) -> dict[str, tuple[ParamSpec, list[int]]]:
        specs = self.registry.specs
        if len(specs) == 1:
            (spec,) = specs.values()
            if self.registry.all_of(spec.name, keys):
                return {spec.name: (spec, list(range(len(keys))))}
        groups: dict[str, tuple[ParamSpec, list[int]]] = {}
        for i, key in enumerate(keys):
            name = key[: key.rfind(b":")].decode(errors="replace")
            group = groups.get(name)
            if group is None:
                group = groups[name] = (self.registry.spec_for(key), [])
            group[1].append(i)
        return groups

    def pull(self, keys: Sequence[bytes]) -> Sequence[np.ndarray]:
        """Per key, all slots stacked: shape ``(n_slots, *shape)``; one array of a row per
        key when the keys are of one parameter."""
        groups = self._group(keys)
        if len(groups) == 1:
            ((spec, indices),) = groups.values()
            if len(indices) == len(keys):
                return self.slab(spec).values(keys)
        values: list[np.ndarray] = [np.empty(0)] * len(keys)
        for spec, indices in groups.values():
            slots = self.slab(spec).values([keys[i] for i in indices])
            for row, i in enumerate(indices):
                values[i] = slots[row]
        return values

    def validate(
        self, keys: Sequence[bytes], deltas: Sequence[np.ndarray]
    ) -> dict[str, tuple[ParamSpec, list[int]]]:
        """Check a whole push before any of it is applied, so a bad push changes nothing."""
        if len(keys) != len(deltas):
            raise RejectedPush(
                DeadLetterReason.MALFORMED, f"{len(deltas)} deltas for {len(keys)} keys"
            )
        if len(set(keys)) != len(keys):
            raise RejectedPush(DeadLetterReason.MALFORMED, "a push names a key twice")
        try:
            groups = self._group(keys)
        except UnknownParameterError as error:
            raise RejectedPush(DeadLetterReason.UNKNOWN_PARAMETER, str(error)) from None
        for spec, indices in groups.values():
            size = math.prod(spec.delta_shape)
            if isinstance(deltas, np.ndarray) and deltas.ndim == 2 and deltas.shape[1] == size:
                continue
            for i in indices:
                check_delta_size(keys[i], deltas[i], spec.delta_shape)
        if len(deltas) and not _all_finite(deltas):
            raise RejectedPush(DeadLetterReason.NON_FINITE_DELTA, "a delta has NaN or Inf")
        return groups

    def push(self, keys: Sequence[bytes], deltas: Sequence[np.ndarray], offset: int) -> PushResult:
        """Apply one push read at shard-topic ``offset``; raise :class:`RejectedPush` if bad."""
        groups = self.validate(keys, deltas)
        applied = skipped = 0
        for spec, indices in groups.values():
            slab = self.slab(spec)
            group_keys = keys if len(indices) == len(keys) else [keys[i] for i in indices]
            rows = slab.add(group_keys)
            fresh = slab.fresh(rows, offset)
            slab.touch(rows[~fresh])
            skipped += int((~fresh).sum())
            chosen = np.flatnonzero(fresh)
            if not len(chosen):
                continue
            delta = _stack(deltas, [indices[i] for i in chosen.tolist()], spec.delta_shape)
            new = apply_deltas(spec, slab.slots[rows[chosen]], delta.astype(spec.dtype, copy=False))
            slab.write(rows[chosen], new, offset)
            applied += len(chosen)
        return PushResult(applied, skipped)


def apply_deltas(spec: ParamSpec, slots: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """New slots ``(m, n_slots, *shape)`` of ``m`` keys from their stacked deltas, by the
    parameter's rule; :class:`RejectedPush` if the rule refuses a delta."""
    try:
        if spec.rule.elementwise:
            new = spec.rule.apply(tuple(np.moveaxis(slots, 1, 0)), np.moveaxis(delta, 1, 0))
            return np.stack(new, axis=1)
        return np.stack(
            [np.stack(spec.rule.apply(tuple(s), d)) for s, d in zip(slots, delta, strict=True)]
        )
    except BadDeltaError as error:
        raise RejectedPush(DeadLetterReason.BAD_DELTA, str(error)) from None


def _all_finite(deltas: Sequence[np.ndarray]) -> bool:
    if isinstance(deltas, np.ndarray):
        return bool(np.isfinite(deltas).all())
    return bool(np.isfinite(np.concatenate([np.ravel(d) for d in deltas])).all())


def _stack(deltas: Sequence[np.ndarray], indices: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Deltas ``indices`` as one ``(m, *shape)`` array."""
    if isinstance(deltas, np.ndarray):
        return deltas[indices].reshape(len(indices), *shape)
    return np.stack([np.reshape(deltas[i], shape) for i in indices])
