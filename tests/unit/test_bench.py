"""The bench's pure parts: freshness from marks records, and its table, without a broker."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from benchmarks.freshness import freshness_ms, marks_by_shard, summarize
from benchmarks.report import MISMATCH, render, table


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
    }


def test_render_marks_a_count_mismatch_loudly() -> None:
    river = {"records": 3000, "samples_per_s": 113110.0, "logloss": 0.4391}
    report = {
        "flights": {"river": river, "raw_consume": None, "freshness": None},
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
