"""The bench's parts that need no broker: freshness from marks records and its stages, CPU
readings from /proc, and its tables."""

from __future__ import annotations

import math
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from subprocess import PIPE

import numpy as np
import pytest

from benchmarks.cpu import BROKER, DRIVER, CpuMeter, broker_pid, cpu_seconds, process_names
from benchmarks.freshness import freshness_ms, marks_by_shard, summarize
from benchmarks.report import MISMATCH, render, table
from benchmarks.stages import predicted_ms, quantiles, slowest, stage_rows


def marks(*rows: tuple[int, list[int]]) -> list[tuple[int, np.ndarray]]:
    return [(time, np.array(array, dtype=np.int64)) for time, array in rows]


def test_freshness_is_the_slowest_shard_first_covering_marks_minus_produce_time() -> None:
    shards = {
        0: marks((1000, [-1, -1]), (1100, [4, 2]), (1250, [9, 2]), (1400, [9, 7])),
        1: marks((1050, [3, -1]), (1300, [9, 7])),
    }
    records = [(0, 3, 900), (0, 4, 950), (0, 5, 960), (1, 2, 1000), (1, 7, 1010)]
    got = freshness_ms(records, shards)
    # (0,3): shard 0 at 1100, shard 1 at 1050 -> 1100 - 900; (0,4): 1100 and 1300 -> 1300 - 950
    np.testing.assert_array_equal(got, [200, 350, 340, 300, 390])


def test_a_record_no_marks_of_some_shard_cover_has_no_freshness() -> None:
    shards = {0: marks((100, [5])), 1: marks((120, [2]))}
    got = freshness_ms([(0, 2, 50), (0, 3, 50), (1, 0, 50)], shards)
    assert got[0] == 70
    assert math.isnan(got[1])  # shard 1 never reached offset 3
    assert math.isnan(got[2])  # worker 1 is beyond every marks array


def test_no_marks_at_all_reports_none() -> None:
    got = freshness_ms([(0, 0, 1), (1, 0, 2)], {})
    assert np.isnan(got).all()
    fresh = summarize(got)
    assert (fresh.records, fresh.covered, fresh.p50_ms, fresh.p99_ms) == (2, 0, None, None)
    assert summarize(freshness_ms([], {})).records == 0


def test_the_first_covering_record_counts_even_if_a_later_one_is_lower() -> None:
    # Marks should only grow, but the definition is "first record with value >= o".
    shards = {0: marks((10, [6]), (20, [3]), (30, [8]))}
    np.testing.assert_array_equal(freshness_ms([(0, 5, 0), (0, 7, 0)], shards), [10, 30])


def brute_force(records, shards) -> list[float]:
    out = []
    for worker, offset, produced in records:
        latest = -math.inf
        for rows in shards.values():
            hit = next((t for t, a in rows if worker < len(a) and a[worker] >= offset), None)
            latest = math.nan if hit is None else max(latest, hit)
        out.append(latest - produced)
    return out


def test_matches_a_brute_force_definition_on_random_marks() -> None:
    rng = random.Random(7)
    covered = uncovered = 0
    for _ in range(30):
        n_workers, n_shards = rng.randint(1, 4), rng.randint(1, 4)
        shards = {}
        for s in range(n_shards):
            time, level, rows = 0, [-1] * n_workers, []
            for _ in range(rng.randint(0, 8)):
                time += rng.randint(0, 50)
                level = [v + rng.randint(-2, 10) for v in level]
                rows.append((time, level[: rng.randint(1, n_workers)]))
            shards[s] = marks(*rows)
        records = [
            (rng.randrange(n_workers), rng.randint(0, 40), rng.randint(-20, 100)) for _ in range(50)
        ]
        got = freshness_ms(records, shards)
        np.testing.assert_array_equal(got, brute_force(records, shards))
        covered += int(np.isfinite(got).sum())
        uncovered += int(np.isnan(got).sum())
    assert covered > 100 and uncovered > 100  # both outcomes were exercised


def test_summary_quantiles_skip_uncovered_records() -> None:
    values = np.array([*range(1, 101), math.nan], dtype=float)
    fresh = summarize(values)
    assert (fresh.records, fresh.covered) == (101, 100)
    assert fresh.p50_ms == pytest.approx(50.5)
    assert fresh.p99_ms == pytest.approx(99.01)


def test_marks_records_are_read_by_key_as_little_endian_int64() -> None:
    messages = [
        (b"u:7", b"not marks", 5),
        (b"__marks__:1", np.array([3, -1], dtype="<i8").tobytes(), 10),
        (b"__marks__:0", np.array([2], dtype="<i8").tobytes(), 11),
        (b"__marks__:1", np.array([4, 0], dtype="<i8").tobytes(), 12),
        (None, b"", 13),
        (b"__marks__:0", None, 14),  # a tombstone is no marks record
    ]
    shards = marks_by_shard(messages)
    assert sorted(shards) == [0, 1]
    assert [(t, a.tolist()) for t, a in shards[1]] == [(10, [3, -1]), (12, [4, 0])]
    assert [(t, a.tolist()) for t, a in shards[0]] == [(11, [2])]


def test_table_aligns_columns() -> None:
    text = table(["run", "samples/s"], [["River", "113,110"], ["kafka-ps 2 workers", "1,614"]])
    lines = text.splitlines()
    assert lines[0] == "run                 samples/s"
    assert lines[1] == "River                 113,110"
    assert lines[2] == "kafka-ps 2 workers      1,614"


def _run(counted: int) -> dict[str, object]:
    return {
        "dataset": "flights",
        "name": "2 workers + 1 server",
        "records_produced": 3000,
        "records_counted": counted,
        "samples_per_s": 1614.2,
        "logloss": 0.4468,
        "vs_river_samples_per_s": 0.0143,
        "vs_river_logloss": 1.0175,
        "vs_raw_consume": 0.0063,
        "key_updates": 45000,
        "bytes_per_update": {"shard": 49.34, "replies": 44.7},
        "cpu_per_1k": {"worker-0": 0.0512, "worker-1": 0.0488, "server-0": 0.061, "broker": 0.04},
        "cpu_per_1k_total": 0.201,
        "vs_river_cpu": 8.7391,
    }


def test_render_marks_a_count_mismatch_loudly() -> None:
    river = {"records": 3000, "samples_per_s": 113110.0, "logloss": 0.4391, "cpu_per_1k": 0.023}
    report = {
        "flights": {"river": river, "raw_consume": None, "freshness": []},
        "mf": None,
        "mismatches": ["kafka-ps flights 2 workers + 1 server counted 3,768 records"],
    }
    report["flights"]["kafka_ps"] = [_run(3000)]
    good = render({**report, "mismatches": []})
    assert MISMATCH not in good
    assert "1,614" in good and "0.4468" in good and "49.3" in good
    report["flights"]["kafka_ps"] = [_run(3768)]
    bad = render(report)
    assert f"3,768 {MISMATCH}" in bad
    assert bad.splitlines()[-1].startswith(f"{MISMATCH}: kafka-ps flights")


def test_a_shard_without_marks_leaves_every_record_uncovered() -> None:
    shards = {0: marks((100, [5, 5])), 1: []}
    assert np.isnan(freshness_ms([(0, 1, 0), (1, 1, 0)], shards)).all()


def test_render_lists_each_process_cpu_per_thousand_samples() -> None:
    river = {"records": 3000, "samples_per_s": 113110.0, "logloss": 0.4391, "cpu_per_1k": 0.023}
    report = {
        "flights": {
            "river": river,
            "raw_consume": None,
            "freshness": [],
            "kafka_ps": [_run(3000)],
        },
        "mf": None,
        "mismatches": [],
    }
    lines = render(report).split("\n\n")[-1].splitlines()
    assert lines[0].split()[:4] == ["CPU-seconds", "per", "1,000", "samples"]
    assert lines[1].split()[-2:] == ["0.023", "1"]
    # Two learning processes in one cell, then the server, the broker, no reading of the
    # driver (-), the total and its ratio to River's.
    cells = lines[2].removeprefix("kafka-ps flights 2 workers + 1 server").split()
    assert cells == ["0.051+0.049", "0.061", "0.040", "-", "0.201", "8.74"]


def burn(seconds: float) -> None:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass


def test_cpu_seconds_counts_this_process_cpu_time() -> None:
    before = cpu_seconds(os.getpid())
    burn(0.3)
    # /proc counts in clock ticks (10 ms here); process_time is finer.
    assert 0.25 <= cpu_seconds(os.getpid()) - before <= 1.0


@dataclass
class Child:
    """What the meter reads of a job's process: its job and pid."""

    job: str
    pid: int


@pytest.fixture
def listening() -> Iterator[str]:
    """A loopback address this process listens on, as a local broker would."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_the_broker_is_the_process_listening_on_a_loopback_address(listening: str) -> None:
    assert broker_pid(listening) == os.getpid()
    assert broker_pid(listening.replace("127.0.0.1", "localhost")) == os.getpid()
    assert broker_pid(f"{listening},{listening}") is None  # several brokers
    assert broker_pid("192.0.2.1:" + listening.rsplit(":", 1)[1]) is None  # not this machine


def test_nothing_listening_is_no_broker() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert broker_pid(f"127.0.0.1:{port}") is None


def test_processes_are_named_by_job_and_rank() -> None:
    children = [Child("worker", 11), Child("worker", 12), Child("server", 13)]
    assert process_names(children) == {"worker-0": 11, "worker-1": 12, "server-0": 13}


#: A job's process stand-in: burns argv[1] CPU-seconds, says "ready", and on a line from
#: its stdin burns argv[2] more and says "done".
CHILD = """
import sys, time
def burn(seconds):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
burn(float(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
burn(float(sys.argv[2]))
print("done", flush=True)
sys.stdin.readline()
"""


def test_the_meter_reads_every_process_over_the_window_only(listening: str) -> None:
    # The server burns its CPU before the window opens, the worker inside it.
    children = {
        "server": subprocess.Popen(
            [sys.executable, "-c", CHILD, "0.4", "0"], stdin=PIPE, stdout=PIPE, text=True
        ),
        "worker": subprocess.Popen(
            [sys.executable, "-c", CHILD, "0", "0.4"], stdin=PIPE, stdout=PIPE, text=True
        ),
    }
    try:
        for child in children.values():
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        meter = CpuMeter(listening)
        with meter.window([Child(job, child.pid) for job, child in children.items()]):
            burn(0.2)
            for child in children.values():
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write("\n")
                child.stdin.flush()
                assert child.stdout.readline() == "done\n"
    finally:
        for child in children.values():
            child.kill()
            child.wait()
    assert meter.pids == {
        "server-0": children["server"].pid,
        "worker-0": children["worker"].pid,
        BROKER: os.getpid(),
        DRIVER: os.getpid(),
    }
    # /proc counts in clock ticks, 10 ms.
    assert 0.38 <= meter.seconds["worker-0"] <= 0.6
    assert meter.seconds["server-0"] <= 0.05
    assert meter.seconds[DRIVER] >= 0.18
    figures = meter.figures(samples=500, river_per_1k=0.25)
    per_1k = figures["cpu_per_1k"]
    assert per_1k["worker-0"] == pytest.approx(2 * meter.seconds["worker-0"])
    assert figures["cpu_per_1k_total"] == pytest.approx(sum(per_1k.values()))
    assert figures["vs_river_cpu"] == pytest.approx(figures["cpu_per_1k_total"] / 0.25)
    assert math.isnan(meter.figures(samples=0, river_per_1k=0.25)["cpu_per_1k_total"])


def test_a_predictions_key_covers_its_offset_range_first_message_first() -> None:
    seen = predicted_ms([(b"1:5-7", 100), (b"1:7-8", 200), (b"0:5-5", 300)])
    assert seen == {(1, 5): 100, (1, 6): 100, (1, 7): 100, (1, 8): 200, (0, 5): 300}


def test_stage_rows_split_each_record_s_freshness_and_skip_records_a_stage_missed() -> None:
    produced = [(0, 1, 1_000), (0, 2, 1_000), (0, 3, 1_000)]
    packed = {(0, 1): 1_030, (0, 2): 1_030, (0, 3): 1_040}
    predicted = {(0, 1): 1_100, (0, 3): 1_150}
    fresh = np.array([180.0, 200.0, np.nan])
    rows = stage_rows(produced, packed, predicted, fresh)
    assert rows.tolist() == [[30.0, 70.0, 80.0, 180.0]]
    assert slowest(rows) == [30.0, 70.0, 80.0, 180.0]
    assert quantiles(rows)["total"] == [180.0, 180.0, 180.0]
