"""How many increments a Faust table loses or applies twice when its worker is SIGKILLed.

Each run streams increments of +1 over a set of keys to one counting worker, SIGKILLs it
at a random moment while records are still arriving, restarts it, lets it catch up, and
compares every count in the table's compacted changelog with what was produced. It runs
the plain Faust counter (``counter-naive``, at-least-once) and the offset-versioned
counter (``counter``) side by side, so the baseline and the mechanism are measured in
the same run on the same machine.

    python -m benchmarks.sigkill_baseline --runs 10
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from benchmarks.counter import COUNTS_TABLE, changelog_topic, decode_count, increment_records
from kafka_ps.agents.client import produce, read_latest, wait_caught_up
from kafka_ps.agents.settings import JobSettings, state_dir
from kafka_ps.agents.topics import delete_topics
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.process import JobProcess


def one_run(job: str, records: int, keys: int, seed: int, workdir: Path) -> dict[str, float]:
    rng = random.Random(seed)
    run = f"bench-kill-{job}-{uuid.uuid4().hex[:8]}"
    settings = JobSettings.for_run(run, workdir / run, broker=LocalKafka().settings.bootstrap)
    stream = [(f"key-{rng.randrange(keys)}".encode(), 1) for _ in range(records)]
    expected = Counter(key for key, _ in stream)
    chunks = [stream[i : i + records // 20] for i in range(0, records, records // 20)]

    def feed() -> None:
        for chunk in chunks:
            produce(settings.broker, settings.input_topic, increment_records(chunk, 4))
            time.sleep(0.15)

    log = workdir / f"{run}.log"
    worker = JobProcess(job, settings, log).start()
    worker.wait_ready()
    producer = threading.Thread(target=feed)
    producer.start()
    kill_after = rng.uniform(0.3, 2.5)
    time.sleep(kill_after)
    worker.kill()
    producer.join()
    worker = JobProcess(job, settings, log).start()
    wait_caught_up(settings.broker, settings.app_id, settings.input_topic, timeout=180)
    worker.terminate()
    table = read_latest(settings.broker, changelog_topic(settings, COUNTS_TABLE))
    got = {key: decode_count(value) for key, value in table.items()}
    delete_topics(settings.broker, [settings.input_topic, changelog_topic(settings, COUNTS_TABLE)])
    lost = sum(max(0, n - got.get(key, 0)) for key, n in expected.items())
    doubled = sum(max(0, n - expected.get(key, 0)) for key, n in got.items())
    return {"kill_after_s": round(kill_after, 2), "lost": lost, "doubled": doubled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--keys", type=int, default=250)
    parser.add_argument(
        "--jobs", default="benchmarks.counter:COUNTER_NAIVE,benchmarks.counter:COUNTER"
    )
    args = parser.parse_args()
    LocalKafka().start()
    workdir = state_dir() / "bench-sigkill"
    totals: dict[str, Counter[str]] = {}
    for job in args.jobs.split(","):
        totals[job] = Counter()
        for seed in range(args.runs):
            result = one_run(job, args.records, args.keys, seed, workdir)
            totals[job].update({"lost": result["lost"], "doubled": result["doubled"]})
            print(json.dumps({"job": job, "run": seed, **result}), flush=True)
    for job, total in totals.items():
        print(
            f"{job:<14} {args.runs} kills x {args.records} increments: "
            f"{total['lost']} lost, {total['doubled']} applied twice"
        )


if __name__ == "__main__":
    main()
