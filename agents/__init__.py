"""kafka-ps agents: the runtime, and the model author's API (``docs/api.md``).

Everything a model author needs is exported here (and again from ``kafka_ps``):
:class:`Logic` and its :class:`Params` client, :class:`ParamSpec` with the update rules
and initialisers, :func:`check_logic` and :class:`LocalParameterServer`, and the errors.
The low-level :class:`BatchWorkerLogic` and :class:`WorkerLogic` stay public for speed.
"""

from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    Hooks,
    ParameterServerClient,
    ParamInitFunction,
    ParamRegistry,
    ParamSpec,
    ParamUpdate,
    Prediction,
    Task,
    TrainingRecord,
    UnknownParameterError,
    WorkerLogic,
)
from kafka_ps.agents.checks import check_logic, sample_records
from kafka_ps.agents.local import LocalParameterServer
from kafka_ps.agents.logic import Logic, LogicError, OutputError, Params
from kafka_ps.tables.contract import BadPushError
from kafka_ps.tables.dead_letters import DeadLetterReason
from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.init import Constant, Normal, Uniform, Zeros
from kafka_ps.tables.update_rules import AdaGrad, Adam, Add, Ftrl, Sgd, make_rule

__all__ = [
    "AdaGrad",
    "Adam",
    "Add",
    "BadPushError",
    "BatchParameterServerClient",
    "BatchWorkerLogic",
    "Constant",
    "DeadLetterReason",
    "Ftrl",
    "Hooks",
    "KafkaPsError",
    "LocalParameterServer",
    "Logic",
    "LogicError",
    "Normal",
    "OutputError",
    "ParamInitFunction",
    "ParamRegistry",
    "ParamSpec",
    "ParamUpdate",
    "ParameterServerClient",
    "Params",
    "Prediction",
    "Sgd",
    "Task",
    "TrainingRecord",
    "Uniform",
    "UnknownParameterError",
    "WorkerLogic",
    "Zeros",
    "check_logic",
    "make_rule",
    "sample_records",
]
