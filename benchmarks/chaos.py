"""The chaos benchmark: SIGKILL learning processes, then server processes, many times.

The long form of ``tests/integration/test_chaos.py``: 3 worker and 3 server processes
count records per key (20,000 records over 1,000 keys by default) while a random
process of one kind is SIGKILLed and restarted every few seconds. Reports, for each
kind and consistency model, the kills survived and the counts lost and doubled (all must
be 0) in the shards' table (its changelog), on the model-updates topic, and on the
predictions topic (records without a prediction, and predictions of no record produced),
with the records whose predictions were published again after a takeover (counted once).

    python -m benchmarks.chaos --kills 25 --consistency asp,bsp,ssp:2
"""

from __future__ import annotations

import argparse
import json
import uuid

from benchmarks.chaos_driver import run_chaos
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.settings import JobSettings, state_dir
from kafka_ps.agents.topics import delete_topics
from kafka_ps.app.local_kafka import LocalKafka


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--interval", type=float, default=2.5)
    parser.add_argument("--targets", default="workers,servers")
    parser.add_argument("--consistency", default="asp", help="comma-separated: asp,bsp,ssp:2")
    args = parser.parse_args()
    broker = LocalKafka().start().bootstrap
    failed = False
    for consistency in args.consistency.split(","):
        for target in args.targets.split(","):
            failed |= not one_run(broker, args, target, consistency)
    raise SystemExit(1 if failed else 0)


def one_run(broker: str, args: argparse.Namespace, target: str, consistency: str) -> bool:
    """One chaos run; print its report and return whether every view ended exact."""
    run = f"bench-chaos-{target}-{uuid.uuid4().hex[:8]}"
    workdir = state_dir() / "bench-chaos" / run
    settings = JobSettings.for_run(
        run, workdir / "data", broker=broker, partitions=6, shards=4, batch_size=64
    )
    result = run_chaos(
        settings,
        target,  # type: ignore[arg-type]
        args.kills,
        workdir / "logs",
        records=args.records,
        keys=args.keys,
        interval=args.interval,
        consistency=consistency,
    )
    tallies = result.tallies()
    exact = all(tally.exact for tally in tallies.values())
    report = {
        "killed": target,
        "consistency": consistency,
        "kills": result.kills,
        "records": result.records,
        "keys": len(result.produced),
        "seconds": round(result.seconds, 1),
        **{view: tally.summary(20) for view, tally in tallies.items()},
        "victims": result.victims if not exact else None,
        "topics_kept": None if exact else run,
    }
    print(json.dumps(report), flush=True)
    if exact:
        delete_topics(broker, [t for t in _topics(broker) if t.startswith(run)])
    return exact


def _topics(broker: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient(confluent_config(broker)).list_topics(timeout=10).topics)


if __name__ == "__main__":
    main()
