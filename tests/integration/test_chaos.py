"""Invariant 2 under SIGKILL: every record counted exactly once while processes die."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chaos import Target, run_chaos
from app.settings import JobSettings


@pytest.mark.parametrize("target", ["workers", "servers"])
def test_chaos_loses_nothing_and_doubles_nothing(
    job_settings: JobSettings, tmp_path: Path, target: Target
) -> None:
    settings = job_settings.model_copy(update={"partitions": 6, "shards": 4, "batch_size": 64})
    result = run_chaos(settings, target, kills=10, logs=tmp_path / "logs", interval=2.5)
    assert sum(result.produced.values()) == 20_000 and len(result.produced) == 1_000
    assert (result.lost, result.doubled) == (0, 0), {
        key: (n, result.counted.get(key))
        for key, n in result.produced.items()
        if result.counted.get(key) != n
    }
    assert result.counted == result.produced
