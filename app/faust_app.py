"""The Faust application every kafka-ps worker process runs."""

from __future__ import annotations

import faust

from app.settings import JobSettings


def create_app(settings: JobSettings) -> faust.App:
    """A Faust app configured for kafka-ps: aiokafka driver, RocksDB tables, no web server.

    Topics are created by :mod:`app.topics` before any worker starts, so Faust never
    guesses partition counts.
    """
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store="rocksdb://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
    )
