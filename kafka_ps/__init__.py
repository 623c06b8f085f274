"""kafka-ps: a parameter server for online machine learning, built entirely on Apache Kafka.

The model author's API (``docs/api.md``)::

    from kafka_ps import AdaGrad, Logic, ParamSpec, check_logic, run

Everything ``kafka_ps.agents`` exports is exported here too (it loads numpy and the pure
core only); :func:`run` and the names of the app layer, which load Kafka's clients and
Faust, are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from kafka_ps import agents
from kafka_ps.agents import *  # noqa: F403 (the model author's API, re-exported)

#: The app layer's public names, and their modules, loaded on first use.
_LAZY = {
    "JobError": "kafka_ps.app.api",
    "LogicFailed": "kafka_ps.app.api",
    "run": "kafka_ps.app.api",
    "Summary": "kafka_ps.app.train",
}

__all__ = sorted([*agents.__all__, *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kafka_ps' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
