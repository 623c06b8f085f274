"""Settings for a benchmark's job: its own topics and data, the local broker, and the job
settings (KPS_*, the settings file, the model's defaults: 2 training partitions, 4 shards)
otherwise."""

from __future__ import annotations

import uuid

from kafka_ps.agents.settings import JobSettings, state_dir
from kafka_ps.app.local_kafka import LocalKafka


def job_settings(name: str, **update: object) -> JobSettings:
    run = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    return JobSettings.for_run(
        run, state_dir() / run, broker=LocalKafka().settings.bootstrap
    ).model_copy(update=update)
