"""Parameter declarations: what every key of a named parameter looks like on its shard."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.init import ParamInit, Zeros
from kafka_ps.tables.keys import parse_key
from kafka_ps.tables.update_rules import UpdateRule


@dataclass(frozen=True)
class ParamSpec:
    """One named parameter: every key ``<name>:<index>`` has this shape, init and rule.

    ``init`` is the user's ``param_init(key) -> value`` and ``rule.apply`` their
    ``param_update(value, delta) -> value``; both run on the shard that owns the key.

    Parameters
    ----------
    name
        The parameter's name, the part of each key before ``:``; unique within a job.
    shape
        The shape of every key's value (``()`` for one scalar per key).
    rule
        The server-side :class:`~tables.update_rules.UpdateRule` folding pushes into the
        value (and its extra slots, such as AdaGrad's accumulator).
    init
        Creates a key's value on its first use; the default :class:`~tables.init.Zeros`
        starts every key at zero.
    dtype
        The dtype of the value and of every slot; float64 by default.
    """

    name: str
    shape: tuple[int, ...]
    rule: UpdateRule
    init: ParamInit = field(default_factory=Zeros)
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))

    @property
    def n_slots(self) -> int:
        return 1 + self.rule.n_state

    @property
    def slot_shape(self) -> tuple[int, ...]:
        """Shape of a pulled value: all slots stacked."""
        return (self.n_slots, *self.shape)

    @property
    def delta_shape(self) -> tuple[int, ...]:
        return (self.rule.delta_slots, *self.shape)

    def initial_slots(self, key: bytes) -> tuple[np.ndarray, ...]:
        return self.rule.init_state(self.init(key, self.shape, self.dtype))


#: Keys a registry remembers per parameter as checked (:meth:`ParamRegistry.all_of`).
MAX_KEYS_SEEN = 1 << 21


class UnknownParameterError(KafkaPsError, KeyError):
    """A key names a parameter the job does not declare."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown parameter"


class ParamRegistry:
    """The parameters of a job, found by the name part of a key.

    Parameters
    ----------
    specs
        The job's parameters; their names must be unique (``ValueError`` otherwise).
    """

    def __init__(self, specs: Sequence[ParamSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        if len(self.specs) != len(specs):
            raise ValueError("parameter names must be unique")
        self._keys: dict[str, set[bytes]] = {}

    def all_of(self, name: str, keys: Iterable[bytes]) -> bool:
        """Whether every one of ``keys`` is a key of parameter ``name``.

        Keys found so are remembered, and only the others are checked: checking a key
        again, for every mini-batch that touches it, would cost more than the pull.
        """
        seen = self._keys.setdefault(name, set())
        new = set(keys).difference(seen)
        if not new:
            return True
        prefix = name.encode() + b":"
        cut = len(prefix)
        # An index holds no ":", so a key of this parameter has its last ":" at the prefix.
        if not all(
            len(key) > cut and key.startswith(prefix) and key.rfind(b":") == cut - 1 for key in new
        ):
            return False
        if len(seen) + len(new) > MAX_KEYS_SEEN:
            seen.clear()
        seen.update(new)
        return True

    def spec_for(self, key: bytes) -> ParamSpec:
        try:
            name, _ = parse_key(key)
        except ValueError as error:
            raise UnknownParameterError(str(error)) from error
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownParameterError(f"no parameter named {name!r}")
        return spec
