"""A job's feeder sends nothing until it is opened, all of its feed once it is, and nothing
at all if the job ends before it was opened."""

from __future__ import annotations

import time

import pytest

from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import TopicSpec, ensure_topics
from kafka_ps.app.feeder import Feeder
from kafka_ps.app.termination import end_offsets

pytestmark = pytest.mark.broker


def _written(settings: JobSettings) -> int:
    return sum(end_offsets(settings.broker, settings.input_topic, 2).values())


def test_the_feed_is_sent_from_open_on(job_settings: JobSettings) -> None:
    ensure_topics(job_settings.broker, [TopicSpec(job_settings.input_topic, 2)])
    feeder = Feeder(job_settings, ((None, f"{i}".encode(), i % 2) for i in range(500)))
    time.sleep(1.0)  # long enough for a producer to have sent what it was given
    assert _written(job_settings) == 0 and not feeder.done
    feeder.open()
    feeder.close()
    assert feeder.done and _written(job_settings) == 500


def test_a_feeder_never_opened_sends_nothing(job_settings: JobSettings) -> None:
    ensure_topics(job_settings.broker, [TopicSpec(job_settings.input_topic, 2)])
    feeder = Feeder(job_settings, ((None, b"x", 0) for _ in range(10)))
    feeder.close()
    assert feeder.done and _written(job_settings) == 0
