"""Settings for a benchmark's job: its own topics and data, the local broker, and the job
settings (KPS_*, the settings file, the model's defaults: 2 training partitions, 4 shards)
otherwise."""

from __future__ import annotations

import uuid

from app.local_kafka import LocalKafka
from app.settings import JobSettings, state_dir


def job_settings(name: str, **update: object) -> JobSettings:
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    return JobSettings.for_run(
        run, state_dir() / run, broker=LocalKafka().settings.bootstrap
    ).model_copy(update=update)
