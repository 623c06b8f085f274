"""Training records from ordinary files: CSV (pandas' too), JSON lines, Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kafka_ps.agents.records import parse_record
from kafka_ps.app.sources import InputError, read_file
from kafka_ps.app.train import training_records


def test_a_pandas_csv_drops_its_unnamed_index_and_detects_numeric_columns(
    tmp_path: Path,
) -> None:
    path = tmp_path / "frame.csv"
    frame = pd.DataFrame(
        {"carrier": ["UA", "AA", "7"], "distance": [1400, 733, None], "y": [1, 0, 1]},
        index=[10, 11, 12],
    )
    frame.to_csv(path)
    assert path.read_text().startswith(",carrier,")
    result = read_file(path, label="y")
    assert result.numeric == ["distance"]
    assert result.records[0] == {
        "label": 1.0,
        "features": {"carrier": "UA", "distance": 1400.0},
    }
    # A missing cell is a missing feature; a column with text is categorical throughout.
    assert result.records[2]["features"] == {"carrier": "7"}
    produced = list(training_records(result.records, partitions=2))
    assert parse_record(produced[1][1]).features == {"carrier": "AA", "distance": 733.0}


def test_numeric_given_wins_over_detection(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("zip,age,label\n10001,31,1\n02139,45,0\n")
    assert read_file(path).numeric == ["zip", "age"]
    result = read_file(path, numeric=["age"])
    assert result.numeric == ["age"]
    assert result.records[1]["features"] == {"zip": "02139", "age": 45.0}
    with pytest.raises(InputError, match="no feature column: \\['nope'\\]"):
        read_file(path, numeric=["nope"])


def test_a_named_index_column_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("row,id,carrier,delayed\n0,f1,UA,1\n1,f2,AA,0\n")
    result = read_file(path, label="delayed", key="id", index_col="row")
    assert result.records[0] == {"label": 1.0, "key": "f1", "features": {"carrier": "UA"}}
    assert result.numeric == []
    key, _, _ = next(training_records(result.records, partitions=1))
    assert key == b"f1"


def test_a_bad_row_names_file_and_line_or_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\nx,1,1\ny,2,yes\nz,3\nw,4,0\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: label 'yes' is not a finite number"):
        read_file(path)
    result = read_file(path, skip_bad=True)
    assert len(result.records) == 2
    assert result.skipped == [
        f"{path}:3: label 'yes' is not a finite number",
        f"{path}:4: 2 fields, the header has 3",
    ]


def test_numeric_column_with_text_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("a,label\n1,1\nabc,0\n")
    with pytest.raises(InputError, match=r"n\.csv:3: numeric column 'a': 'abc'"):
        read_file(path, numeric=["a"])


def test_bad_column_names_fail_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("a:b,label\n1,1\n")
    with pytest.raises(InputError, match=r"h\.csv: header: bad_feature_name"):
        read_file(path)


def test_jsonl_training_records_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"features": {"a": "x"}, "label": 1}\n\n{"dense": [1, 2], "label": 0}\n')
    produced = list(training_records(read_file(path).records, partitions=2))
    assert [partition for _, _, partition in produced] == [0, 1]
    first = parse_record(produced[0][1])
    assert first.features == {"a": "x"} and first.label == 1.0
    assert parse_record(produced[1][1]).dense.tolist() == [1.0, 2.0]


def test_flat_json_lines_read_like_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    pd.DataFrame({"x": [1.5, 2.0], "c": ["p", "q"], "y": [0, 1]}).to_json(
        path, orient="records", lines=True
    )
    result = read_file(path, label="y")
    assert result.numeric == ["x"]
    assert result.records[1] == {"label": 1.0, "features": {"x": 2.0, "c": "q"}}


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "c": ["p", "q"], "label": [0, 1]}, index=[5, 6]).to_parquet(path)
    result = read_file(path)
    assert result.numeric == ["x"]
    assert result.records == [
        {"label": 0.0, "features": {"x": 1.0, "c": "p"}},
        {"label": 1.0, "features": {"x": 2.0, "c": "q"}},
    ]


def test_bad_files_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(InputError, match=r"unknown format"):
        read_file(tmp_path / "a.txt")
    with pytest.raises(InputError, match="no such file"):
        read_file(tmp_path / "missing.csv")
    (tmp_path / "b.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="no label column 'label'"):
        read_file(tmp_path / "b.csv")
    (tmp_path / "c.jsonl").write_text('{"features": {"a": 1}}\nnot json\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: not JSON"):
        read_file(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"features": {"a": NaN}, "label": 1}\n')
    with pytest.raises(InputError, match=r"d\.jsonl:1: non_finite"):
        read_file(tmp_path / "d.jsonl")
    (tmp_path / "e.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_file(tmp_path / "e.parquet")
