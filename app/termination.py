"""Termination on finite input, without a wait-time guess.

A job is done with its input when, for every training partition, pushes cover every
record up to the end offset the partition had when the wait began, and the shards have
applied every one of those pushes. Both are read off the topics: pushes name the training
offsets they cover (``first_offset``..``last_offset``), and a server commits a shard-topic
offset only after it has processed the message. Committed training offsets are no proof:
Faust may commit a record before the push that learned it is produced.

Under BSP a shard defers a clock's pushes until every worker has passed that clock; the
workers' heartbeats do that within an idle interval, so the wait also covers one more push
from every worker to every shard after the last data push.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.clocks import Consistency
from kafka_ps.tables.messages import Kind, decode_message


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({**confluent_config(bootstrap), "group.id": f"kps-{uuid.uuid4().hex}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


class PushWatcher:
    """Tails the shard topic: per logical worker, the training offsets its pushes cover and
    the shard-topic offset of its latest push on each shard.

    Parameters
    ----------
    settings
        The job's settings: its broker and shard topic.
    """

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.covered: dict[int, int] = defaultdict(lambda: -1)
        self.latest: dict[tuple[int, int], int] = {}
        self.consumer = Consumer(
            {**confluent_config(settings.broker), "group.id": f"kps-watch-{uuid.uuid4().hex}"}
        )
        topic = settings.topic("shard")
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.shards)]
        )

    def poll(self, timeout: float) -> None:
        for message in self.consumer.consume(2000, timeout):
            if message.error() is not None:
                continue
            push = decode_message(message.value())
            if push.kind is not Kind.PUSH:
                continue
            self.covered[push.worker] = max(self.covered[push.worker], push.last_offset)
            self.latest[(push.worker, message.partition())] = message.offset()

    def close(self) -> None:
        self.consumer.close()


def _committed(settings: JobSettings, timeout: float = 10) -> dict[int, int]:
    """The servers' committed shard-topic offsets; none when the broker did not answer in
    time (just started, or busy): the caller asks again, within its own deadline."""
    topic = settings.topic("shard")
    consumer = Consumer({**confluent_config(settings.broker), "group.id": settings.group("server")})
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(settings.shards)], timeout
        )
        return {tp.partition: tp.offset for tp in committed}
    except KafkaException as error:
        if error.args[0].code() != KafkaError._TIMED_OUT:
            raise
        return {}
    finally:
        consumer.close()


class Termination:
    """Decides, one step at a time, whether a job has learned its input up to ``ends``.

    Parameters
    ----------
    settings
        The job's settings.
    ends
        Per training partition, the end offset its input had when the job started.
    """

    def __init__(self, settings: JobSettings, ends: dict[int, int]) -> None:
        self.settings = settings
        self.ends = {p: end for p, end in ends.items() if end > 0}
        self.watcher = PushWatcher(settings)
        self.bsp = Consistency.parse(settings.consistency).staleness == 0
        self.marks: dict[tuple[int, int], int] | None = None
        self.targets: dict[int, int] | None = None

    def step(self, poll: float = 0.1) -> bool:
        """Advance the wait by at most ``poll`` seconds; return whether everything is learned."""
        watcher = self.watcher
        if self.targets is None:
            watcher.poll(poll)
            if any(watcher.covered[p] < end - 1 for p, end in self.ends.items()):
                return False
            if self.bsp and self.marks is None:
                self.marks = dict(watcher.latest)
            if self.marks is not None and any(
                watcher.latest.get(key, -1) <= offset for key, offset in self.marks.items()
            ):
                return False
            shard = self.settings.topic("shard")
            self.targets = end_offsets(self.settings.broker, shard, self.settings.shards)
            for (_, partition), offset in watcher.latest.items():
                self.targets[partition] = max(self.targets[partition], offset + 1)
        committed = _committed(self.settings)
        if any(committed.get(p, -1) < end for p, end in self.targets.items() if end):
            time.sleep(poll)
            return False
        return True

    def progress(self) -> tuple[int, int]:
        """Input messages learned so far, and how many there are to learn."""
        covered = self.watcher.covered
        learned = sum(min(covered[p] + 1, end) for p, end in self.ends.items())
        return learned, sum(self.ends.values())

    def close(self) -> None:
        self.watcher.close()


def wait_until_learned(settings: JobSettings, ends: dict[int, int], timeout: float = 600) -> None:
    """Block until every record below ``ends[p]`` of each training partition is learned and
    every push is applied; raise TimeoutError after ``timeout`` seconds."""
    deadline = Deadline(timeout)
    termination = Termination(settings, ends)
    try:
        while not termination.step():
            if deadline.passed():
                raise TimeoutError("the job did not learn its input in time")
    finally:
        termination.close()
