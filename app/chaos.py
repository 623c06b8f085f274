"""The chaos run: count records through the parameter server while processes are SIGKILLed.

Every training record names one of ``keys`` keys and the counting model
(:mod:`agents.models.count`) pushes +1 to that key's counter. Records are produced at a
steady pace while a driver SIGKILLs a random worker or server process every few seconds
and starts it again at once (same data directory, same static-membership id). Once the
job has learned every record (:mod:`app.termination`), every counter in the shards'
changelog must equal the number of records produced for its key: nothing lost, nothing
counted twice (DESIGN.md, invariant 2).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agents.models.count import COUNT
from agents.server import PARAMS_TABLE
from app.client import produce
from app.model_export import read_table
from app.records import encode_record
from app.settings import JobSettings
from app.termination import wait_until_learned
from app.train import stop_all
from app.worker import WorkerProcess
from tables.keys import parse_key

log = logging.getLogger(__name__)

Target = Literal["workers", "servers"]


@dataclass(frozen=True)
class ChaosResult:
    kills: int
    records: int
    seconds: float
    #: Records produced per key, and the counts the shards ended with.
    produced: dict[str, int]
    counted: dict[str, int]

    @property
    def lost(self) -> int:
        return sum(max(0, n - self.counted.get(k, 0)) for k, n in self.produced.items())

    @property
    def doubled(self) -> int:
        extra = {k: n - self.produced.get(k, 0) for k, n in self.counted.items()}
        return sum(max(0, n) for n in extra.values())


def chaos_settings(settings: JobSettings) -> JobSettings:
    """The counting model (its records carry no label), and pull retries quick enough to
    ride out a dead shard."""
    return settings.model_copy(
        update={
            "model": "agents.models.count:KeyCounter",
            "model_params": {},
            "predict_unlabelled": True,
            "consistency": "asp",
            "pull_timeout": 2.0,
        }
    )


def _paced(records: list[tuple[str, int]], seconds: float) -> Iterator[tuple[None, bytes, int]]:
    started = time.monotonic()
    for i, (key, partition) in enumerate(records):
        due = started + seconds * i / len(records)
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        yield None, encode_record(features={"key": key}), partition


def counts_in_changelog(settings: JobSettings) -> dict[str, int]:
    table = read_table(settings.broker, settings.topic(f"server-{PARAMS_TABLE}-changelog"))
    counts = {}
    for key, slots in table.items():
        name, index = parse_key(key)
        if name == COUNT:
            counts[index] = round(float(slots[0][0]))
    return counts


def run_chaos(
    settings: JobSettings,
    target: Target,
    kills: int,
    logs: Path,
    records: int = 20_000,
    keys: int = 1_000,
    workers: int = 3,
    servers: int = 3,
    interval: float = 3.0,
    seed: int = 0,
) -> ChaosResult:
    """Kill ``kills`` random ``target`` processes, one every ``interval`` seconds (±50%),
    while ``records`` records over ``keys`` keys are produced; count what was learned."""
    settings = chaos_settings(settings)
    rng = random.Random(seed)
    stream = [
        (f"k{rng.randrange(keys)}", rng.randrange(settings.partitions)) for _ in range(records)
    ]
    processes = {
        role: [
            WorkerProcess(
                job,
                settings.model_copy(
                    update={
                        "data_dir": settings.data_dir / f"{job}-{i}",
                        "instance_id": f"{settings.app_id}-{job}-{i}",
                    }
                ),
                logs / f"{job}-{i}.log",
            )
            for i in range(count)
        ]
        for role, job, count in (("workers", "worker", workers), ("servers", "server", servers))
    }
    everyone = processes["workers"] + processes["servers"]
    started = time.monotonic()
    try:
        for process in everyone:
            process.start()
        for process in everyone:
            process.wait_ready()
        feeder = threading.Thread(
            target=produce,
            args=(settings.broker, settings.input_topic, _paced(stream, kills * interval)),
        )
        feeder.start()
        for kill in range(kills):
            time.sleep(interval * rng.uniform(0.5, 1.5))
            victim = rng.choice(processes[target])
            log.info("kill %d: SIGKILL %s (pid %d)", kill + 1, victim.log_path.stem, victim.pid)
            victim.kill()
            victim.start()
        feeder.join()
        ends = Counter(partition for _, partition in stream)
        wait_until_learned(settings, dict(ends))
        seconds = time.monotonic() - started
    finally:
        stop_all(everyone)
    return ChaosResult(
        kills=kills,
        records=records,
        seconds=seconds,
        produced=dict(Counter(key for key, _ in stream)),
        counted=counts_in_changelog(settings),
    )
