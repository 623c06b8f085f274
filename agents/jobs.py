"""The jobs a process can host, by name (``kps serve``, ``kps learn``, ``kps host JOB``)."""

from __future__ import annotations

import importlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from kafka_ps.agents.adapter import as_batch_logic
from kafka_ps.agents.api import BatchWorkerLogic, ParamRegistry
from kafka_ps.agents.packer import PACKER_ASSIGNED, packs_input
from kafka_ps.agents.server import PARAMS_TABLE, register_server
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import TopicSpec
from kafka_ps.agents.warm_start import load_warm_start
from kafka_ps.agents.worker import register_worker
from kafka_ps.tables.errors import UsageError
from kafka_ps.tables.warm_start import warm_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What one kind of process hosts.

    Parameters
    ----------
    register
        Registers the job's agents and tables on a process's Faust app.
    topics
        Every topic the job uses, created before any of its processes starts.
    role
        Appended to the job's app id to name this role's consumer group.
    ready_lines
        Lines, besides Faust's "Ready", that a process of the job logs once it has joined
        the consumer groups of its own (the worker's packer).
    """

    register: Callable[[faust.App, JobSettings], None]
    topics: Callable[[JobSettings], list[TopicSpec]]
    role: str = ""
    ready_lines: Callable[[JobSettings], tuple[bytes, ...]] = lambda _settings: ()

    def group(self, settings: JobSettings) -> str:
        return settings.group(self.role)


def ps_topics(settings: JobSettings) -> list[TopicSpec]:
    """Every topic of a parameter-server job, created before any of its processes starts."""
    workers, shards = settings.partitions, settings.shards
    return [
        TopicSpec(settings.input_topic, workers),
        TopicSpec(settings.topic("packed"), workers),
        TopicSpec(settings.topic("shard"), shards),
        TopicSpec(settings.topic("replies"), workers),
        TopicSpec(settings.topic("predictions"), workers),
        TopicSpec(settings.topic("metrics"), 1),
        TopicSpec(settings.topic("dead-letters"), 1),
        TopicSpec(settings.topic("model-updates"), shards, compacted=True),
        TopicSpec(settings.topic(f"server-{PARAMS_TABLE}-changelog"), shards, compacted=True),
    ]


#: ``KPS_MODEL=pickle:<path>``: a logic object pickled by :func:`kafka_ps.run`.
PICKLED = "pickle:"
#: A file a driver writes into a worker process's data directory once the job has learned
#: its whole input, before it stops the process: the logic's ``end_of_input()`` runs then.
END_OF_INPUT = "end-of-input"


def load_logic(name: str, params: dict[str, Any]) -> BatchWorkerLogic:
    """A built-in model by name, the user's own logic as ``package.module:factory``
    (called with ``params``), or ``pickle:<path>``, a logic object that
    :func:`kafka_ps.run` pickled (its class is imported by name).

    A :class:`~agents.logic.Logic` or record-at-a-time logic is wrapped so that it runs on
    the same mini-batch path.
    """
    if name.startswith(PICKLED):
        with open(name.removeprefix(PICKLED), "rb") as file:
            return as_batch_logic(pickle.load(file))
    if ":" in name:
        module, _, attribute = name.partition(":")
        return as_batch_logic(getattr(importlib.import_module(module), attribute)(**params))
    from kafka_ps.agents.models import make_model

    return make_model(name, **params)


def _register_servers(app: faust.App, settings: JobSettings) -> None:
    logic = load_logic(settings.model, settings.model_params)
    registry = warm_registry(ParamRegistry(list(logic.params)), load_warm_start(settings))
    register_server(app, settings, registry)


def _register_workers(app: faust.App, settings: JobSettings) -> None:
    logic = load_logic(settings.model, settings.model_params)
    register_worker(app, settings, logic, ParamRegistry(list(logic.params)))
    logic.open()
    ended = settings.data_dir / END_OF_INPUT
    ended.unlink(missing_ok=True)

    @app.on_before_shutdown.connect
    async def finish_logic(app: faust.App, **_: object) -> None:
        # Faust sends this once the streams are empty (every record taken is learned) and
        # before it flushes the producer: a hook that raises is logged, never allowed to
        # stop the flush.
        hooks = [logic.end_of_input] if ended.exists() else []
        for hook in [*hooks, logic.close]:
            try:
                hook()
            except Exception:
                log.exception("the logic's %s() raised", hook.__name__)


def _packer_assigned(settings: JobSettings) -> tuple[bytes, ...]:
    return (PACKER_ASSIGNED.encode(),) if packs_input(settings) else ()


JOBS: dict[str, Job] = {
    # Shards and workers run in processes of their own, in consumer groups of their own:
    # a Faust process delivers all its topics through one conductor, so a worker blocked
    # on a pull would stop its own process's shards from answering (docs/architecture.md).
    "server": Job(_register_servers, ps_topics, role="server"),
    "worker": Job(_register_workers, ps_topics, "worker", _packer_assigned),
}


def job_named(name: str) -> Job:
    """A built-in job (``server``, ``worker``), or another as ``package.module:attribute``.

    The test harness's jobs (``benchmarks.counter:COUNTER``) are found this way, so this
    registry never imports them.
    """
    if name in JOBS:
        return JOBS[name]
    module, _, attribute = name.partition(":")
    if not attribute:
        raise UsageError(f"unknown job {name!r}: expected {' or '.join(JOBS)}, or module:attribute")
    job = getattr(importlib.import_module(module), attribute)
    if not isinstance(job, Job):
        raise UsageError(f"{name} is a {type(job).__name__}, not a Job")
    return job
