"""A job's process that exits: reported as one line with its exit code and its log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.api import JobError
from kafka_ps.app.cli_errors import EXIT_PROCESS_DIED, exit_code, failure
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
    assert exit_code(JobError("x")) == EXIT_PROCESS_DIED


def _running(process: JobProcess, log: Path, lines: list[str]) -> subprocess.Popen[bytes]:
    """``process`` as a child that has logged ``lines`` and is still running."""
    log.write_text("".join(f"[INFO] {line}\n" for line in lines))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    process._process = child  # as start() spawns it
    return child


@pytest.mark.parametrize(
    ("consistency", "lines", "ready"),
    [
        ("asp", ["[^BoundedWorker]: Ready"], False),  # its packer has not joined yet
        ("asp", ["[^BoundedWorker]: Ready", "packer: assigned [0, 1]"], True),
        ("asp", ["packer: assigned [0, 1]"], False),
        ("bsp", ["[^BoundedWorker]: Ready"], True),  # BSP does not pack
    ],
)
def test_a_worker_is_ready_once_its_app_and_its_packer_are(
    tmp_path: Path, consistency: str, lines: list[str], ready: bool
) -> None:
    log = tmp_path / "worker-0.log"
    settings = JobSettings(app_id="ready", data_dir=tmp_path, consistency=consistency)
    process = JobProcess("worker", settings, log)
    child = _running(process, log, lines)
    try:
        assert process.ready is ready
    finally:
        child.kill()
        child.wait()
