"""kps status, kps plot and kps exporter watch a real job through Kafka alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.observe import JobWatcher, learning_curve
from kafka_ps.app.process import JobProcess, settings_env
from tests.cli import REPO, free_port, run_kps
from tests.integration.flights_job import RECORDS, learn_flights, watched

pytestmark = pytest.mark.broker


def test_a_running_job_is_seen_by_status_plot_and_exporter(
    job_settings: JobSettings, process_factory: Callable[..., JobProcess], tmp_path: Path
) -> None:
    settings = watched(job_settings)
    learn_flights(process_factory, {"server": settings, "worker": settings})

    watcher = JobWatcher(settings)
    try:
        deadline = Deadline(30)
        snapshot = watcher.poll()
        while not snapshot.dead_letters and not deadline.passed():
            snapshot = watcher.poll()
    finally:
        watcher.close()
    assert set(snapshot.workers) == {0, 1}
    assert RECORDS - 2 * 500 <= snapshot.records <= RECORDS
    assert snapshot.dead_letters == {"not_object": 1}
    assert [state.lag for state in snapshot.groups["worker"]] == [0, 0]
    assert all(state.owner != "-" for state in snapshot.groups["server"])
    curve = learning_curve(snapshot.history)
    assert curve[-1][0] == snapshot.records and 0 < curve[-1][1] < 1

    env = settings_env(settings)
    status = run_kps("status", "--once", **env)
    assert status.returncode == 0, status.stderr
    assert settings.app_id in status.stdout and "not_object 1" in status.stdout
    assert f"{snapshot.records:,}" in status.stdout

    png = tmp_path / "curve.png"
    plotted = run_kps("plot", "--out", str(png), **env)
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    port = free_port()
    exporter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kafka_ps.app.cli",
            "exporter",
            "--port",
            str(port),
            "--interval",
            "1",
        ],
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("KPS_")}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        text = ""
        deadline = Deadline(60)
        while "kps_records_learned{" not in text and not deadline.passed():
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                continue
    finally:
        exporter.terminate()
        exporter.wait(30)
    assert f'kps_dead_letters{{job="{settings.app_id}",reason="not_object"}} 1.0' in text
    assert f'kps_consumer_lag{{job="{settings.app_id}",partition="0",role="worker"}} 0.0' in text
    learned = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kps_records_learned{")
    ]
    assert sum(learned) == snapshot.records
