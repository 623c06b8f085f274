"""Speed and learning quality of whole jobs, against sequential baselines in the same run.

For flights (logistic regression, FTRL) it runs the job with 1 and with 2 learning processes and
reports samples/s and progressive logloss beside River's LogisticRegression and sequential
FTRL on the same records; for ML-100K it reports MF's progressive RMSE beside sequential MF.

    python -m benchmarks.training                 # the full data sets
    python -m benchmarks.training --limit 50000   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from benchmarks.jobs import job_settings
from kafka_ps.agents.models import FtrlLogisticRegression
from kafka_ps.app.datasets import FLIGHT_CROSSES, FLIGHT_GROUP, flights, movielens
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.train import run_job
from tests.reference import ftrl_logloss, river_logistic, sequential_mf

T = TypeVar("T")
MF = {"k": 16, "lr": 0.01, "reg": 0.05, "mean": 3.5, "init_std": 0.1, "seed": 0, "clip": None}


def timed(function: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    LocalKafka().start()
    records = list(flights(limit=args.limit))
    crosses = [list(cross) for cross in FLIGHT_CROSSES]
    river, river_s = timed(river_logistic, records, crosses=FLIGHT_CROSSES)
    alpha = FtrlLogisticRegression().alpha  # the model's own default, as the job uses
    ftrl, ftrl_s = timed(ftrl_logloss, records, alpha=alpha, crosses=FLIGHT_CROSSES)
    rows = [
        {
            "run": "river LogisticRegression, sequential",
            "records": len(records),
            "logloss": river.logloss,
            "samples_per_s": len(records) / river_s,
        },
        {
            "run": "FTRL, sequential numpy",
            "records": len(records),
            "logloss": ftrl.logloss,
            "samples_per_s": len(records) / ftrl_s,
        },
    ]
    for workers in (1, 2):
        settings = job_settings(
            f"flights-{workers}w", model="logreg_ftrl", model_params={"crosses": crosses}
        )
        summary = run_job(
            settings, records, "classification", workers=workers, servers=1, group_by=FLIGHT_GROUP
        )
        rows.append(
            {
                "run": f"kafka-ps FTRL, {workers} learning processes, 1 server",
                "records": summary.records,
                "logloss": summary.loss,
                "samples_per_s": summary.samples_per_s,
                "logloss_vs_river": summary.loss / river.logloss,
            }
        )
    ratings = list(movielens("ml-100k", limit=args.limit))
    reference = sequential_mf(
        ratings, k=16, lr=0.01, reg=0.05, init_std=0.1, seed=0, global_mean=3.5
    )
    settings = job_settings("ml100k", model="mf", model_params=MF)
    summary = run_job(settings, ratings, "regression", workers=2, servers=1)
    rows += [
        {"run": "MF, sequential numpy", "records": len(ratings), "rmse": reference.rmse},
        {
            "run": "kafka-ps MF, 2 learning processes, 1 server",
            "records": summary.records,
            "rmse": summary.loss,
            "samples_per_s": summary.samples_per_s,
            "rmse_vs_sequential": summary.loss / reference.rmse,
        },
    ]
    for row in rows:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
