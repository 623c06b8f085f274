"""``kps produce --file`` against the real broker: ordinary files into a training topic."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from confluent_kafka.admin import AdminClient

from kafka_ps.agents.api import TrainingRecord
from kafka_ps.agents.batches import split_message
from kafka_ps.agents.client import read_all
from kafka_ps.agents.jobs import load_logic
from kafka_ps.agents.records import parse_record
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.cli_errors import EXIT_INPUT, EXIT_USAGE
from kafka_ps.app.input_schema import read_numeric, with_input_schema
from tests.cli import run_kps

pytestmark = pytest.mark.broker


def records_in(settings: JobSettings) -> list[TrainingRecord]:
    """Every record on the input topic: kps produce writes kps-batch messages."""
    return [
        parse_record(item.value, m.partition(), item.offset)
        for m in read_all(settings.broker, settings.input_topic)
        for item in split_message(m.value(), m.offset())
    ]


def produce(settings: JobSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"KPS_BROKER": settings.broker, "KPS_INPUT_TOPIC": settings.input_topic, **env}
    return run_kps("produce", *args, **env)


def partitions(settings: JobSettings) -> int | None:
    admin = AdminClient(confluent_config(settings.broker))
    topic = admin.list_topics(timeout=10).topics.get(settings.input_topic)
    return None if topic is None else len(topic.partitions)


def test_a_pandas_csv_goes_to_a_new_topic_with_the_jobs_partitions(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "carrier": rng.choice(["UA", "AA", "DL"], 300),
            "distance": rng.integers(100, 3000, 300),
            "delayed": rng.integers(0, 2, 300),
        }
    )
    path = tmp_path / "flights.csv"
    frame.to_csv(path)  # with pandas' unnamed index column first
    assert partitions(job_settings) is None

    result = produce(job_settings, "--file", str(path), "--label", "delayed", KPS_PARTITIONS="3")

    assert result.returncode == 0, result.stderr
    assert "produced 300 records" in result.stdout
    assert "numeric features: distance" in result.stdout
    assert partitions(job_settings) == 3
    records = records_in(job_settings)
    assert len(records) == 300
    assert {frozenset(r.features) for r in records} == {frozenset({"carrier", "distance"})}
    first = next(r for r in records if r.partition == 0 and r.offset == 0)
    assert first.features == {"carrier": frame.carrier[0], "distance": float(frame.distance[0])}
    assert first.label == frame.delayed[0]

    # The job then treats the detected column as numeric, unless it names its own.
    assert read_numeric(job_settings.broker, job_settings.input_topic) == ["distance"]
    settings = with_input_schema(job_settings)
    assert settings.model_params["numeric"] == ["distance"]
    assert load_logic(settings.model, settings.model_params).hasher.numeric == {"distance"}
    own = job_settings.model_copy(update={"model_params": {"numeric": []}})
    assert with_input_schema(own).model_params == {"numeric": []}


def test_partitions_flag_wins_and_a_mismatched_topic_fails_before_sending(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"features": {"a": "x"}, "label": 1}\n' * 10)
    result = produce(job_settings, "--file", str(path), "--partitions", "5")
    assert result.returncode == 0, result.stderr
    assert partitions(job_settings) == 5
    again = produce(job_settings, "--file", str(path), KPS_PARTITIONS="2")
    assert again.returncode == EXIT_USAGE
    assert again.stderr.strip() == (
        f"kps produce: topic {job_settings.input_topic!r} has 5 partitions, the job needs 2"
    )
    assert len(records_in(job_settings)) == 10


def test_a_bad_row_stops_before_anything_is_sent_or_is_skipped(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("x,label\n1.5,1\n2.5,0\nnan,1\n3.5,1\n")
    result = produce(job_settings, "--file", str(path), "--numeric", "x")
    assert result.returncode == EXIT_INPUT
    assert result.stderr.strip().startswith(f"kps produce: {path}:4: numeric column 'x'")
    assert partitions(job_settings) is None

    skipped = produce(job_settings, "--file", str(path), "--numeric", "x", "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    assert "produced 3 records" in skipped.stdout
    assert f"skipped 1 bad rows, the first: {path}:4:" in skipped.stdout
    assert partitions(job_settings) == JobSettings.model_fields["partitions"].default
