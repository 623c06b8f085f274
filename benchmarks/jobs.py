"""Settings for a benchmark's job: its own topics and data, 2 training partitions, 4 shards."""

from __future__ import annotations

import uuid

from app.local_kafka import LocalKafka
from app.settings import JobSettings, state_dir


def job_settings(name: str, **update: object) -> JobSettings:
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    return JobSettings.for_run(
        run,
        state_dir() / run,
        broker=LocalKafka().settings.bootstrap,
        partitions=2,
        shards=4,
        batch_size=1024,
    ).model_copy(update=update)
