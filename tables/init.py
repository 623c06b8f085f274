"""Parameter initialisers: the value a key has before its first push.

Random initialisers are seeded from ``stable_hash(key)`` and an optional global seed, so
every process, every restart and every replay creates the same initial value for the
same key without coordinating. The random bits come straight from numpy's PCG64 bit
generator, whose raw stream numpy keeps stable across releases, and are turned into
numbers here (rather than by ``Generator.normal``/``uniform``, whose algorithms numpy may
change), so an upgrade does not change initial values either.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from kafka_ps.tables.keys import stable_hash
from kafka_ps.tables.reals import is_finite_real


class ParamInit(ABC):
    """Creates the initial value of a parameter block from its key."""

    name: ClassVar[str]
    #: The same value for every key: a shard creates new keys in bulk from one value.
    same_for_every_key: ClassVar[bool] = False

    @abstractmethod
    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray: ...


def _float_dtype(dtype: DTypeLike, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"{name} initialisation needs a floating-point dtype, got {dtype}")
    return dtype


def _unit_uniform(key: bytes, seed: int, size: int) -> np.ndarray:
    """``size`` float64 numbers in ``[0, 1)``, determined by ``key`` and ``seed``."""
    entropy = np.random.SeedSequence([seed, stable_hash(key)])
    bits = np.random.PCG64(entropy).random_raw(size)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _check_scale(name: str, value: float) -> None:
    if not is_finite_real(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Zeros(ParamInit):
    """Every key starts at zero (the default initialiser; it takes no parameters)."""

    name: ClassVar[str] = "zeros"
    same_for_every_key: ClassVar[bool] = True

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        return np.zeros(tuple(shape), dtype=dtype)


@dataclass(frozen=True)
class Constant(ParamInit):
    """Every element of every key's value is ``c``.

    Parameters
    ----------
    c
        The value, a finite number (cast to the parameter's dtype).
    """

    c: float
    name: ClassVar[str] = "constant"
    same_for_every_key: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not is_finite_real(self.c):
            raise ValueError(f"c must be a finite number, got {self.c!r}")

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        return np.full(tuple(shape), self.c, dtype=dtype)


@dataclass(frozen=True)
class Normal(ParamInit):
    """``N(0, std²)`` by the Box-Muller transform of the key's uniform stream.

    Parameters
    ----------
    std
        Standard deviation of the values, a finite number >= 0 (0 gives zeros).
    seed
        Global seed, a non-negative int, mixed with ``stable_hash(key)``; the default 0 is
        fine unless two jobs (or two parameters whose keys coincide) must differ.
    """

    std: float
    seed: int = 0
    name: ClassVar[str] = "normal"

    def __post_init__(self) -> None:
        _check_scale("std", self.std)
        _check_seed(self.seed)

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        dtype = _float_dtype(dtype, self.name)
        shape = tuple(shape)
        size = math.prod(shape)
        u = _unit_uniform(key, self.seed, 2 * size)
        radius = np.sqrt(-2.0 * np.log1p(-u[:size]))  # 1 - u is in (0, 1]: no log(0).
        normal = radius * np.cos(2.0 * np.pi * u[size:])
        return (self.std * normal).astype(dtype).reshape(shape)


@dataclass(frozen=True)
class Uniform(ParamInit):
    """``U(-scale, scale)`` from the key's uniform stream.

    Parameters
    ----------
    scale
        Half-width of the interval, a finite number >= 0 (0 gives zeros).
    seed
        Global seed, a non-negative int, mixed with ``stable_hash(key)``, as for
        :class:`Normal`.
    """

    scale: float
    seed: int = 0
    name: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        _check_scale("scale", self.scale)
        _check_seed(self.seed)

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        dtype = _float_dtype(dtype, self.name)
        shape = tuple(shape)
        u = _unit_uniform(key, self.seed, math.prod(shape))
        return (self.scale * (2.0 * u - 1.0)).astype(dtype).reshape(shape)


@dataclass(frozen=True)
class ParamInitFunction(ParamInit):
    """The user's own ``param_init(key) -> value``, run on the shard on a key's first use.

    It must be deterministic in the key (every process and every replay must create the
    same value); the result is checked against the parameter's shape.

    Parameters
    ----------
    init
        ``init(key) -> value``: gets the key's bytes (``<name>:<index>``) and returns an
        array-like of the parameter's shape, converted to its dtype.
    """

    init: Callable[[bytes], ArrayLike]

    def __call__(
        self, key: bytes, shape: Sequence[int], dtype: DTypeLike = np.float32
    ) -> np.ndarray:
        value = np.asarray(self.init(key), dtype=dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"param_init({key!r}) gave shape {value.shape}, not {tuple(shape)}")
        return value
