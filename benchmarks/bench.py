"""kafka-ps against River and the raw transport, side by side, in one run on the real broker.

    python -m benchmarks.bench                  # all flights records and all of ML-100K
    kps bench --limit 20000 --json out.json     # a quicker look

For flights (the README job's model and features) it measures River's LogisticRegression,
the raw confluent-kafka consume rate of the job's training topic, and kafka-ps end to end in
each configuration of :data:`FLIGHTS_CONFIGS` (the topic preloaded first, only the learning
timed, except for the README job's row, produced while it learns), then freshness of the
one-record and the ``kps-batch`` path, each in a run paced at half its row's throughput. For
ML-100K it measures River's BiasedMF and kafka-ps's ``mf``. For every kafka-ps run it
reports the bytes each wire topic carried per applied key update, and the CPU-seconds per
1,000 samples of each of its processes, the broker's and River's. The table goes to stdout
and the same figures to ``--json`` (``bench.json``). The exit status is 1 if any job counted
another number of records than it was given (the table says MISMATCH).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TypeVar

from benchmarks.cpu import CpuMeter
from benchmarks.freshness import freshness_ms, read_marks, read_produce_times, summarize
from benchmarks.jobs import job_settings
from benchmarks.measure import (
    CONSUME_BATCH,
    applied_key_updates,
    bytes_per_update,
    raw_consume_rate,
)
from benchmarks.report import render
from benchmarks.training import MF, timed
from kafka_ps.agents.api import Task
from kafka_ps.agents.client import Record, produce
from kafka_ps.agents.jobs import ps_topics
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import delete_topics, ensure_topics
from kafka_ps.app.cli_errors import BrokerError
from kafka_ps.app.datasets import FLIGHT_CROSSES, FLIGHT_GROUP, RecordFields, flights, movielens
from kafka_ps.app.local_kafka import LocalKafka
from kafka_ps.app.preflight import require_broker
from kafka_ps.app.termination import end_offsets, wait_until_learned
from kafka_ps.app.train import (
    DEFAULT_MODELS,
    DEFAULT_PARAMS,
    Summary,
    batched_training_records,
    run_job,
    training_records,
)
from tests.reference import river_logistic, rmse

T = TypeVar("T")

Encoding = Callable[..., Iterable[Record]]
"""Records, the number of training partitions and ``group_by`` -> Kafka records (key,
value, partition): :func:`training_records` or :func:`batched_training_records`."""


@dataclass(frozen=True)
class Config:
    """One kafka-ps configuration the bench runs: processes, settings, input encoding.

    Parameters
    ----------
    name
        The row's name in the tables.
    workers
        Learning processes.
    servers
        Server processes.
    overrides
        :class:`JobSettings` fields set for this configuration.
    encoding
        How the records become Kafka records on the training topic.
    preload
        Whether the training topic is filled before the clock starts; if not, the records
        are produced while the job learns, as ``kps train --dataset`` does.
    fresh
        Whether the bench also measures this configuration's freshness, paced at half its
        throughput.
    """

    name: str
    workers: int
    servers: int
    overrides: Mapping[str, object] = field(default_factory=dict)
    encoding: Encoding = training_records
    preload: bool = True
    fresh: bool = False


#: Producers that write kps-batch messages need no packer.
BATCHED = {"pack_input": False}
FLIGHTS_CONFIGS = [
    # What a user running the README job (``kps train --dataset flights``) sees.
    # Its freshness is that of what any producer writes (one JSON record per message, through
    # the packer), paced at half of what this row learns with its producer running.
    Config(
        "README job: 2 workers + 1 server, JSON produced while learning",
        2,
        1,
        preload=False,
        fresh=True,
    ),
    Config("2 workers + 1 server, one-record JSON", workers=2, servers=1),
    Config("2 workers + 1 server, kps-batch", 2, 1, BATCHED, batched_training_records, fresh=True),
    Config("1 worker + 1 server, kps-batch", 1, 1, BATCHED, batched_training_records),
]
#: Li et al.'s filters, beside the unfiltered kps-batch row (``--filters``).
FILTER_CONFIGS = [
    Config(
        "2 workers + 1 server, kps-batch, float16 pushes",
        2,
        1,
        {**BATCHED, "push_dtype": "float16"},
        batched_training_records,
    ),
    Config(
        "2 workers + 1 server, kps-batch, pushes > 0.01",
        2,
        1,
        {**BATCHED, "push_threshold": 0.01},
        batched_training_records,
    ),
]
MF_CONFIGS = [Config("2 workers + 1 server", workers=2, servers=1)]


def river_timed(learn: Callable[[], T], samples: int) -> tuple[T, dict[str, Any]]:
    """``learn()``'s result, and its samples/s and CPU-seconds per 1,000 samples (this
    process's CPU time around the loop)."""
    cpu = time.process_time()
    result, seconds = timed(learn)
    cpu = time.process_time() - cpu
    figures = {
        "records": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "cpu_seconds": cpu,
        "cpu_per_1k": 1000 * cpu / samples,
    }
    return result, figures


def river_logloss(records: Sequence[RecordFields]) -> dict[str, Any]:
    """River's LogisticRegression in progressive validation; it builds each record's
    ``"name=value": 1.0`` features and crosses inside the timed loop."""
    import river.linear_model  # noqa: F401  (imported before the clock starts)

    result, figures = river_timed(
        lambda: river_logistic(records, crosses=FLIGHT_CROSSES), len(records)
    )
    return {**figures, "logloss": result.logloss}


def river_mf(ratings: Sequence[RecordFields]) -> dict[str, Any]:
    """River's ``reco.BiasedMF`` with kafka-ps's MF hyper-parameters: predict, then learn."""
    from river import optim, reco

    model = reco.BiasedMF(
        n_factors=MF["k"],
        bias_optimizer=optim.SGD(MF["lr"]),
        latent_optimizer=optim.SGD(MF["lr"]),
        l2_bias=MF["reg"],
        l2_latent=MF["reg"],
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=MF["init_std"], seed=0),
    )

    def learn() -> tuple[list[float], list[float]]:
        predictions, labels = [], []
        for rating in ratings:
            user, item = rating["features"]["user"], rating["features"]["item"]
            predictions.append(model.predict_one(user, item))
            model.learn_one(user, item, rating["label"])
            labels.append(rating["label"])
        return predictions, labels

    (predictions, labels), figures = river_timed(learn, len(ratings))
    return {**figures, "rmse": rmse(labels, predictions)}


def say(step: str) -> None:
    """Progress on stderr; stdout holds the job's metrics lines and the tables."""
    print(f"== {step}", file=sys.stderr, flush=True)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _settings(dataset: str, config: Config, base: Mapping[str, object]) -> JobSettings:
    settings = job_settings(f"{dataset}-{_slug(config.name)}", **{**base, **config.overrides})
    ensure_topics(settings.broker, ps_topics(settings))
    return settings


def end_to_end(
    dataset: str,
    config: Config,
    records: Sequence[RecordFields],
    task: Task,
    base: Mapping[str, object],
    group_by: Sequence[str] = (),
) -> tuple[JobSettings, Summary, CpuMeter]:
    """Time the job learning ``records`` in the config's encoding, with every process's CPU
    time over the same window. With ``config.preload`` the training topic is filled first
    (not timed) and the job learns up to the end offsets it finds (``kps train
    --until-end``); without, the records are produced while it learns (``kps train``).
    ``group_by`` deals the records to partitions as the data set's ``kps train`` does."""
    settings = _settings(dataset, config, base)
    feed = config.encoding(records, settings.partitions, group_by=group_by)
    if config.preload:
        say(f"kafka-ps {dataset} {config.name}: preloading {len(records):,} records")
        produce(settings.broker, settings.input_topic, feed)
    say(f"kafka-ps {dataset} {config.name}: learning")
    meter = CpuMeter(settings.broker)
    summary = run_job(
        settings,
        None,
        task,
        config.workers,
        config.servers,
        feed=None if config.preload else feed,
        window=meter.window,
    )
    return settings, summary, meter


def paced(records: Iterable[T], per_s: float) -> Iterator[T]:
    """``records`` at ``per_s`` a second, the clock starting at the first one taken."""
    started = None
    for i, record in enumerate(records):
        now = time.perf_counter()
        if started is None:
            started = now
        ahead = started + i / per_s - now
        if ahead > 0.001:
            time.sleep(ahead)
        yield record


#: Share of the records a freshness run sends, unpaced, and waits to see learned before the
#: paced records whose freshness it measures: the job's groups have formed by then.
WARMUP = 0.02


def warmed_up(
    settings: JobSettings,
    config: Config,
    records: Sequence[RecordFields],
    per_s: float,
    measured_from: dict[int, int],
) -> Iterator[Record]:
    """The warm-up records, then (once they are learned) the rest at ``per_s``; fills
    ``measured_from`` with the training offset where the paced records begin."""
    split = max(1, int(len(records) * WARMUP))
    ends = end_offsets(settings.broker, settings.input_topic, settings.partitions)
    for message in config.encoding(records[:split], settings.partitions, group_by=FLIGHT_GROUP):
        ends[message[2]] += 1
        yield message
    # Counted, not read from the broker: the feeder's producer may not have sent them yet.
    # A generator runs in the feeder's thread: this waits there, not in the job's follower.
    wait_until_learned(settings, ends)
    measured_from.update(ends)
    yield from config.encoding(
        paced(records[split:], per_s), settings.partitions, group_by=FLIGHT_GROUP
    )


def freshness_run(
    config: Config, records: Sequence[RecordFields], per_s: float, base: Mapping[str, object]
) -> tuple[JobSettings, Summary, dict[str, Any]]:
    """Run the job while a producer sends ``records`` at ``per_s``; freshness per record from
    the CreateTimes on the training topic and the ``__marks__`` records on model-updates,
    after a warm-up (:data:`WARMUP`) that is not measured."""
    settings = _settings("flights-fresh", config, base)
    say(f"freshness: kafka-ps {config.name} while producing at {per_s:,.0f} records/s")
    measured_from: dict[int, int] = {}
    feed = warmed_up(settings, config, records, per_s, measured_from)
    summary = run_job(settings, None, "classification", config.workers, config.servers, feed=feed)
    produced = [
        (partition, offset, ms)
        for partition, offset, ms in read_produce_times(settings.broker, settings.input_topic)
        if offset >= measured_from.get(partition, 0)
    ]
    marks = read_marks(settings.broker, settings.topic("model-updates"))
    # A shard that never published marks covers nothing: its records are not fresh yet.
    every_shard = {shard: marks.get(shard, []) for shard in range(settings.shards)}
    fresh = summarize(freshness_ms(produced, every_shard))
    figures = {
        "name": config.name,
        "rate_per_s": per_s,
        "records": fresh.records,
        "covered": fresh.covered,
        "p50_ms": fresh.p50_ms,
        "p99_ms": fresh.p99_ms,
    }
    return settings, summary, figures


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _run_figures(
    dataset: str,
    config: Config,
    job: tuple[JobSettings, Summary, CpuMeter],
    produced: int,
    river: Mapping[str, Any],
    loss: str,
) -> dict[str, Any]:
    """A kafka-ps run's figures, its ratios to River's (``loss`` names the loss in both)."""
    settings, summary, meter = job
    updates = applied_key_updates(settings.broker, settings.topic("shard"))
    return {
        "dataset": dataset,
        "name": config.name,
        "workers": config.workers,
        "servers": config.servers,
        "overrides": dict(config.overrides),
        "encoding": config.encoding.__name__,
        "preloaded": config.preload,
        "records_produced": produced,
        "records_counted": summary.records,
        "seconds": summary.seconds,
        "samples_per_s": summary.samples_per_s,
        loss: summary.loss,
        "vs_river_samples_per_s": _ratio(summary.samples_per_s, river["samples_per_s"]),
        f"vs_river_{loss}": _ratio(summary.loss, river[loss]),
        "key_updates": updates,
        "bytes_per_update": bytes_per_update(settings, updates),
        **meter.figures(summary.records, river["cpu_per_1k"]),
    }


def _mismatch(run: Mapping[str, Any]) -> str | None:
    if run["records_counted"] == run["records_produced"]:
        return None
    return (
        f"kafka-ps {run['dataset']} {run['name']} counted {run['records_counted']:,} records, "
        f"{run['records_produced']:,} were produced"
    )


class Cleanup:
    """The jobs a bench made: their topics and data directories, removed at the end."""

    def __init__(self) -> None:
        self.jobs: list[JobSettings] = []

    def add(self, settings: JobSettings) -> JobSettings:
        self.jobs.append(settings)
        return settings

    def run(self) -> None:
        for settings in self.jobs:
            delete_topics(settings.broker, [spec.name for spec in ps_topics(settings)])
            shutil.rmtree(settings.data_dir, ignore_errors=True)


#: Records of the unmeasured job that warms the broker up before the measured ones.
WARM_UP_RECORDS = 50_000


def bench_flights(
    limit: int | None, skip_freshness: bool, cleanup: Cleanup, filters: bool = False
) -> dict[str, Any]:
    records = list(flights(limit=limit))
    base = {"model": DEFAULT_MODELS["flights"], "model_params": DEFAULT_PARAMS["flights"]}
    say(f"River LogisticRegression on {len(records):,} flights records")
    river = river_logloss(records)
    runs, first = [], None
    # The first job on a just-started broker ran at half its later speed (the JVM compiling
    # its hot paths, 23-33 broker CPU-ms per 1,000 records against about 10): warm it first.
    say(f"warming the broker up: {WARM_UP_RECORDS:,} records, not measured")
    warm = end_to_end(
        "flights-warm-up",
        FLIGHTS_CONFIGS[0],
        records[:WARM_UP_RECORDS],
        "classification",
        base,
        FLIGHT_GROUP,
    )
    cleanup.add(warm[0])
    for config in FLIGHTS_CONFIGS + (FILTER_CONFIGS if filters else []):
        job = end_to_end("flights", config, records, "classification", base, FLIGHT_GROUP)
        settings = cleanup.add(job[0])
        first = first or settings
        runs.append(_run_figures("flights", config, job, len(records), river, "logloss"))
    assert first is not None
    say(f"raw consume of {first.input_topic}")
    rate = raw_consume_rate(first.broker, first.input_topic, first.partitions)
    raw = {
        "topic_encoding": FLIGHTS_CONFIGS[0].encoding.__name__,
        "batch": CONSUME_BATCH,
        "messages": rate.messages,
        "seconds": rate.seconds,
        "messages_per_s": rate.per_s,
    }
    for run in runs:
        run["vs_raw_consume"] = _ratio(run["samples_per_s"], rate.per_s)
    report: dict[str, Any] = {"records": len(records), "river": river, "raw_consume": raw}
    report["kafka_ps"] = runs
    report["freshness"] = []
    paced = [] if skip_freshness else [i for i, c in enumerate(FLIGHTS_CONFIGS) if c.fresh]
    for index in paced:
        per_s = runs[index]["samples_per_s"] / 2
        settings, summary, fresh = freshness_run(FLIGHTS_CONFIGS[index], records, per_s, base)
        cleanup.add(settings)
        fresh["records_produced"] = len(records)
        fresh["records_counted"] = summary.records
        fresh["achieved_per_s"] = summary.samples_per_s
        fresh["dataset"] = "flights (paced)"
        report["freshness"].append(fresh)
    return report


def bench_mf(limit: int | None, cleanup: Cleanup) -> dict[str, Any]:
    ratings = list(movielens("ml-100k", limit=limit))
    say(f"River reco.BiasedMF on {len(ratings):,} ML-100K ratings")
    river = river_mf(ratings)
    runs = []
    for config in MF_CONFIGS:
        base = {"model": "mf", "model_params": MF}
        job = end_to_end("ml100k", config, ratings, "regression", base)
        cleanup.add(job[0])
        runs.append(_run_figures("ML-100K", config, job, len(ratings), river, "rmse"))
    return {"records": len(ratings), "river": river, "kafka_ps": runs}


def bench(
    limit: int | None, skip_mf: bool = False, skip_freshness: bool = False, filters: bool = False
) -> dict[str, Any]:
    """Every measurement, as the dictionary the JSON file holds."""
    cleanup = Cleanup()
    report: dict[str, Any] = {
        "limit": limit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "river": version("river"),
    }
    report["flights"] = bench_flights(limit, skip_freshness, cleanup, filters)
    report["mf"] = None if skip_mf else bench_mf(limit, cleanup)
    jobs = list(report["flights"]["kafka_ps"]) + report["flights"]["freshness"]
    if report["mf"]:
        jobs += report["mf"]["kafka_ps"]
    report["mismatches"] = [problem for run in jobs if (problem := _mismatch(run))]
    cleanup.run()
    return report


def _json_safe(value: Any) -> Any:
    """NaN becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kps bench", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="records of each data set")
    parser.add_argument("--skip-mf", action="store_true", help="leave out ML-100K")
    parser.add_argument("--skip-freshness", action="store_true", help="leave out the paced run")
    parser.add_argument(
        "--filters", action="store_true", help="add rows with float16 pushes and a push threshold"
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench.json"), metavar="PATH", help="default bench.json"
    )
    args = parser.parse_args(argv)
    if find_spec("river") is None:
        print("kps bench compares with River: pip install 'kafka-ps[test]'", file=sys.stderr)
        return 1
    broker = LocalKafka()
    try:
        # A broker already answering (the CI's, started from another folder) is used as is.
        require_broker(broker.settings.bootstrap, 5.0)
    except BrokerError:
        broker.start()
    report = bench(args.limit, args.skip_mf, args.skip_freshness, args.filters)
    print("\n" + render(report), flush=True)
    args.json.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
