"""A running job seen from outside: its metrics topic and its consumer groups.

Nothing here runs inside a worker or server process: everything is read from Kafka, so
``kps status``, ``kps plot`` and ``kps exporter`` can watch any job from anywhere, and the
hot path pays nothing for them. Workers publish one progressive-metrics report per logical
worker per window and every process its dead-letter counts (docs/formats.md); the groups
give the partitions' owners and lag.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, KafkaException
from confluent_kafka import TopicPartition as Partition
from confluent_kafka.admin import AdminClient

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.packer import training_topic
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings


@dataclass
class PartitionState:
    """One partition of a group's topic: who owns it and how far behind it is.

    Parameters
    ----------
    partition
        The partition.
    owner
        The group member (host and short member id) that owns it, or ``-`` for none.
    lag
        Messages between the group's committed offset and the end of the partition.
    """

    partition: int
    owner: str
    lag: int


@dataclass
class JobSnapshot:
    """What a job is doing now.

    Parameters
    ----------
    workers : dict
        The latest progressive-metrics report of each logical worker.
    dead_letters : dict
        Dead letters by reason, summed over the processes' latest counts.
    groups : dict
        Per role (``worker``, ``server``): its partitions' owners and lag.
    history : list
        Every metrics report read so far, in order, for learning curves.
    """

    workers: dict[int, dict[str, Any]] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    groups: dict[str, list[PartitionState]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(int(report.get("records", 0)) for report in self.workers.values())

    @property
    def samples_per_s(self) -> float:
        return sum(float(report.get("samples_per_s", 0.0)) for report in self.workers.values())


class JobWatcher:
    """Follows a job's metrics topic from its start and polls its groups' state.

    Parameters
    ----------
    settings
        The job's settings: its broker, app id and topics.
    """

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.snapshot = JobSnapshot()
        self._processes: dict[str, dict[str, int]] = {}
        self._position = 0
        self._admin = AdminClient(confluent_config(settings.broker))
        self._metrics = Consumer(
            {
                **confluent_config(settings.broker),
                "group.id": f"kps-watch-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        topic = settings.topic("metrics")
        self._metrics.assign([Partition(topic, 0, OFFSET_BEGINNING)])

    def read_metrics(self, timeout: float = 10.0) -> None:
        """Take in every metrics report published up to now (at most ``timeout`` seconds)."""
        topic = self.settings.topic("metrics")
        _, end = self._metrics.get_watermark_offsets(Partition(topic, 0), timeout=timeout)
        deadline = Deadline(timeout)
        while self._position < end and not deadline.passed():
            for message in self._metrics.consume(1000, 0.2):
                if message.error() is None:
                    self._take(message.value())
                    self._position = message.offset() + 1

    def _take(self, value: bytes) -> None:
        try:
            report = json.loads(value)
        except ValueError:
            return
        if not isinstance(report, dict):
            return
        if "worker" in report:
            self.snapshot.workers[int(report["worker"])] = report
            self.snapshot.history.append(report)
        elif "process" in report and "dead_letters" in report:
            # Each process's latest counts; a worker's metrics window repeats its process's.
            self._processes[str(report["process"])] = dict(report["dead_letters"])
            totals: dict[str, int] = {}
            for counts in self._processes.values():
                for reason, count in counts.items():
                    totals[reason] = totals.get(reason, 0) + int(count)
            self.snapshot.dead_letters = totals

    def read_groups(self, timeout: float = 10.0) -> None:
        """The owners and lag of the worker and server groups' partitions."""
        s = self.settings
        for role, topic, count in (
            # Workers read the packed topic when the job packs its input (agents/packer.py).
            ("worker", training_topic(s), s.partitions),
            ("server", s.topic("shard"), s.shards),
        ):
            self.snapshot.groups[role] = self._group(s.group(role), topic, count, timeout)

    def _group(self, group: str, topic: str, count: int, timeout: float) -> list[PartitionState]:
        owners: dict[int, str] = {}
        try:
            described = self._admin.describe_consumer_groups([group], request_timeout=timeout)
            for member in described[group].result().members:
                assigned = member.assignment.topic_partitions if member.assignment else []
                for tp in assigned:
                    if tp.topic == topic:
                        member_id = member.member_id.rsplit("-", 1)[-1][:8]
                        owners[tp.partition] = f"{member.host.strip('/')} {member_id}"
            wanted = [Partition(topic, p) for p in range(count)]
            request = ConsumerGroupTopicPartitions(group, wanted)
            offsets = self._admin.list_consumer_group_offsets([request], request_timeout=timeout)
            committed = {tp.partition: tp.offset for tp in offsets[group].result().topic_partitions}
        except KafkaException:
            committed = {}
        states = []
        for partition in range(count):
            low, high = self._metrics.get_watermark_offsets(
                Partition(topic, partition), timeout=timeout
            )
            done = committed.get(partition, -1)
            lag = high - (done if done >= 0 else low)
            states.append(PartitionState(partition, owners.get(partition, "-"), lag))
        return states

    def poll(self) -> JobSnapshot:
        self.read_metrics()
        self.read_groups()
        return self.snapshot

    def close(self) -> None:
        self._metrics.close()


def learning_curve(history: Iterable[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(records learned by the whole job, window loss, job samples/s) after each report."""
    latest: dict[int, dict[str, Any]] = {}
    curve = []
    for report in history:
        latest[int(report["worker"])] = report
        loss = next((float(v) for k, v in report.items() if k.startswith("window_")), float("nan"))
        records = sum(int(r.get("records", 0)) for r in latest.values())
        rate = sum(float(r.get("samples_per_s", 0.0)) for r in latest.values())
        curve.append((records, loss, rate))
    return curve
