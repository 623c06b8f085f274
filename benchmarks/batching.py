"""Learning quality versus mini-batch size and logical workers, beside River on the same stream.

In process (agents/local.py): FTRL logistic regression at mini-batch 1,024 on one logical
worker, which learns what one record at a time learns (tests/unit/test_batching.py holds them
equal), and on two in lock step, each blind to the other's current mini-batch, at 64 and
1,024, dealt round-robin and, for flights, by day and airport as ``kps train`` deals them;
numeric streams also before standardising. With ``--kafka`` also the same jobs through the
broker on two logical workers (ASP, 1 learning and 1 server process).

    python -m benchmarks.batching                 # flights, phishing, the drifting stream
    python -m benchmarks.batching --kafka         # and each through Kafka
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from benchmarks.jobs import job_settings
from kafka_ps.agents.api import TrainingRecord
from kafka_ps.app.datasets import FLIGHT_CROSSES, FLIGHT_GROUP, flights, phishing
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.train import DEFAULT_PARAMS, deal, run_job
from tests.reference import river_logistic
from tests.unit.test_batching import DRIFT, drift_stream, river_scaled, run


def streams(limit: int | None) -> list[tuple[str, list[TrainingRecord], dict[str, Any], float]]:
    """Each stream, its model's hyper-parameters and River's logloss on it."""
    flight_fields = list(flights(limit=limit))
    flight_records = [
        TrainingRecord(features=f["features"], label=f["label"]) for f in flight_fields
    ]
    river = river_logistic(flight_fields, crosses=FLIGHT_CROSSES).logloss
    pages = [TrainingRecord(features=f["features"], label=f["label"]) for f in phishing()]
    drift = drift_stream()
    numeric = {"numeric": [f"x{j}" for j in range(DRIFT["n_features"])]}
    return [
        ("flights", flight_records, DEFAULT_PARAMS["flights"], river),
        ("phishing", pages, DEFAULT_PARAMS["phishing"], river_scaled(pages)),
        ("hyperplane drift", drift, numeric, river_scaled(drift)),
    ]


def kafka_loss(
    name: str, records: list[TrainingRecord], hyper: dict[str, Any], group_by: tuple[str, ...]
) -> float:
    settings = job_settings(
        f"batching-{name.replace(' ', '-')}",
        partitions=2,
        shards=2,
        model="logreg_ftrl",
        model_params=hyper,
    )
    fields = [
        {"features": dict(r.features), "label": r.label, "key": str(t), "ts": float(t)}
        for t, r in enumerate(records)
    ]
    return run_job(settings, fields, "classification", workers=1, servers=1, group_by=group_by).loss


def by_flight_group(i: int, record: TrainingRecord) -> int:
    return deal({"features": record.features}, i, 2, FLIGHT_GROUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="flights records")
    parser.add_argument("--kafka", action="store_true", help="also through the broker")
    args = parser.parse_args()
    if args.kafka:
        LocalKafka().start()
    for name, records, hyper, river in streams(args.limit):
        losses: dict[str, float] = {}
        if "numeric" in hyper:
            raw = {**hyper, "standardize": False, "alpha": 0.1}
            losses["raw values, alpha 0.1, 2 workers, 1024"] = run(raw, records, 1024, workers=2)
        losses["1 worker, 1024 (= one record at a time)"] = run(hyper, records, 1024)
        losses["2 workers, 64"] = run(hyper, records, 64, workers=2)
        losses["2 workers, 1024"] = run(hyper, records, 1024, workers=2)
        if args.kafka:
            losses["Kafka, 2 workers, 1024"] = kafka_loss(name, records, hyper, ())
        if name == "flights":
            grouped = run(hyper, records, 1024, workers=2, deal=by_flight_group)
            losses["2 workers, 1024, by day and airport"] = grouped
            if args.kafka:
                kafka = kafka_loss(name, records, hyper, FLIGHT_GROUP)
                losses["Kafka, 2 workers, 1024, by day and airport"] = kafka
        row = {"stream": name, "records": len(records), "river": round(river, 4)}
        for run_name, loss in losses.items():
            row[run_name] = f"{loss:.4f} ({loss / river:.3f} x river)"
        print(json.dumps(row))


if __name__ == "__main__":
    main()
