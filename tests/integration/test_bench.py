"""``kps bench`` in its small form: it runs against the broker and its figures are sane.

Speed is never asserted: only that every figure was measured, is finite, and that the
table and the JSON file say the same thing. CPU time is asserted to be read over each job's
window, for each of its processes and the broker, and to add up.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from benchmarks.bench import FLIGHTS_CONFIGS
from benchmarks.cpu import BROKER, DRIVER
from benchmarks.freshness import freshness_ms, read_marks, read_produce_times
from kafka_ps.agents.security import confluent_config
from kafka_ps.agents.topics import TopicSpec, delete_topics, ensure_topics

# Four flights jobs, a paced one and an MF job, each starting its processes: on a busy
# 2-core machine the module's fixture alone can take over ten minutes.
pytestmark = [pytest.mark.broker, pytest.mark.timeout(1500)]

LIMIT = 3000


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def blocks(stdout: str) -> dict[str, list[str]]:
    """The printed tables by their first word (flights, ML-100K, bytes, freshness...)."""
    return {block.split()[0]: block.splitlines() for block in stdout.split("\n\n") if block.strip()}


def row(lines: list[str], name: str) -> list[str]:
    """The cells after the name of the one row that starts with ``name``."""
    (line,) = [line for line in lines if line.startswith(name + "  ")]
    return line[len(name) :].split()


def processes(run: dict[str, Any], job: str) -> list[str]:
    """The CPU readings' names of a run's learning (``worker``) or server processes."""
    return [f"{job}-{i}" for i in range(run[f"{job}s"])]


def assert_cpu_sane(run: dict[str, Any], river: dict[str, Any]) -> None:
    """Every process of the job, the broker and the driver read once, over the job's window:
    positive, at most what the machine's cores could give in that time, adding up."""
    names = [*processes(run, "worker"), *processes(run, "server"), BROKER, DRIVER]
    assert sorted(run["cpu_per_1k"]) == sorted(names), run
    assert len(set(run["cpu_pids"].values())) == len(names)  # the broker is not the bench
    window = run["seconds"] * (os.cpu_count() or 1) + 0.5
    for name, seconds in run["cpu_seconds"].items():
        assert 0 < seconds <= window, (name, run["cpu_seconds"])
        assert run["cpu_per_1k"][name] == pytest.approx(1000 * seconds / run["records_counted"])
    assert run["cpu_per_1k_total"] == pytest.approx(sum(run["cpu_per_1k"].values()))
    assert run["vs_river_cpu"] == pytest.approx(run["cpu_per_1k_total"] / river["cpu_per_1k"])


@pytest.fixture(scope="module")
def bench(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kafka_ps.app.cli",
            "bench",
            "--limit",
            str(LIMIT),
            "--json",
            "b.json",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(Path(out / "b.json").read_text())


def test_flights_figures_are_sane(bench: tuple[str, dict[str, Any]]) -> None:
    _, report = bench
    flights = report["flights"]
    assert flights["records"] == LIMIT
    river = flights["river"]
    assert positive(river["samples_per_s"])
    assert 0 < river["logloss"] < 1.0
    assert positive(river["cpu_per_1k"])
    assert river["cpu_per_1k"] == pytest.approx(1000 * river["cpu_seconds"] / LIMIT)
    raw = flights["raw_consume"]
    assert raw["messages"] == LIMIT
    assert positive(raw["messages_per_s"])
    names = [run["name"] for run in flights["kafka_ps"]]
    assert names == [config.name for config in FLIGHTS_CONFIGS]
    # The README job's row: its records produced while it learned, as kps train does.
    readme = flights["kafka_ps"][0]
    assert readme["name"].startswith("README job")
    assert (readme["preloaded"], readme["encoding"]) == (False, "training_records")
    assert all(run["preloaded"] for run in flights["kafka_ps"][1:])
    for run in flights["kafka_ps"]:
        assert run["records_produced"] == run["records_counted"] == LIMIT, run
        assert positive(run["samples_per_s"])
        assert 0 < run["logloss"] < 1.0
        for ratio in ("vs_river_samples_per_s", "vs_river_logloss", "vs_raw_consume"):
            assert positive(run[ratio]), ratio
        assert run["key_updates"] > LIMIT  # each record updates a dozen or more keys
        assert set(run["bytes_per_update"]) == {"shard", "replies", "changelog", "model-updates"}
        assert all(positive(b) for b in run["bytes_per_update"].values()), run
        assert_cpu_sane(run, river)
    assert report["mismatches"] == []


def test_freshness_runs_count_every_record(bench: tuple[str, dict[str, Any]]) -> None:
    _, report = bench
    runs = {run["name"]: run for run in report["flights"]["kafka_ps"]}
    paced = report["flights"]["freshness"]
    # The one-record path paced at half of what the README job learns, producer running.
    assert [fresh["name"] for fresh in paced] == [
        FLIGHTS_CONFIGS[0].name,
        "2 workers + 1 server, kps-batch",
    ]
    for fresh in paced:
        assert fresh["rate_per_s"] == pytest.approx(runs[fresh["name"]]["samples_per_s"] / 2)
        assert fresh["records_counted"] == fresh["records_produced"] == LIMIT
        # Freshness is per training message after the warm-up: a kps-batch holds many records.
        assert 1 <= fresh["covered"] <= fresh["records"] <= LIMIT
        assert 0 <= fresh["p50_ms"] <= fresh["p99_ms"]
    # Only the paced records count: the warm-up's one-record messages are not among them.
    assert paced[0]["records"] < LIMIT


def test_mf_figures_are_sane(bench: tuple[str, dict[str, Any]]) -> None:
    _, report = bench
    mf = report["mf"]
    assert positive(mf["river"]["samples_per_s"])
    assert 0.5 < mf["river"]["rmse"] < 2.0
    (run,) = mf["kafka_ps"]
    assert run["records_produced"] == run["records_counted"] == LIMIT
    assert positive(run["samples_per_s"])
    assert 0.5 < run["rmse"] < 2.0
    assert all(positive(b) for b in run["bytes_per_update"].values())
    assert positive(mf["river"]["cpu_per_1k"])
    assert_cpu_sane(run, mf["river"])


def test_table_shows_the_json_figures(bench: tuple[str, dict[str, Any]]) -> None:
    stdout, report = bench
    tables = blocks(stdout)
    assert "MISMATCH" not in stdout
    flights, mf = tables["flights"], tables["ML-100K"]
    river = report["flights"]["river"]
    assert row(flights, "River LogisticRegression")[:4] == [
        f"{LIMIT:,}",
        "-",
        f"{river['samples_per_s']:,.0f}",
        f"{river['logloss']:.4f}",
    ]
    raw = report["flights"]["raw_consume"]
    assert row(flights, "confluent-kafka consume(10000)")[2] == f"{raw['messages_per_s']:,.0f}"
    for run in report["flights"]["kafka_ps"]:
        cells = row(flights, f"kafka-ps {run['name']}")
        assert cells[:4] == [
            f"{LIMIT:,}",
            f"{LIMIT:,}",
            f"{run['samples_per_s']:,.0f}",
            f"{run['logloss']:.4f}",
        ]
        assert cells[6] == f"{run['vs_raw_consume']:.4f}"
        wire = row(tables["bytes"], f"kafka-ps flights {run['name']}")
        assert wire[1] == f"{run['bytes_per_update']['shard']:.1f}"
    (run,) = report["mf"]["kafka_ps"]
    assert row(mf, f"kafka-ps {run['name']}")[3] == f"{run['rmse']:.4f}"
    assert [line.split(",")[0] for line in tables["freshness"]] == [
        "freshness (kafka-ps README job: 2 workers + 1 server",
        "freshness (kafka-ps 2 workers + 1 server",
    ]
    assert "JSON produced while learning paced at" in tables["freshness"][0]
    assert "kps-batch paced at" in tables["freshness"][1]
    cpu = tables["CPU-seconds"]
    for name, section in [
        ("LogisticRegression (flights)", "flights"),
        ("reco.BiasedMF (ML-100K)", "mf"),
    ]:
        river_cpu = report[section]["river"]["cpu_per_1k"]
        assert row(cpu, f"River {name}") == ["-", "-", "-", "-", f"{river_cpu:,.3f}", "1"]
    for run in report["flights"]["kafka_ps"] + report["mf"]["kafka_ps"]:
        per_1k = run["cpu_per_1k"]
        assert row(cpu, f"kafka-ps {run['dataset']} {run['name']}") == [
            "+".join(f"{per_1k[name]:,.3f}" for name in processes(run, "worker")),
            "+".join(f"{per_1k[name]:,.3f}" for name in processes(run, "server")),
            f"{per_1k[BROKER]:,.3f}",
            f"{per_1k[DRIVER]:,.3f}",
            f"{run['cpu_per_1k_total']:,.3f}",
            f"{run['vs_river_cpu']:,.2f}",
        ]


def test_freshness_reads_create_times_and_marks_off_the_topics(
    kafka: str, unique_name: str
) -> None:
    training, updates = f"{unique_name}-input", f"{unique_name}-model-updates"
    ensure_topics(kafka, [TopicSpec(training, 2), TopicSpec(updates, 2, compacted=True)])
    producer = Producer(confluent_config(kafka))
    for partition, stamp in [(0, 1_000), (0, 1_010), (1, 1_020)]:
        producer.produce(training, b"{}", partition=partition, timestamp=stamp)
    for shard, stamp, marks in [(0, 1_100, [0, -1]), (1, 1_150, [1, 0]), (0, 1_300, [1, 0])]:
        key = f"__marks__:{shard}".encode()
        value = np.array(marks, dtype="<i8").tobytes()
        producer.produce(updates, value, key, shard, timestamp=stamp)
        producer.produce(updates, b"a parameter", b"p:1", shard, timestamp=stamp)
    assert producer.flush(30) == 0
    try:
        produced = read_produce_times(kafka, training)
        assert sorted(produced) == [(0, 0, 1_000), (0, 1, 1_010), (1, 0, 1_020)]
        marks = read_marks(kafka, updates)
        assert [(t, a.tolist()) for t, a in marks[0]] == [(1_100, [0, -1]), (1_300, [1, 0])]
        got = freshness_ms(sorted(produced), marks)
        np.testing.assert_array_equal(got, [150, 290, 280])
    finally:
        delete_topics(kafka, [training, updates])
