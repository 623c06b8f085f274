"""How the ``kps`` command line fails: one line on stderr and a documented exit code.

Every error kafka-ps raises on purpose is a :class:`KafkaPsError`; :data:`EXIT_CODES` maps
its type to a code here, and only here, so that the layers below raise typed errors without
knowing how a command ends. Of the libraries' errors, pydantic's validation errors are 2 and
confluent-kafka's are 5. Anything else is a bug and ends in a traceback.

======  ==================================================================================
code    meaning
======  ==================================================================================
0       success
1       ``kps kafka``: the local broker could not be fetched, started or stopped
2       a bad command line or setting: an unknown option, ``--model-params`` that is not
        JSON, an unknown model or hyper-parameter, a bad flag, ``KPS_*`` or settings-file value,
        a missing settings file, a topic whose partition count differs from the job's, a
        warm start that does not fit the model, and any other :class:`KafkaPsError`
3       ``kps kafka status``: the local broker is not running
4       bad input data: a missing or unreadable file, an unknown format, a missing label
        column, a bad row (``file:line`` and the reason), a bad training record, a data
        set whose package is not installed
5       the broker does not answer, or refuses a request: wrong credentials, or no ACL
        for a topic or group the command needs
6       a process of the job exited while the job needed it (its exit code and log file
        are named)
130     interrupted (Ctrl-C)
======  ==================================================================================
"""

from __future__ import annotations

import sys

from confluent_kafka import KafkaException
from pydantic import ValidationError

from kafka_ps.tables.errors import BrokerError, KafkaPsError, UsageError

__all__ = ["BrokerError", "KafkaPsError", "UsageError", "exit_code", "failure", "first_line"]

EXIT_KAFKA_TOOL = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_INPUT = 4
EXIT_BROKER = 5
EXIT_PROCESS_DIED = 6
EXIT_INTERRUPTED = 130

#: The exit code of each :class:`KafkaPsError` that is not :data:`EXIT_USAGE`, by module and
#: class name (a subclass ends as its class does), so that naming an error's type here does
#: not import its module: the command line stays quick to start, and an error of a module
#: that was never imported cannot have been raised.
EXIT_CODES: tuple[tuple[str, str, int], ...] = (
    ("kafka_ps.app.local_kafka", "LocalKafkaError", EXIT_KAFKA_TOOL),
    ("kafka_ps.app.sources", "InputError", EXIT_INPUT),
    ("kafka_ps.app.datasets", "DatasetUnavailableError", EXIT_INPUT),
    ("kafka_ps.agents.records", "BadRecordError", EXIT_INPUT),
    ("kafka_ps.tables.errors", "BrokerError", EXIT_BROKER),
    ("kafka_ps.app.process", "ProcessDied", EXIT_PROCESS_DIED),
)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "failed"


def exit_code(error: KafkaPsError) -> int:
    """The exit code of a command that ``error`` stops (:data:`EXIT_CODES`)."""
    for module, name, code in EXIT_CODES:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(error, getattr(loaded, name)):
            return code
    return EXIT_USAGE


def failure(error: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for ``error``, or None if it is a bug."""
    if isinstance(error, KafkaPsError):
        return first_line(str(error)), exit_code(error)
    if isinstance(error, ValidationError):
        problem = error.errors()[0]
        prefix = "KPS_KAFKA_" if error.title == "LocalKafkaSettings" else "KPS_"
        name = prefix + "_".join(str(part) for part in problem["loc"]).upper()
        return f"{name}={problem.get('input')!r}: {problem['msg']}", EXIT_USAGE
    if isinstance(error, KafkaException):
        return f"Kafka error: {first_line(str(error.args[0] if error.args else error))}", (
            EXIT_BROKER
        )
    return None
