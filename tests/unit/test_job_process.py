"""A job's process that exits: reported as one line with its exit code and its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.api import JobError
from kafka_ps.app.cli_errors import EXIT_PROCESS_DIED, failure
from kafka_ps.app.process import JobProcess, ProcessDied


def test_a_process_that_exited_is_reported_with_its_code_and_its_log(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    process = JobProcess("worker", JobSettings(app_id="died", data_dir=tmp_path), log)
    with log.open("ab") as out:
        child = [sys.executable, "-c", "print('the end of its log'); raise SystemExit(3)"]
        process._process = subprocess.Popen(child, stdout=out)  # as start() spawns it
    process._process.wait()
    with pytest.raises(ProcessDied) as died:
        _ = process.ready
    assert failure(died.value) == (
        f"worker process exited (code 3); its log is {log}",
        EXIT_PROCESS_DIED,
    )
    assert "the end of its log" in str(died.value)


def test_the_python_api_reports_a_died_process_as_a_job_error() -> None:
    assert issubclass(JobError, ProcessDied)
    assert JobError("x").code == EXIT_PROCESS_DIED
