"""Warm start: parameters begin from a saved model's values instead of their initialiser.

A warm start changes only what a key's *initial* value is, through the same lazy path
every parameter takes (:meth:`tables.params.ParamSpec.initial_slots`): a shard uses the
initial value only for a key it has no stored record of. So a warm value is never applied
twice and never overwrites a trained one. After a restart, or a table rebuilt from its
changelog, every key already pushed has its record, offset included, and keeps it; keys
never pushed still start from the same warm value, because the source does not change.

A saved model holds values only, not optimizer state. The rule derives the state from
the value with :meth:`~tables.update_rules.UpdateRule.init_state`, as for any initial
value: FTRL's ``z`` is chosen so that its weights equal the value, with ``n = 0``;
AdaGrad's sum starts at its initial accumulator; Adam's moments and step count at zero.
So the weights carry over exactly, and the per-coordinate learning rates begin again as
for a new key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.typing import DTypeLike

from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.init import ParamInit
from kafka_ps.tables.params import ParamRegistry, UnknownParameterError


class WarmStartError(KafkaPsError, ValueError):
    """A warm-start source that does not fit the job's parameters; the message says why."""


@dataclass(frozen=True, eq=False)
class WarmInit(ParamInit):
    """The saved value of a key when there is one, else the parameter's own initialiser.

    Parameters
    ----------
    values
        The saved model's values by key, as read by the warm start (value slot only).
    fallback
        The parameter's own initialiser, for keys the saved model does not hold.
    """

    values: Mapping[bytes, np.ndarray]
    fallback: ParamInit
    name: ClassVar[str] = "warm"

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        value = self.values.get(key)
        if value is None:
            return self.fallback(key, shape, dtype)
        return value.astype(dtype)


def warm_registry(registry: ParamRegistry, values: Mapping[bytes, np.ndarray]) -> ParamRegistry:
    """``registry`` with each parameter starting from ``values`` where they have its keys.

    Every value is checked first, so that a source from another model fails at start
    rather than at some key's first use: its keys must name declared parameters, with
    their exact shape, and hold finite numbers.
    """
    warm: dict[str, dict[bytes, np.ndarray]] = {name: {} for name in registry.specs}
    for key, value in values.items():
        try:
            spec = registry.spec_for(key)
        except UnknownParameterError as error:
            raise WarmStartError(f"{key!r}: {error}") from None
        value = np.asarray(value)
        if value.shape != spec.shape:
            raise WarmStartError(f"{key!r} has shape {value.shape}, the job's {spec.shape}")
        if value.dtype.kind not in "iuf":
            raise WarmStartError(f"{key!r} holds {value.dtype}, not numbers")
        if not np.isfinite(value).all():
            raise WarmStartError(f"{key!r} holds NaN or infinite values")
        warm[spec.name][key] = value.astype(spec.dtype)
    return ParamRegistry(
        [
            replace(spec, init=WarmInit(warm[name], spec.init)) if warm[name] else spec
            for name, spec in registry.specs.items()
        ]
    )
