"""The 60-second form of the soak benchmark: saturated, no stalls, memory flat."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import soak
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import FLIGHT_CROSSES


def test_a_minute_at_saturation_under_ssp(job_settings: JobSettings, tmp_path: Path) -> None:
    settings = job_settings.model_copy(
        update={
            "partitions": 2,
            "shards": 4,
            "batch_size": 64,
            "model": "logreg_ftrl",
            "consistency": "ssp:4",
            "model_params": {"crosses": [list(cross) for cross in FLIGHT_CROSSES]},
        }
    )
    report = soak(settings, seconds=60, every=5, logs=tmp_path)
    assert report.stalls == 0, report.samples
    assert report.learned > 10_000
    first, last = report.samples[1], report.samples[-1]
    for name in first:
        if name.startswith("rss_mib"):
            assert last[name] < first[name] * 1.5 + 50, (name, report.samples)
