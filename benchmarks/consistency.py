"""Throughput of BSP, SSP and ASP on flights, in one run on one machine.

The same job (FTRL logistic regression, 2 learning processes, 1 server process, 4 shards)
learns the flights stream under each consistency model in turn; the table gives
samples/s, progressive logloss and throughput relative to ASP measured in the same run.

    python -m benchmarks.consistency                    # the full data set
    python -m benchmarks.consistency --limit 50000      # a quicker look
"""

from __future__ import annotations

import argparse
import json

from benchmarks.jobs import job_settings
from kafka_ps.app.datasets import FLIGHT_CROSSES, flights
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.train import run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--modes", default="asp,ssp:4,bsp")
    args = parser.parse_args()
    LocalKafka().start()
    records = list(flights(limit=args.limit))
    crosses = [list(cross) for cross in FLIGHT_CROSSES]
    speeds: dict[str, float] = {}
    for mode in args.modes.split(","):
        settings = job_settings(
            f"flights-{mode.replace(':', '')}",
            model="logreg_ftrl",
            model_params={"crosses": crosses},
            consistency=mode,
        )
        summary = run_job(settings, records, "classification", workers=2, servers=1)
        speeds[mode] = summary.samples_per_s
        row = {
            "consistency": mode,
            "records": summary.records,
            "seconds": round(summary.seconds, 1),
            "samples_per_s": round(summary.samples_per_s, 1),
            "logloss": round(summary.loss, 4),
        }
        if "asp" in speeds:
            row["speed_vs_asp"] = round(summary.samples_per_s / speeds["asp"], 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
