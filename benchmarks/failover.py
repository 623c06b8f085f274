"""Failover: time from a shard process's SIGKILL to the next answered pull of its shards.

Two server processes host 4 shards of a counting job while one learning process pulls and
pushes continuously. After a warm-up that fills the table, the server hosting shard 0 is
SIGKILLed, and the time is measured from the kill to the first pull reply for a pull sent
to one of the shards it hosted (timestamps from the shard and reply topics). Scenarios:

- ``no-standby``: the victim stays dead; the survivor takes its shards over once the
  group notices (session timeout) and rebuilds them from their changelogs.
- ``standby``: the same with ``table_standby_replicas=1``: the survivor already holds a
  warm copy of every shard it may take over.
- ``restart``: the victim is restarted at once with the same static-membership id and
  takes its shards back from its own disk, without a rebalance.

Detection is the group's session timeout (the broker's minimum is lowered to 0.5 s for
this); the rest is the rebalance and, without a standby, the rebuild from the changelog.

    python -m benchmarks.failover --repeat 3 --session-timeout 0.6
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka.admin import AdminClient

from benchmarks.chaos_driver import chaos_settings
from kafka_ps.agents.client import produce, read_all
from kafka_ps.agents.records import encode_record
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings, state_dir
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.process import JobProcess
from kafka_ps.app.train import stop_all
from kafka_ps.tables.messages import Kind, PsMessage, decode_message

SCENARIOS = ("no-standby", "standby", "restart")


def _stream(
    rate: float, stop: threading.Event, partitions: int
) -> Iterator[tuple[None, bytes, int]]:
    started, i = time.monotonic(), 0
    while not stop.is_set():
        if (wait := started + i / rate - time.monotonic()) > 0:
            time.sleep(wait)
        yield None, encode_record(features={"key": f"k{i}"}), i % partitions
        i += 1


def shards_of(settings: JobSettings, instance_id: str) -> set[int]:
    """The shard-topic partitions the member ``instance_id`` of the server group holds."""
    admin = AdminClient(confluent_config(settings.broker))
    group = settings.group("server")
    description = admin.describe_consumer_groups([group])[group].result(10)
    for member in description.members:
        if member.group_instance_id == instance_id:
            return {
                tp.partition
                for tp in member.assignment.topic_partitions
                if tp.topic == settings.topic("shard")
            }
    raise RuntimeError(f"{instance_id} is not a member of {group}")


def _read(
    settings: JobSettings, topic: str, partitions: list[int], since_ms: float
) -> list[tuple[int, PsMessage]]:
    return [
        (m.timestamp()[1], decode_message(m.value()))
        for m in read_all(settings.broker, topic, partitions)
        if m.timestamp()[1] >= since_ms
    ]


def failover_seconds(settings: JobSettings, victim_shards: set[int], killed_ms: float) -> float:
    """From the kill to the first reply to a pull addressed to one of the victim's shards."""
    pulls = {
        message.request_id
        for _, message in _read(settings, settings.topic("shard"), sorted(victim_shards), 0)
        if message.kind is Kind.PULL and message.keys
    }
    replies = _read(
        settings, settings.topic("replies"), list(range(settings.partitions)), killed_ms
    )
    answered = [ts for ts, message in replies if message.request_id in pulls]
    if not answered:
        raise RuntimeError("no pull to the killed shards was answered")
    return (min(answered) - killed_ms) / 1000


def one_run(scenario: str, workdir: Path, session_timeout: float, warmup: float) -> float:
    run = f"bench-failover-{scenario}-{uuid.uuid4().hex[:8]}"
    settings = chaos_settings(
        JobSettings.for_run(
            run,
            workdir / run,
            broker=LocalKafka().settings.bootstrap,
            partitions=2,
            shards=4,
            batch_size=16,
            session_timeout=session_timeout,
            heartbeat_interval=min(1.0, session_timeout / 4),
            standby_replicas=1 if scenario == "standby" else 0,
        )
    )

    def process(job: str, i: int) -> JobProcess:
        update = {"data_dir": settings.data_dir / f"{job}-{i}", "instance_id": f"{run}-{job}-{i}"}
        return JobProcess(job, settings.model_copy(update=update), workdir / run / f"{job}-{i}.log")

    servers = [process("server", 0), process("server", 1)]
    worker = process("worker", 0)
    stop = threading.Event()
    feeder = threading.Thread(
        target=produce, args=(settings.broker, settings.input_topic, _stream(400, stop, 2))
    )
    try:
        for p in [*servers, worker]:
            p.start()
        for p in [*servers, worker]:
            p.wait_ready()
        feeder.start()
        time.sleep(warmup)
        victim = next(s for s in servers if 0 in shards_of(settings, s.settings.instance_id or ""))
        owned = shards_of(settings, victim.settings.instance_id or "")
        killed_ms = time.time() * 1000
        victim.kill()
        if scenario == "restart":
            victim.start()
        time.sleep(session_timeout + 15)
        stop.set()
        feeder.join()
        return failover_seconds(settings, owned, killed_ms)
    finally:
        stop.set()
        stop_all([worker, *servers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--session-timeout", type=float, default=0.6)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    LocalKafka().start()
    workdir = state_dir() / "bench-failover"
    for scenario in args.scenarios.split(","):
        times = [
            one_run(scenario, workdir, args.session_timeout, args.warmup)
            for _ in range(args.repeat)
        ]
        print(
            json.dumps(
                {
                    "scenario": scenario,
                    "session_timeout_s": args.session_timeout,
                    "failover_s": [round(t, 2) for t in times],
                    "median_s": round(statistics.median(times), 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
