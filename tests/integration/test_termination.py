"""``kps train --until-end`` learns what the topic holds at the start, then exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from kafka_ps.agents.client import produce
from kafka_ps.agents.jobs import ps_topics
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import ensure_topics
from kafka_ps.app.datasets import flights
from kafka_ps.app.termination import Termination, end_offsets
from kafka_ps.app.train import training_records

RECORDS = 3000


def test_train_until_end_learns_the_topic_and_exits(job_settings: JobSettings) -> None:
    settings = job_settings.model_copy(
        update={"partitions": 2, "shards": 2, "model": "logreg_ftrl", "batch_size": 64}
    )
    ensure_topics(settings.broker, ps_topics(settings))
    produce(
        settings.broker,
        settings.input_topic,
        training_records(flights(limit=RECORDS), settings.partitions),
    )
    env = {
        **os.environ,
        "KPS_BROKER": settings.broker,
        "KPS_APP_ID": settings.app_id,
        "KPS_INPUT_TOPIC": settings.input_topic,
        "KPS_DATA_DIR": str(settings.data_dir),
        "KPS_PARTITIONS": "2",
        "KPS_SHARDS": "2",
        "KPS_MODEL": "logreg_ftrl",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kafka_ps.app.cli", "train", "--until-end", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"done: {RECORDS:,} records"), summary
    assert "progressive logloss" in summary
    # The job's pushes cover the whole topic: the progress bar's figures end at the total.
    termination = Termination(settings, end_offsets(settings.broker, settings.input_topic, 2))
    try:
        while not termination.step():
            pass
        assert termination.progress() == (RECORDS, RECORDS)
    finally:
        termination.close()
