"""The array contract between worker logic and a parameter server, one for both runtimes.

The Kafka worker's client (``agents/worker.py``, ``KafkaPsClient``) and the in-process
server (``agents/local.py``) check what a logic asks for with these functions, so a logic
that passes one passes the other, and both hand it arrays of the same kind:

- **Pulls.** Every key must name a declared parameter (:class:`UnknownParameterError`,
  raised before anything is asked). A pulled value is a read-only float64 array of shape
  ``(n_slots, *shape)``: the value, then the update rule's optimizer state. (float64 is
  what a pull reply carries on the wire; read-only because on Kafka it is a view of the
  reply's bytes.)
- **Pushes.** Every key must name a declared parameter. A delta is an array of real
  numbers (integers or floats; not booleans, strings or objects) with exactly as many
  elements as the parameter's ``delta_shape`` ``(rule.delta_slots, *shape)``; it is
  reshaped to that shape in C order and converted to float64, the wire type. Deltas to
  one key within a mini-batch are summed; a sum with NaN or Inf is refused. One call is
  all or nothing: a refused call leaves the mini-batch's pending deltas as they were.
- **Rows.** ``pull_rows``/``push_rows`` are the same pulls and pushes for distinct keys of
  one parameter, with the values as one array of a row per key (:func:`rows_spec`,
  :func:`as_delta_rows`): no array object per key, for models that touch thousands.

Refusals raise :class:`BadPushError`, which is both the shard's :class:`RejectedPush`
(its ``reason`` names the dead-letter reason) and :class:`~tables.update_rules.BadDeltaError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from kafka_ps.tables.dead_letters import DeadLetterReason
from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.params import ParamRegistry, ParamSpec, UnknownParameterError
from kafka_ps.tables.shard import RejectedPush
from kafka_ps.tables.update_rules import BadDeltaError

__all__ = [
    "BadPushError",
    "UnknownParameterError",
    "add_deltas",
    "as_delta",
    "as_delta_rows",
    "as_numbers",
    "pull_specs",
    "pulled_rows",
    "pulled_value",
    "rows_spec",
]


class BadPushError(RejectedPush, BadDeltaError, KafkaPsError):
    """A delta a logic pushed that no parameter server accepts.

    Parameters
    ----------
    reason
        The dead-letter reason: ``wrong_shape``, ``wrong_type`` or ``non_finite_delta``.
    detail
        What was wrong, naming the key.
    """


def pull_specs(registry: ParamRegistry, keys: Sequence[bytes]) -> dict[bytes, ParamSpec]:
    """Each distinct key of a pull with its parameter, in first-pull order.

    Raises :class:`UnknownParameterError` for a key no parameter declares.
    """
    return {key: registry.spec_for(key) for key in keys}


def pulled_value(spec: ParamSpec, slots: np.ndarray) -> np.ndarray:
    """The array a logic receives for one pulled key: float64, ``spec.slot_shape``, read-only."""
    value = np.asarray(slots, dtype=np.float64).reshape(spec.slot_shape)
    if value.flags.writeable:
        # A view, so that the caller's own array stays writable.
        value = value.view()
        value.flags.writeable = False
    return value


def as_numbers(where: str, delta: object) -> np.ndarray:
    """``delta`` as an array of integers or floats, or :class:`BadPushError` saying
    ``where`` it was pushed."""
    try:
        array = np.asarray(delta)
    except (TypeError, ValueError) as error:
        raise BadPushError(
            DeadLetterReason.WRONG_TYPE, f"{where}: the delta is not an array: {error}"
        ) from None
    if array.dtype.kind not in "iuf":
        raise BadPushError(
            DeadLetterReason.WRONG_TYPE,
            f"{where}: the delta holds {array.dtype}, not integers or floats",
        )
    return array


def as_delta(key: bytes, delta: object, shape: tuple[int, ...]) -> np.ndarray:
    """``delta`` as a new float64 array of ``shape``, or :class:`BadPushError`."""
    array = as_numbers(repr(key), delta)
    if array.size != math.prod(shape):
        raise BadPushError(
            DeadLetterReason.WRONG_SHAPE,
            f"{key!r}: the delta has shape {list(array.shape)} ({array.size} values), "
            f"expected {list(shape)}",
        )
    return np.array(array, dtype=np.float64).reshape(shape)


def add_deltas(
    registry: ParamRegistry,
    pending: MutableMapping[bytes, np.ndarray],
    deltas: Mapping[bytes, object],
) -> None:
    """Add one push call's ``deltas`` to a mini-batch's ``pending`` sums, all or nothing.

    Raises :class:`UnknownParameterError` or :class:`BadPushError` and leaves ``pending``
    unchanged when any delta is refused.
    """
    totals: dict[bytes, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # sums are checked below
        for key, delta in deltas.items():
            array = as_delta(key, delta, registry.spec_for(key).delta_shape)
            current = pending.get(key)
            totals[key] = array if current is None else current + array
    if totals and not np.isfinite(np.concatenate([t.ravel() for t in totals.values()])).all():
        bad = next(key for key, total in totals.items() if not np.isfinite(total).all())
        raise BadPushError(DeadLetterReason.NON_FINITE_DELTA, f"{bad!r}: the delta has NaN or Inf")
    pending.update(totals)


def rows_spec(registry: ParamRegistry, keys: Sequence[bytes]) -> ParamSpec:
    """The parameter of a pull or push by rows: ``keys`` are distinct keys of one parameter.

    Raises :class:`UnknownParameterError` for a key no parameter declares, ``ValueError``
    for keys of several parameters, none, or one twice.
    """
    if not keys:
        raise ValueError("a pull or push by rows needs at least one key")
    spec = registry.spec_for(keys[0])
    if not registry.all_of(spec.name, keys):
        for key in keys:
            registry.spec_for(key)  # an undeclared parameter is named as such
        raise ValueError(f"a pull or push by rows takes keys of one parameter ({spec.name!r})")
    if len(set(keys)) != len(keys):
        raise ValueError("a pull or push by rows names a key twice")
    return spec


def pulled_rows(spec: ParamSpec, rows: np.ndarray) -> np.ndarray:
    """What ``pull_rows`` returns: float64, ``(n_keys, *spec.slot_shape)``, read-only."""
    value = np.asarray(rows, dtype=np.float64).reshape(-1, *spec.slot_shape)
    if value.flags.writeable:
        value = value.view()
        value.flags.writeable = False
    return value


def as_delta_rows(spec: ParamSpec, keys: Sequence[bytes], deltas: object) -> np.ndarray:
    """``deltas`` for distinct ``keys`` of ``spec`` as a new float64 array of a row per key,
    ``(n_keys, *spec.delta_shape)``; :class:`BadPushError` as for :func:`add_deltas`."""
    shape = (len(keys), *spec.delta_shape)
    array = as_numbers(f"{spec.name} rows", deltas)
    if array.size != math.prod(shape):
        raise BadPushError(
            DeadLetterReason.WRONG_SHAPE,
            f"{spec.name} rows: the deltas have shape {list(array.shape)} ({array.size} "
            f"values), expected {list(shape)}",
        )
    rows = np.array(array, dtype=np.float64).reshape(shape)
    if not np.isfinite(rows).all():
        bad = keys[int(np.flatnonzero(~np.isfinite(rows.reshape(len(keys), -1)).all(axis=1))[0])]
        raise BadPushError(DeadLetterReason.NON_FINITE_DELTA, f"{bad!r}: the delta has NaN or Inf")
    return rows
