"""Why input went to the dead-letter topic: one reason per kind of bad input.

Every module that sends or names a dead letter takes its reason from
:class:`DeadLetterReason`. It is a :class:`~enum.StrEnum`, so a member is its string: it
goes into the ``kps-reason`` header, the metrics' ``dead_letters`` counts and the
Prometheus ``reason`` label as that string, and compares equal to it. docs/formats.md
lists the same reasons (a unit test reads one against the other).
"""

from __future__ import annotations

from enum import StrEnum, unique

from kafka_ps.tables.errors import KafkaPsError


@unique
class DeadLetterReason(StrEnum):
    """The reason a record or message went to dead letters (the ``kps-reason`` header)."""

    # A training record that does not parse (agents/records.py, agents/batches.py).
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    NOT_OBJECT = "not_object"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    MISSING_LABEL = "missing_label"
    TOO_MANY_FEATURES = "too_many_features"
    BAD_FEATURE_NAME = "bad_feature_name"
    # A record the model's logic misbehaves on, or a shard-topic message a shard rejects.
    UNKNOWN_PARAMETER = "unknown_parameter"
    WRONG_SHAPE = "wrong_shape"
    NON_FINITE_DELTA = "non_finite_delta"
    MODEL_ERROR = "model_error"
    BAD_DELTA = "bad_delta"


@unique
class Blame(StrEnum):
    """What a dead letter is the fault of (the ``kps-blame`` header): the record or message
    itself, or the model's logic, which raised on a record or made a push or pull a shard
    rejects. ``kafka_ps.run`` reports the logic's dead letters (``LogicFailed``)."""

    INPUT = "input"
    LOGIC = "logic"


#: The reasons a training record that does not parse can have.
RECORD_REASONS: tuple[DeadLetterReason, ...] = (
    DeadLetterReason.EMPTY,
    DeadLetterReason.TOO_LARGE,
    DeadLetterReason.MALFORMED,
    DeadLetterReason.NOT_OBJECT,
    DeadLetterReason.UNKNOWN_FIELD,
    DeadLetterReason.WRONG_TYPE,
    DeadLetterReason.NON_FINITE,
    DeadLetterReason.MISSING_LABEL,
    DeadLetterReason.TOO_MANY_FEATURES,
    DeadLetterReason.BAD_FEATURE_NAME,
)


class RejectedError(KafkaPsError, ValueError):
    """Input that must not reach the model, with the reason it goes to dead letters.

    Parameters
    ----------
    reason
        Why, as its dead-letter reason (a bare string must name one).
    detail
        What was wrong, for a person.
    """

    def __init__(self, reason: DeadLetterReason | str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = DeadLetterReason(reason)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
