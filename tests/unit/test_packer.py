"""The packer's life cycle without a broker."""

from __future__ import annotations

from kafka_ps.agents.packer import Packer
from kafka_ps.agents.settings import JobSettings


def test_a_packer_never_started_stops_without_error() -> None:
    # A learning process stopped as it starts (its job ended meanwhile) stops its packer
    # before the task that starts it ran; that stop used to raise and fail the exit code.
    packer = Packer(JobSettings(app_id="never-started"))
    packer.stop()
    assert packer.stopping.is_set() and not packer.thread.is_alive()
