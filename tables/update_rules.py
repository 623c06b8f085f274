"""Server-side update rules: how a shard folds a push into a stored parameter.

A rule sees the parameter's slots (slot 0 is the value, then the rule's optimizer
state, all of one shape and dtype; see :mod:`tables.codec`) and one push's delta of shape
``(delta_slots, *value.shape)``. It returns new arrays and never writes to its inputs,
which may be read-only views of a decoded record.

:meth:`UpdateRule.apply` checks the delta before any arithmetic, and checks the result
before returning it, so a malformed, NaN or infinite push never reaches the model
(invariant 7): it raises :class:`BadDeltaError` and the caller keeps the old state.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.reals import is_finite_real

Slots = tuple[np.ndarray, ...]


class BadDeltaError(KafkaPsError, ValueError):
    """A push that must not be applied; the message says why."""


def _check_hyper(
    name: str, value: float, *, low: float, low_open: bool, high: float = math.inf
) -> None:
    """Raise ValueError unless ``value`` is a real in (low, high), or [low, high) if closed."""
    ok = is_finite_real(value) and (value > low if low_open else value >= low) and value < high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(
            f"{name} must be a finite number in {bracket}{low}, {high}), got {value!r}"
        )


def _positive(name: str, value: float) -> None:
    _check_hyper(name, value, low=0.0, low_open=True)


def _non_negative(name: str, value: float) -> None:
    _check_hyper(name, value, low=0.0, low_open=False)


def _decay(name: str, value: float) -> None:
    _check_hyper(name, value, low=0.0, low_open=False, high=1.0)


class UpdateRule(ABC):
    """The interface every server-side update rule implements."""

    #: Registry name, used by :func:`make_rule`.
    name: ClassVar[str]
    #: Unique small integer written into every record this rule produces.
    rule_id: ClassVar[int]
    #: Optimizer-state slots stored after the value.
    n_state: ClassVar[int]
    #: Arrays carried by one push.
    delta_slots: ClassVar[int] = 1
    #: Whether the rule only makes sense for floating-point values.
    float_only: ClassVar[bool] = True
    #: Whether the rule acts element by element, so many parameters can be stacked and
    #: updated in one call (a shard applies a push that way).
    elementwise: ClassVar[bool] = True

    def init_state(self, value: np.ndarray) -> Slots:
        """The full slots tuple (value first) for a freshly initialised parameter."""
        value = np.asarray(value)
        self._check_dtype(value.dtype)
        return self._init(value)

    def apply(self, slots: Slots, delta: np.ndarray) -> Slots:
        """New slots after one push; raises :class:`BadDeltaError` before touching state."""
        slots = tuple(np.asarray(slot) for slot in slots)
        if len(slots) != 1 + self.n_state:
            raise ValueError(f"{self.name} expects {1 + self.n_state} slots, got {len(slots)}")
        value = slots[0]
        self._check_dtype(value.dtype)
        for i, slot in enumerate(slots):
            if slot.shape != value.shape or slot.dtype != value.dtype:
                raise ValueError(f"{self.name}: slot {i} does not match the value's shape/dtype")
        delta = self._check_delta(value, delta)
        # Overflow is caught by the finiteness check below, not reported as a warning.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            new = self._step(slots, delta)
        if value.dtype.kind == "f" and not all(np.isfinite(s).all() for s in new):
            raise BadDeltaError(f"{self.name}: the push would make the state non-finite")
        return tuple(s.astype(value.dtype, copy=False) for s in new)

    def _check_dtype(self, dtype: np.dtype) -> None:
        if self.float_only and dtype.kind != "f":
            raise ValueError(f"{self.name} needs floating-point parameters, got {dtype}")

    def _check_delta(self, value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        try:
            delta = np.asarray(delta)
        except (TypeError, ValueError) as error:
            raise BadDeltaError(f"{self.name}: delta is not an array: {error}") from error
        expected = (self.delta_slots, *value.shape)
        if delta.shape != expected:
            raise BadDeltaError(f"{self.name}: delta shape {delta.shape}, expected {expected}")
        if delta.dtype.kind not in "iuf" or not np.can_cast(delta.dtype, value.dtype, "same_kind"):
            raise BadDeltaError(f"{self.name}: cannot apply a {delta.dtype} delta to {value.dtype}")
        if delta.dtype.kind == "f" and not np.isfinite(delta).all():
            raise BadDeltaError(f"{self.name}: delta contains NaN or infinite values")
        return delta.astype(value.dtype, copy=False)

    @abstractmethod
    def _init(self, value: np.ndarray) -> Slots: ...

    @abstractmethod
    def _step(self, slots: Slots, delta: np.ndarray) -> Slots: ...


def _squares_grow(rule: str, name: str, delta: np.ndarray) -> np.ndarray:
    """``delta`` of an additive rule whose second array adds to a sum of squares, which
    can only grow; raises :class:`BadDeltaError` where it would shrink."""
    if (delta[1] < 0).any():
        raise BadDeltaError(f"{rule}: {name} must not be negative")
    return delta


@dataclass(frozen=True)
class Add(UpdateRule):
    """``w += delta``: the worker already scaled its change (SGD deltas, counts)."""

    name: ClassVar[str] = "add"
    rule_id: ClassVar[int] = 1
    n_state: ClassVar[int] = 0
    float_only: ClassVar[bool] = False

    def _init(self, value: np.ndarray) -> Slots:
        return (value,)

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        return (slots[0] + delta[0],)


@dataclass(frozen=True)
class Sgd(UpdateRule):
    """``w -= lr * g`` for a pushed gradient ``g``.

    Parameters
    ----------
    lr
        Learning rate, > 0: the step is ``lr`` times the pushed gradient.
    """

    lr: float
    name: ClassVar[str] = "sgd"
    rule_id: ClassVar[int] = 2
    n_state: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _positive("lr", self.lr)

    def _init(self, value: np.ndarray) -> Slots:
        return (value,)

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        return (slots[0] - self.lr * delta[0],)


@dataclass(frozen=True)
class AdaGrad(UpdateRule):
    """AdaGrad (Duchi et al. 2011), per coordinate: ``G += g²; w -= lr g / (√G + eps)``.

    Parameters
    ----------
    lr
        Learning rate, > 0, before the per-coordinate scaling ``1 / (√G + eps)``.
    eps
        Added to ``√G`` so the first steps (``G`` near 0) stay finite; > 0.
    initial_accumulator
        The starting value of ``G`` for a fresh parameter, >= 0; the default 0 makes the
        first step ``lr * g / (|g| + eps)``, about ``lr * sign(g)``.
    """

    lr: float
    eps: float = 1e-8
    initial_accumulator: float = 0.0
    name: ClassVar[str] = "adagrad"
    rule_id: ClassVar[int] = 3
    n_state: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _positive("eps", self.eps)
        _non_negative("initial_accumulator", self.initial_accumulator)

    def _init(self, value: np.ndarray) -> Slots:
        return (value, np.full_like(value, self.initial_accumulator))

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        w, acc = slots
        g = delta[0]
        acc = acc + g * g
        return (w - self.lr * g / (np.sqrt(acc) + self.eps), acc)


@dataclass(frozen=True)
class AdaGradAdditive(AdaGrad):
    """AdaGrad whose pushes carry ``(Δw, ΔG)`` accumulated by a worker.

    A worker pulls ``(w, G)``, takes AdaGrad steps record by record on its local copy
    (``G += g²; w -= lr g / (√G + eps)``) and pushes the accumulated change once. The
    shard adds both: ``G`` is a sum of squares, so pushes from any number of workers merge.

    Parameters
    ----------
    lr
        Learning rate of the workers' steps, > 0 (the shard only adds).
    eps
        Added to ``√G`` in the workers' steps; > 0.
    initial_accumulator
        The starting value of ``G`` for a fresh parameter, >= 0.
    """

    name: ClassVar[str] = "adagrad_additive"
    rule_id: ClassVar[int] = 7
    delta_slots: ClassVar[int] = 2

    def _check_delta(self, value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return _squares_grow(self.name, "ΔG", super()._check_delta(value, delta))

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        w, acc = slots
        return (w + delta[0], acc + delta[1])


@dataclass(frozen=True)
class Adam(UpdateRule):
    """Adam (Kingma and Ba 2015) with a per-element step count ``t``.

    ``t`` is stored as a slot of the value's shape and dtype (every slot of a record
    shares both), so bias correction follows how often each key, not the whole model,
    has been updated; that is what sparse keys need. A float32 ``t`` counts exactly up
    to 2**24 steps.

    Parameters
    ----------
    lr
        Learning rate, > 0: the step is ``lr * m̂ / (√v̂ + eps)``.
    beta1
        Decay of the first moment ``m = beta1 m + (1 - beta1) g``, in [0, 1).
    beta2
        Decay of the second moment ``v = beta2 v + (1 - beta2) g²``, in [0, 1).
    eps
        Added to ``√v̂`` so the step stays finite; > 0.
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"
    rule_id: ClassVar[int] = 4
    n_state: ClassVar[int] = 3

    def __post_init__(self) -> None:
        _positive("lr", self.lr)
        _decay("beta1", self.beta1)
        _decay("beta2", self.beta2)
        _positive("eps", self.eps)

    def _init(self, value: np.ndarray) -> Slots:
        return (value, np.zeros_like(value), np.zeros_like(value), np.zeros_like(value))

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        w, m, v, t = slots
        g = delta[0]
        m = self.beta1 * m + (1.0 - self.beta1) * g
        v = self.beta2 * v + (1.0 - self.beta2) * (g * g)
        t = t + 1
        m_hat = m / (1.0 - np.power(self.beta1, t))
        v_hat = v / (1.0 - np.power(self.beta2, t))
        return (w - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), m, v, t)


def ftrl_weights(
    z: np.ndarray, n: np.ndarray, alpha: float, beta: float, l1: float, l2: float
) -> np.ndarray:
    """FTRL-Proximal's closed-form weights (McMahan et al. 2013, algorithm 1).

    ``w = 0`` where ``|z| <= l1``, else ``-(z - sign(z) l1) / ((beta + √n) / alpha + l2)``.
    """
    shrunk = np.sign(z) * np.maximum(np.abs(z) - l1, 0.0)
    return -shrunk / ((beta + np.sqrt(n)) / alpha + l2)


def ftrl_step(
    z: np.ndarray, n: np.ndarray, w: np.ndarray, g: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """New ``(z, n)`` after gradient ``g`` at weights ``w``; new arrays, inputs untouched.

    Workers that learn record by record on a local copy use this too, and push the
    accumulated ``(z - z0, n - n0)`` to an ``ftrl_additive`` shard.
    """
    n_new = n + g * g
    sigma = (np.sqrt(n_new) - np.sqrt(n)) / alpha
    return z + g - sigma * w, n_new


@dataclass(frozen=True)
class Ftrl(UpdateRule):
    """FTRL-Proximal, per coordinate, fed gradient pushes; slots ``(w, z, n)``.

    ``w`` is always ``ftrl_weights(z, n)``. :meth:`init_state` chooses ``z`` so that the
    initial weights equal the given value (``z = 0`` for a zero value).

    Parameters
    ----------
    alpha
        Learning rate of the per-coordinate schedule ``alpha / (beta + √n)``; > 0.
    beta
        Smoothing of that schedule, >= 0; the default 1 keeps the first steps small.
    l1
        L1 regularisation, >= 0: a weight stays exactly 0 while ``|z| <= l1`` (sparsity).
    l2
        L2 regularisation, >= 0, added to the denominator of the closed form.
    """

    alpha: float = 0.1
    beta: float = 1.0
    l1: float = 1.0
    l2: float = 1.0
    name: ClassVar[str] = "ftrl"
    rule_id: ClassVar[int] = 5
    n_state: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _positive("alpha", self.alpha)
        _non_negative("beta", self.beta)
        _non_negative("l1", self.l1)
        _non_negative("l2", self.l2)

    def weights(self, z: np.ndarray, n: np.ndarray) -> np.ndarray:
        return ftrl_weights(z, n, self.alpha, self.beta, self.l1, self.l2)

    def _init(self, value: np.ndarray) -> Slots:
        # Invert the closed form at n = 0: w = -(z - sign(z) l1) / (beta / alpha + l2).
        z = -(value * (self.beta / self.alpha + self.l2) + np.sign(value) * self.l1)
        z = z.astype(value.dtype, copy=False)
        n = np.zeros_like(value)
        return (self.weights(z, n).astype(value.dtype, copy=False), z, n)

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        w, z, n = slots
        z, n = ftrl_step(z, n, w, delta[0], self.alpha)
        return (self.weights(z, n), z, n)


@dataclass(frozen=True)
class FtrlAdditive(Ftrl):
    """FTRL-Proximal whose pushes carry ``(Δz, Δn)`` accumulated by a worker.

    A worker pulls ``(w, z, n)``, learns record by record on its local copy with
    :func:`ftrl_step` and pushes the accumulated change once. ``z`` and ``n`` are sums, so
    the shard adds pushes from any number of workers and recomputes ``w``.

    Parameters
    ----------
    alpha
        Learning rate, as in :class:`Ftrl`; > 0. The workers' :func:`ftrl_step` must
        use the same value.
    beta
        Smoothing, as in :class:`Ftrl`; >= 0.
    l1
        L1 regularisation, as in :class:`Ftrl`; >= 0.
    l2
        L2 regularisation, as in :class:`Ftrl`; >= 0.
    """

    name: ClassVar[str] = "ftrl_additive"
    rule_id: ClassVar[int] = 6
    delta_slots: ClassVar[int] = 2

    def _check_delta(self, value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return _squares_grow(self.name, "Δn", super()._check_delta(value, delta))

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        _, z, n = slots
        z = z + delta[0]
        n = n + delta[1]
        return (self.weights(z, n), z, n)


@dataclass(frozen=True)
class ParamUpdate(UpdateRule):
    """The user's own ``param_update(value, delta) -> value``, run on the shard.

    It gets the current value and one pushed delta (both of the parameter's shape) and
    returns the new value; the usual checks (shape, dtype, finiteness) still apply, so a
    buggy function cannot corrupt the model. It has no name in :data:`UPDATE_RULES`: a
    function is passed to :class:`~tables.params.ParamSpec` directly.

    Parameters
    ----------
    update
        ``update(value, delta) -> value``: gets a copy of the current value and the pushed
        delta and returns the new value, which must keep the value's shape (it is cast to
        the value's dtype).
    """

    update: Callable[[np.ndarray, np.ndarray], np.ndarray]

    name: ClassVar[str] = "param_update"
    rule_id: ClassVar[int] = 100
    n_state: ClassVar[int] = 0
    elementwise: ClassVar[bool] = False

    def _init(self, value: np.ndarray) -> Slots:
        return (value,)

    def _step(self, slots: Slots, delta: np.ndarray) -> Slots:
        new = np.asarray(self.update(slots[0].copy(), delta[0]), dtype=slots[0].dtype)
        if new.shape != slots[0].shape:
            raise BadDeltaError(f"param_update returned shape {new.shape}, not {slots[0].shape}")
        return (new,)


UPDATE_RULES: dict[str, type[UpdateRule]] = {
    rule.name: rule for rule in (Add, Sgd, AdaGrad, AdaGradAdditive, Adam, Ftrl, FtrlAdditive)
}
if len({rule.rule_id for rule in UPDATE_RULES.values()}) != len(UPDATE_RULES):
    raise RuntimeError("update rule ids must be unique")


def make_rule(name: str, **hyper: float) -> UpdateRule:
    """The update rule registered as ``name``, built from its hyper-parameters."""
    try:
        cls = UPDATE_RULES[name]
    except KeyError:
        raise ValueError(
            f"unknown update rule {name!r}; known: {', '.join(sorted(UPDATE_RULES))}"
        ) from None
    try:
        return cls(**hyper)
    except TypeError as error:
        raise ValueError(f"bad hyper-parameters for {name!r}: {error}") from error
