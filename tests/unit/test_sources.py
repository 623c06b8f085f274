"""Training records from JSON-lines and CSV files."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.records import parse_record
from app.sources import read_file
from app.train import training_records


def test_jsonl_records_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"features": {"a": "x"}, "label": 1}\n\n{"dense": [1, 2], "label": 0}\n')
    produced = list(training_records(read_file(path), partitions=2))
    assert [partition for _, _, partition in produced] == [0, 1]
    first = parse_record(produced[0][1])
    assert first.features == {"a": "x"} and first.label == 1.0
    assert parse_record(produced[1][1]).dense.tolist() == [1.0, 2.0]


def test_csv_columns_become_features(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("id,carrier,distance,delayed\nf1,UA,1400,1\nf2,AA,,0\n")
    records = list(read_file(path, label="delayed", key="id"))
    assert records[0] == {
        "label": 1.0,
        "key": "f1",
        "features": {"carrier": "UA", "distance": 1400.0},
    }
    assert records[1]["features"] == {"carrier": "AA"}
    key, _, _ = next(training_records(records, partitions=1))
    assert key == b"f1"


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(ValueError, match=r"expected a \.jsonl or \.csv"):
        read_file(tmp_path / "a.txt")
    (tmp_path / "b.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="no 'label' column"):
        list(read_file(tmp_path / "b.csv"))
    (tmp_path / "c.jsonl").write_text('{"features": {"a": 1}}\nnot json\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2: not JSON"):
        list(read_file(tmp_path / "c.jsonl"))
    (tmp_path / "d.jsonl").write_text('{"features": {"a": NaN}, "label": 1}\n')
    with pytest.raises(ValueError, match="record 1: non_finite"):
        list(training_records(read_file(tmp_path / "d.jsonl"), partitions=1))
