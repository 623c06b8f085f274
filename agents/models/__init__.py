"""The built-in models, all :class:`~agents.api.BatchWorkerLogic`, found by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka_ps.agents.api import BatchWorkerLogic
from kafka_ps.agents.models.linear import LinearRegression
from kafka_ps.agents.models.logreg_ftrl import FtrlLogisticRegression
from kafka_ps.agents.models.mf import MatrixFactorisation
from kafka_ps.agents.models.mlp import Mlp
from kafka_ps.agents.models.passive_aggressive import PassiveAggressive

ModelFactory = Callable[..., BatchWorkerLogic]

MODELS: dict[str, ModelFactory] = {
    "logreg_ftrl": FtrlLogisticRegression,
    "linear": LinearRegression,
    "passive_aggressive": PassiveAggressive,
    "mf": MatrixFactorisation,
    "mlp": Mlp,
}


def make_model(name: str, **hyper: Any) -> BatchWorkerLogic:
    """The model registered as ``name``, built from its hyper-parameters.

    Unknown names, unknown or missing hyper-parameters and bad values raise ValueError.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    try:
        return factory(**hyper)
    except TypeError as error:
        raise ValueError(f"bad hyper-parameters for model {name!r}: {error}") from error


__all__ = [
    "MODELS",
    "FtrlLogisticRegression",
    "LinearRegression",
    "MatrixFactorisation",
    "Mlp",
    "ModelFactory",
    "PassiveAggressive",
    "make_model",
]
