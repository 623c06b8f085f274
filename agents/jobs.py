"""The jobs a ``kps worker`` process can host, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import faust

from agents.counter import counter_topics, register_counter
from app.settings import JobSettings
from app.topics import TopicSpec


@dataclass(frozen=True)
class Job:
    register: Callable[[faust.App, JobSettings], None]
    topics: Callable[[JobSettings], list[TopicSpec]]


JOBS: dict[str, Job] = {
    "counter": Job(register_counter, counter_topics),
    # Without the offset check: at-least-once as Faust gives it, for the baseline benchmark.
    "counter-naive": Job(partial(register_counter, idempotent=False), counter_topics),
}
