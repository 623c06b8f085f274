"""Termination's reading of the servers' committed offsets, where no broker answers."""

from __future__ import annotations

import time

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.termination import _committed
from tests.cli import free_port


def test_a_broker_that_does_not_answer_in_time_means_nothing_committed_yet() -> None:
    # Nothing listens there: the read times out, and the wait asks again (it has its own
    # deadline) instead of failing the job, as it did once on a just-started broker.
    settings = JobSettings(broker=f"127.0.0.1:{free_port()}", app_id="unanswered")
    started = time.monotonic()
    assert _committed(settings, timeout=0.5) == {}
    assert time.monotonic() - started < 5
