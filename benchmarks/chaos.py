"""The chaos benchmark: SIGKILL worker processes, then server processes, many times.

The long form of ``tests/integration/test_chaos.py``: 3 worker and 3 server processes
count records per key (20,000 records over 1,000 keys by default) while a random
process of one kind is SIGKILLed and restarted every few seconds. Reports, for each
kind, the kills survived and the counts lost and doubled (both must be 0).

    python -m benchmarks.chaos --kills 25
"""

from __future__ import annotations

import argparse
import json
import uuid

from app.chaos import run_chaos
from app.local_kafka import LocalKafka
from app.settings import JobSettings, state_dir
from app.topics import delete_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--interval", type=float, default=2.5)
    parser.add_argument("--targets", default="workers,servers")
    args = parser.parse_args()
    broker = LocalKafka().start().bootstrap
    failed = False
    for target in args.targets.split(","):
        run = f"bench-chaos-{target}-{uuid.uuid4().hex[:8]}"
        workdir = state_dir() / "bench-chaos" / run
        settings = JobSettings.for_run(
            run,
            workdir / "data",
            broker=broker,
            partitions=6,
            shards=4,
            batch_size=64,
        )
        result = run_chaos(
            settings,
            target,  # type: ignore[arg-type]
            args.kills,
            workdir / "logs",
            records=args.records,
            keys=args.keys,
            interval=args.interval,
        )
        wrong = {k: (n, result.counted.get(k)) for k, n in result.produced.items()}
        wrong = {k: counts for k, counts in wrong.items() if counts[0] != counts[1]}
        failed |= bool(wrong)
        print(
            json.dumps(
                {
                    "killed": target,
                    "kills": result.kills,
                    "records": result.records,
                    "keys": len(result.produced),
                    "lost": result.lost,
                    "doubled": result.doubled,
                    "seconds": round(result.seconds, 1),
                    "wrong_keys": dict(list(wrong.items())[:20]),
                    "topics_kept": run if wrong else None,
                }
            ),
            flush=True,
        )
        if not wrong:
            delete_topics(broker, [t for t in _topics(broker) if t.startswith(run)])
    raise SystemExit(1 if failed else 0)


def _topics(broker: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics)


if __name__ == "__main__":
    main()
