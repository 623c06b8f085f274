"""The Faust application every kafka-ps process runs."""

from __future__ import annotations

import faust

from kafka_ps.agents.faust_compat import apply_faust_patches
from kafka_ps.agents.security import faust_config
from kafka_ps.agents.settings import JobSettings


def create_app(settings: JobSettings, group: str) -> faust.App:
    """A Faust app configured for kafka-ps: aiokafka driver, RocksDB tables, no web server.

    ``group`` is the Faust app id, hence the consumer group and the prefix of table
    changelogs. Topics are created by :mod:`agents.topics` before any process starts, so
    Faust never guesses partition counts.
    """
    apply_faust_patches(settings.fetch_max_wait_ms)
    return faust.App(
        group,
        **faust_config(settings.broker),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.instance_id,
        table_standby_replicas=settings.standby_replicas,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_commit_interval=settings.commit_interval,
        key_serializer="raw",
        value_serializer="raw",
    )
