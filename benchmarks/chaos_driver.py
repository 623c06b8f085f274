"""The chaos run: count records through the parameter server while processes are SIGKILLed.

Every training record names one of ``keys`` keys and the counting model
(:mod:`agents.models.count`) pushes +1 to that key's counter. Records are produced at a
steady pace while a driver SIGKILLs a random worker or server process every few seconds
and starts it again at once (same data directory, same static-membership id), under the
consistency model asked for (ASP, BSP or SSP). The run is drained before anything is
counted: the job has learned every record (:mod:`app.termination`), the workers are
stopped, and the server group has committed the shard topic up to its end, so every
pushed message has been consumed and applied. Then every counter, both in the shards'
changelog and on the model-updates topic, must equal the number of records produced for
its key, and the predictions topic must hold a prediction of every record on the input
topic, carrying that record's key, and of no other: nothing lost, nothing counted twice
(invariants 2 and 6, docs/architecture.md#invariants). A batch whose predictions are
published again after a takeover is counted once, as every reader counts it
(docs/formats.md, "Predictions and metrics").
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kafka_ps.agents.client import group_lag, produce, read_all
from kafka_ps.agents.deadline import wait_until
from kafka_ps.agents.model_export import read_model, read_table
from kafka_ps.agents.models.count import COUNT
from kafka_ps.agents.records import encode_record, parse_record
from kafka_ps.agents.server import PARAMS_TABLE
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.process import JobProcess
from kafka_ps.app.termination import wait_until_learned
from kafka_ps.app.train import read_prediction_rows, stop_all
from kafka_ps.tables.keys import parse_key

log = logging.getLogger(__name__)

Target = Literal["workers", "servers"]

#: Keys starting with this are bookkeeping (clocks, marks), never parameters.
RESERVED_PREFIX = b"__"


@dataclass(frozen=True)
class Tally:
    """How one view of the run compares with what was produced: per name (a counter's key,
    or a record, :func:`record_name`), how many times it was produced and counted."""

    lost: int
    doubled: int
    #: Every name whose count is wrong: (produced, counted or None if absent).
    wrong: dict[str, tuple[int, int | None]]
    #: Records the view holds more than once and counts once (predictions of a batch
    #: published again after a takeover); None for a view of counters.
    republished: int | None = None

    @classmethod
    def of(
        cls, produced: Mapping[str, int], counts: Mapping[str, int], republished: int | None = None
    ) -> Tally:
        names = sorted(produced.keys() | counts.keys())
        return cls(
            lost=sum(max(0, n - counts.get(k, 0)) for k, n in produced.items()),
            doubled=sum(max(0, n - produced.get(k, 0)) for k, n in counts.items()),
            wrong={
                k: (produced.get(k, 0), counts.get(k))
                for k in names
                if counts.get(k) != produced.get(k)
            },
            republished=republished,
        )

    @property
    def exact(self) -> bool:
        return not self.wrong

    def summary(self, limit: int = 30) -> dict[str, object]:
        summary: dict[str, object] = {
            "lost": self.lost,
            "doubled": self.doubled,
            "wrong_keys": len(self.wrong),
            "first_wrong": dict(list(self.wrong.items())[:limit]),
        }
        if self.republished is not None:
            summary["republished"] = self.republished
        return summary


def record_name(record: tuple[int, int, int | None], key: str | None) -> str:
    """A record as the predictions view counts it: its ``partition:offset`` (and
    ``:index`` inside a ``kps-batch`` message), then its own key: ``3:1207 r5012``.

    A prediction of the record at 3:1207 that carries another key is of no record
    produced, so a batch republished with other keys, or offsets given to the wrong
    records, count as lost and doubled."""
    partition, offset, index = record
    place = f"{partition}:{offset}" if index is None else f"{partition}:{offset}:{index}"
    return f"{place} {key}"


@dataclass(frozen=True)
class ChaosResult:
    kills: int
    records: int
    seconds: float
    #: Records produced per key.
    produced: dict[str, int]
    #: The counts the shards' changelog ended with, and those on the model-updates topic.
    counted: dict[str, int]
    published: dict[str, int]
    #: Every record on the input topic, by :func:`record_name`.
    inputs: frozenset[str]
    #: Per record named on the predictions topic, how many times it is there.
    predicted: dict[str, int]
    #: Each SIGKILL: which process, and when (seconds after the processes started).
    victims: tuple[str, ...] = ()

    def tallies(self) -> dict[str, Tally]:
        """All three views: the table (its changelog), the model-updates topic, and the
        predictions topic, where each record counts once however often it was published."""
        republished = sum(n - 1 for n in self.predicted.values())
        return {
            "changelog": Tally.of(self.produced, self.counted),
            "model-updates": Tally.of(self.produced, self.published),
            "predictions": Tally.of(
                dict.fromkeys(self.inputs, 1), dict.fromkeys(self.predicted, 1), republished
            ),
        }


def chaos_settings(settings: JobSettings, consistency: str = "asp") -> JobSettings:
    """The counting model (its records carry no label), and pull retries quick enough to
    ride out a dead shard."""
    return settings.model_copy(
        update={
            "model": "kafka_ps.agents.models.count:KeyCounter",
            "model_params": {},
            "predict_unlabelled": True,
            "consistency": consistency,
            "pull_timeout": 2.0,
        }
    )


def _paced(records: list[tuple[str, int]], seconds: float) -> Iterator[tuple[None, bytes, int]]:
    """The records, one to a message, each with a key of its own (``r<n>``, its place in
    the stream) that its prediction carries."""
    started = time.monotonic()
    for i, (key, partition) in enumerate(records):
        due = started + seconds * i / len(records)
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        yield None, encode_record(features={"key": key}, key=f"r{i}"), partition


def _counts(params: Mapping[bytes, float]) -> dict[str, int]:
    """The counters among parameter values (keys of other parameters skipped)."""
    counts = {}
    for key, value in params.items():
        name, index = parse_key(key)
        if name == COUNT:
            counts[index] = round(value)
    return counts


def counts_in_changelog(settings: JobSettings) -> dict[str, int]:
    """Every counter as the shards' table holds it, read from its compacted changelog."""
    table = read_table(settings.broker, settings.topic(f"server-{PARAMS_TABLE}-changelog"))
    return _counts({key: float(slots[0][0]) for key, slots in table.items()})


def counts_on_model_updates(settings: JobSettings) -> dict[str, int]:
    """Every counter as any Kafka client reads it off the model-updates topic."""
    model = read_model(settings.broker, settings.topic("model-updates"))
    return _counts({key: float(value[0]) for key, value in model.items()})


def records_on_input(settings: JobSettings) -> frozenset[str]:
    """Every record on the job's input topic, by :func:`record_name`: the topic is fresh for
    the run, so it holds what the feeder produced, one record to a message."""
    messages = read_all(settings.broker, settings.input_topic, range(settings.partitions))
    return frozenset(
        record_name(
            (message.partition(), message.offset(), None),
            _decoded(parse_record(message.value()).key),
        )
        for message in messages
    )


def predictions_on_topic(settings: JobSettings) -> dict[str, int]:
    """Per record named on the job's predictions topic, by :func:`record_name`, how many
    times its prediction is there."""
    rows = read_prediction_rows(settings)
    return dict(Counter(record_name(row.record, row.key) for row in rows))


def _decoded(key: bytes | None) -> str | None:
    """A record's key as a predictions message writes it (agents/worker.py)."""
    return key.decode(errors="replace") if key else None


def wait_shards_drained(settings: JobSettings, timeout: float = 120.0) -> None:
    """Block until the server group has committed every message of the shard topic: each
    push (and pull) sent has been consumed and applied. Stop the workers first, or their
    heartbeats (BSP, SSP) keep the topic growing."""
    lag = 0

    def drained() -> bool:
        nonlocal lag
        lag = group_lag(settings.broker, settings.group("server"), settings.topic("shard"))
        return lag == 0

    wait_until(
        drained, timeout, 0.2, lambda: f"the servers left {lag} shard-topic messages uncommitted"
    )


def _processes(
    settings: JobSettings, logs: Path, workers: int, servers: int
) -> dict[Target, list[JobProcess]]:
    """The job's processes by role, each with its own data directory and membership id."""
    return {
        role: [
            JobProcess(
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
    consistency: str = "asp",
) -> ChaosResult:
    """Kill ``kills`` random ``target`` processes, one every ``interval`` seconds (±50%),
    while ``records`` records over ``keys`` keys are produced, the last once all are
    produced; count what was learned."""
    settings = chaos_settings(settings, consistency)
    rng = random.Random(seed)
    stream = [
        (f"k{rng.randrange(keys)}", rng.randrange(settings.partitions)) for _ in range(records)
    ]
    processes = _processes(settings, logs, workers, servers)
    everyone = processes["workers"] + processes["servers"]
    victims: list[str] = []
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
            if kill == kills - 1:
                # The last kill lands as production ends: no later write repairs what it loses.
                feeder.join()
            victim = rng.choice(processes[target])
            victims.append(f"{victim.log_path.stem}@{time.monotonic() - started:.1f}s")
            log.info("kill %d: SIGKILL %s (pid %d)", kill + 1, victim.log_path.stem, victim.pid)
            victim.kill()
            victim.start()
        feeder.join()
        wait_until_learned(settings, dict(Counter(partition for _, partition in stream)))
        stop_all(processes["workers"])
        wait_shards_drained(settings)
        seconds = time.monotonic() - started
    finally:
        stop_all(everyone)
    return ChaosResult(
        kills=kills,
        records=records,
        seconds=seconds,
        produced=dict(Counter(key for key, _ in stream)),
        counted=counts_in_changelog(settings),
        published=counts_on_model_updates(settings),
        inputs=records_on_input(settings),
        predicted=predictions_on_topic(settings),
        victims=tuple(victims),
    )
