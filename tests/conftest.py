"""Fixtures shared by every test: a real Apache Kafka broker and per-test jobs.

The broker is started (or reused) once per test session, through the same tooling as
``kps kafka start``; the fixtures stop it again only if they started it. Each test gets
its own topics, consumer group and Faust data directory, and runs Faust workers as
child processes, never inside this interpreter.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import delete_topics
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.process import JobProcess


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap address of a running local broker."""
    broker = LocalKafka()
    started_here = not broker.status().running
    status = broker.start()
    yield status.bootstrap
    if started_here:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic- and group-safe name unique to this test run."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-")[:40]
    return f"t-{slug}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def job_settings(kafka: str, unique_name: str, tmp_path: Path) -> Iterator[JobSettings]:
    """Settings for a job with its own app id, input topic and data directory."""
    settings = JobSettings.for_run(unique_name, tmp_path / "data", broker=kafka, partitions=4)
    yield settings
    delete_topics(kafka, _topics_of(kafka, unique_name))


def _topics_of(bootstrap: str, prefix: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient(confluent_config(bootstrap)).list_topics(timeout=10).topics
    return [name for name in topics if name.startswith(prefix)]


@pytest.fixture
def process_factory(
    job_settings: JobSettings, tmp_path: Path
) -> Iterator[Callable[..., JobProcess]]:
    """Makes worker child processes, each with a data directory of its own inside the
    settings' (as ``kps train`` gives them; restart one with its ``start()``); any still
    running at teardown are killed."""
    made: list[JobProcess] = []

    def make(
        job: str = "benchmarks.counter:COUNTER", settings: JobSettings | None = None
    ) -> JobProcess:
        settings = settings or job_settings
        own = settings.model_copy(update={"data_dir": settings.data_dir / f"process-{len(made)}"})
        worker = JobProcess(job, own, tmp_path / "logs" / f"worker-{len(made)}.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        if worker.running:
            worker.kill()
