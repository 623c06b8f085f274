"""Explicit topic creation: every topic gets its partition count and cleanup policy up front.

The broker runs with ``auto.create.topics.enable=false``; Faust and the broker disagree
about default partition counts, so nothing is left to either to guess.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.security import confluent_config
from kafka_ps.tables.errors import KafkaPsError


@dataclass(frozen=True)
class TopicSpec:
    """A topic kafka-ps creates, and checks when it exists.

    Parameters
    ----------
    name
        The topic.
    partitions
        Its partition count; an existing topic with another count is an error.
    compacted
        ``cleanup.policy=compact`` (else ``delete``).
    config
        Further topic configuration.
    """

    name: str
    partitions: int
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def new_topic(self) -> NewTopic:
        config = {"cleanup.policy": "compact" if self.compacted else "delete", **self.config}
        # -1: the cluster's default.replication.factor (1 on the local broker, 3 in
        # docker/compose.prod.yml).
        return NewTopic(
            self.name, num_partitions=self.partitions, replication_factor=-1, config=config
        )


class TopicMismatchError(KafkaPsError, RuntimeError):
    """A topic exists with another partition count than the job needs."""


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that are missing; verify the partition counts of those that exist."""
    specs = list(specs)
    admin = AdminClient(confluent_config(bootstrap))
    existing = admin.list_topics(timeout=timeout).topics
    for spec in specs:
        have = len(existing[spec.name].partitions) if spec.name in existing else 0
        if have and have != spec.partitions:  # refused now, not after the metadata wait
            raise TopicMismatchError(_mismatch(spec, have))
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [spec.new_topic() for spec in missing], operation_timeout=timeout
        )
        for _name, future in futures.items():
            try:
                future.result()
            except KafkaException as error:
                if error.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
    _await_metadata(admin, specs, timeout)


def _partitions_with_leaders(admin: AdminClient, name: str) -> int:
    topic = admin.list_topics(name, timeout=10).topics.get(name)
    if topic is None or topic.error is not None:
        return 0
    return sum(1 for partition in topic.partitions.values() if partition.leader >= 0)


def _await_metadata(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> None:
    """A created topic shows up in metadata, with leaders, a moment after creation."""
    deadline = Deadline(timeout)
    for spec in specs:
        have = _partitions_with_leaders(admin, spec.name)
        while have < spec.partitions and not deadline.passed():
            time.sleep(0.1)
            have = _partitions_with_leaders(admin, spec.name)
        if have != spec.partitions:
            raise TopicMismatchError(_mismatch(spec, have))


def _mismatch(spec: TopicSpec, have: int) -> str:
    return f"topic {spec.name!r} has {have} partitions, the job needs {spec.partitions}"


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 30.0) -> None:
    admin = AdminClient(confluent_config(bootstrap))
    names = list(names)
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise
