"""Checks for the built-in models' hyper-parameters: fail at construction, not mid-stream."""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from kafka_ps.tables.reals import is_finite_real

T = TypeVar("T")


def positive(name: str, value: float) -> float:
    """``value`` as a float, if it is a finite number > 0."""
    if not (is_finite_real(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def non_negative(name: str, value: float) -> float:
    """``value`` as a float, if it is a finite number >= 0."""
    if not (is_finite_real(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def finite(name: str, value: float) -> float:
    """``value`` as a float, if it is a finite number."""
    if not is_finite_real(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def one_of(name: str, value: T, choices: Collection[T]) -> T:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(map(repr, choices))}, got {value!r}")
    return value
