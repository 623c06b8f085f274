"""Where a record's freshness goes: its path through the job, stage by stage.

A one-record freshness run (as ``kps bench`` makes, paced, README job shape), then per
record, from the CreateTimes on the topics it passed through:

    packed     the packer wrote the packed message holding it   (input -> packed)
    predicted  its worker published its mini-batch's predictions (packed -> predicted: the
               worker's take, with its parse, pull, learning and push)
    fresh      the first ``__marks__`` of every shard covering it (predicted -> fresh: the push
               reaching its shards, and their next publication)

    python -m benchmarks.stages --rate 16000
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from benchmarks import bench
from benchmarks.freshness import freshness_ms, read_marks, read_produce_times
from kafka_ps.agents.batches import split_message
from kafka_ps.agents.client import read_all
from kafka_ps.agents.packer import training_topic
from kafka_ps.app.datasets import flights
from kafka_ps.app.local_kafka import LocalKafka

STAGES = ("input -> packed", "packed -> predicted", "predicted -> fresh", "total")
QUANTILES = (50, 90, 99)

Place = tuple[int, int]
"""A record's training partition (logical worker) and input offset."""


def predicted_ms(messages: Iterable[tuple[bytes, int]]) -> dict[Place, int]:
    """Per record, the CreateTime of the first predictions message covering it, from
    ``(key, CreateTime ms)``; a key ``w:a-b`` covers offsets ``a..b`` of worker ``w``
    (docs/formats.md)."""
    seen: dict[Place, int] = {}
    for key, ms in messages:
        worker, _, span = key.decode().partition(":")
        first, _, last = span.partition("-")
        for offset in range(int(first), int(last) + 1):
            seen.setdefault((int(worker), offset), ms)
    return seen


def stage_rows(
    produced: Sequence[tuple[int, int, int]],
    packed: Mapping[Place, int],
    predicted: Mapping[Place, int],
    fresh: np.ndarray,
) -> np.ndarray:
    """One row per ``(partition, offset, produce ms)`` record seen at every stage (and
    fresh, not NaN): the ms each stage took, then the total."""
    rows = []
    for (worker, offset, produced_at), total in zip(produced, fresh.tolist(), strict=True):
        place = (worker, offset)
        if place not in packed or place not in predicted or np.isnan(total):
            continue
        packed_at, predicted_at = packed[place], predicted[place]
        rows.append(
            (
                packed_at - produced_at,
                predicted_at - packed_at,
                produced_at + total - predicted_at,
                total,
            )
        )
    return np.array(rows, dtype=np.float64).reshape(-1, len(STAGES))


def quantiles(rows: np.ndarray) -> dict[str, list[float]]:
    """Each stage's p50, p90 and p99."""
    return {stage: np.percentile(rows[:, i], QUANTILES).tolist() for i, stage in enumerate(STAGES)}


def slowest(rows: np.ndarray, share: float = 0.01) -> list[float]:
    """Each stage's mean over the records whose total is among the slowest ``share``."""
    tail = rows[rows[:, -1] >= np.quantile(rows[:, -1], 1 - share)]
    return tail.mean(axis=0).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, required=True, help="records per second")
    parser.add_argument("--limit", type=int, default=None, help="flights records (all)")
    args = parser.parse_args(argv)
    LocalKafka().start()
    records = list(flights(limit=args.limit))
    config = bench.FLIGHTS_CONFIGS[0]  # the README job
    model, params = bench.DEFAULT_MODELS["flights"], bench.DEFAULT_PARAMS["flights"]
    base = {"model": model, "model_params": params}
    cleanup = bench.Cleanup()
    settings, _, figures = bench.freshness_run(config, records, args.rate, base)
    cleanup.add(settings)
    try:
        produced = read_produce_times(settings.broker, settings.input_topic)
        # Past the warm-up's backlog and the job's start: the last four fifths of the run.
        first, last = min(row[2] for row in produced), max(row[2] for row in produced)
        produced = [row for row in produced if row[2] >= first + (last - first) / 5]
        packed = {
            (message.partition(), item.offset): message.timestamp()[1]
            for message in read_all(settings.broker, training_topic(settings))
            for item in split_message(message.value(), message.offset(), message.key())
        }
        predictions = read_all(settings.broker, settings.topic("predictions"))
        predicted = predicted_ms((m.key(), m.timestamp()[1]) for m in predictions)
        marks = read_marks(settings.broker, settings.topic("model-updates"))
        every_shard = {shard: marks.get(shard, []) for shard in range(settings.shards)}
        rows = stage_rows(produced, packed, predicted, freshness_ms(produced, every_shard))
        rate, p50, p99 = args.rate, figures["p50_ms"], figures["p99_ms"]
        print(f"freshness at {rate:,.0f} records/s: p50 {p50} ms, p99 {p99} ms")
        print(f"{'stage (ms)':22s}" + "".join(f"{'p' + str(q):>8s}" for q in QUANTILES))
        for stage, values in quantiles(rows).items():
            print(f"{stage:22s}" + "".join(f"{value:8.0f}" for value in values))
        tail = " / ".join(f"{value:.0f}" for value in slowest(rows))
        print(f"slowest 1% of records, mean ms per stage and total: {tail}")
    finally:
        cleanup.run()


if __name__ == "__main__":
    main()
