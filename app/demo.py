"""The smoke demo: a Faust worker process with a RocksDB table counts keyed increments.

It is the README's main job until the parameter server trains real models: start (or
reuse) the broker, start a worker process, stream increments through it, print the table.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from agents.counter import (
    COUNTS_TABLE,
    changelog_topic,
    decode_count,
    increment_records,
)
from app.client import produce, read_latest, wait_caught_up
from app.local_kafka import LocalKafka
from app.settings import REPO_ROOT, JobSettings
from app.worker import WorkerProcess
from tables.local_store import read_table

WORDS = [
    "kafka",
    "parameter",
    "server",
    "shard",
    "worker",
    "push",
    "pull",
    "clock",
    "model",
    "update",
]


def run_demo(records: int = 5000) -> int:
    status = LocalKafka().start()
    print(f"broker: {status.detail}")
    run = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    settings = JobSettings(
        app_id=run, input_topic=f"{run}-increments", data_dir=REPO_ROOT / ".kps" / run
    )
    keys = [WORDS[(i * 7 + i // 3) % len(WORDS)].encode() for i in range(records)]
    expected = Counter(keys)
    started = time.monotonic()
    worker = WorkerProcess("counter", settings, settings.data_dir / "worker.log")
    with worker:
        worker.wait_ready()
        print(f"worker: pid {worker.pid}, ready in {time.monotonic() - started:.1f}s")
        produce(
            settings.broker,
            settings.input_topic,
            increment_records(((key, 1) for key in keys), settings.partitions),
        )
        wait_caught_up(settings.broker, settings.app_id, settings.input_topic)
        elapsed = time.monotonic() - started
        code = worker.terminate()
    print(f"{records} increments applied in {elapsed:.1f}s; worker exited with {code}")
    local = {k: decode_count(v) for k, v in read_table(settings.data_dir, COUNTS_TABLE).items()}
    changelog = read_latest(settings.broker, changelog_topic(settings, COUNTS_TABLE))
    durable = {k: decode_count(v) for k, v in changelog.items()}
    print(f"{'key':<12}{'count':>8}{'changelog':>11}")
    for key in sorted(local):
        print(f"{key.decode():<12}{local[key]:>8}{durable.get(key, 0):>11}")
    exact = local == durable == dict(expected)
    print(f"total {sum(local.values())} of {records}: {'exact' if exact else 'MISMATCH'}")
    return 0 if exact else 1
