"""Soak: a job at saturation for a fixed time, watched for stalls, throughput and memory.

One server and two learning processes train FTRL on the flights stream, fed faster than
they learn (the data set is replayed as needed), under the chosen consistency model.
Every few seconds it samples records learned (the training offsets the pushes on the shard
topic cover; one record per input offset here) and
each process's resident memory. A stall is a sample interval in which nothing was
learned although input was waiting.

    python -m benchmarks.soak --seconds 600 --consistency ssp:4
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.jobs import job_settings
from kafka_ps.agents.client import produce
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import FLIGHT_CROSSES, flights
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.termination import PushWatcher, end_offsets
from kafka_ps.app.train import job_processes, stop_all, training_records


@dataclass
class SoakReport:
    seconds: float
    learned: int
    stalls: int
    samples: list[dict[str, float]] = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        return self.learned / self.seconds


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(
    settings: JobSettings, seconds: float, every: float = 5.0, logs: Path | None = None
) -> SoakReport:
    processes = job_processes(settings, workers=2, servers=1, logs=logs or settings.data_dir)
    stop = threading.Event()
    records = list(flights(limit=100_000))

    def feed() -> None:
        """Keep about 50,000 records waiting: saturated, with a bounded backlog."""
        for chunk in itertools.count():
            while waiting() - learned() > 50_000:
                if stop.wait(0.5):
                    return
            if stop.is_set():
                return
            start = (chunk * 5_000) % len(records)
            produce(
                settings.broker,
                settings.input_topic,
                training_records(records[start : start + 5_000], settings.partitions),
            )

    watcher = PushWatcher(settings)
    watching = threading.Lock()

    def learned() -> int:
        with watching:
            watcher.poll(0.1)
            return sum(watcher.covered[w] + 1 for w in range(settings.partitions))

    def waiting() -> int:
        return sum(end_offsets(settings.broker, settings.input_topic, settings.partitions).values())

    report = SoakReport(seconds, 0, 0)
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        started = time.monotonic()
        before = learned()
        while (now := time.monotonic()) - started < seconds:
            time.sleep(every)
            count = learned()
            if count == before and waiting() > count:
                report.stalls += 1
            report.samples.append(
                {
                    "t": round(now - started + every, 1),
                    "samples_per_s": round((count - before) / every, 1),
                    **{
                        f"rss_mib_{p.job}_{i}": round(rss_mib(p.pid), 1)
                        for i, p in enumerate(processes)
                    },
                }
            )
            before = count
            if not all(process.running for process in processes):
                raise RuntimeError("a process died during the soak")
        report.learned = learned()
        report.seconds = time.monotonic() - started
    finally:
        stop.set()
        stop_all(processes)
        with watching:
            watcher.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--consistency", default="asp")
    args = parser.parse_args()
    LocalKafka().start()
    settings = job_settings(
        "soak",
        model="logreg_ftrl",
        consistency=args.consistency,
        model_params={"crosses": [list(cross) for cross in FLIGHT_CROSSES]},
    )
    report = soak(settings, args.seconds)
    for sample in report.samples:
        print(json.dumps(sample))
    print(
        json.dumps(
            {
                "consistency": args.consistency,
                "seconds": round(report.seconds, 1),
                "learned": report.learned,
                "samples_per_s": round(report.samples_per_s, 1),
                "stalls": report.stalls,
            }
        )
    )


if __name__ == "__main__":
    main()
