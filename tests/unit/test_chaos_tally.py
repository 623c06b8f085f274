"""The chaos run's tallies, without a broker: what each view counts as lost, doubled and
republished, and the predictions reader's rows as the worker writes them."""

from __future__ import annotations

import json

from benchmarks.chaos_driver import ChaosResult, Tally, record_name
from kafka_ps.agents.api import Prediction
from kafka_ps.agents.worker import Unit, predictions_message
from kafka_ps.app.train import PredictedRecord, prediction_rows


def result(inputs: list[str], predicted: dict[str, int]) -> ChaosResult:
    """A run whose counters are exact, with these records and predictions."""
    counts = {"k1": 2, "k2": 1}
    return ChaosResult(
        kills=1,
        records=3,
        seconds=1.0,
        produced=counts,
        counted=dict(counts),
        published=dict(counts),
        inputs=frozenset(inputs),
        predicted=predicted,
    )


def test_a_record_is_named_by_its_place_and_key() -> None:
    assert record_name((3, 1207, None), "r5012") == "3:1207 r5012"
    assert record_name((0, 8, 2), None) == "0:8:2 None"


def test_every_record_predicted_once_or_republished_is_exact() -> None:
    tallies = result(["0:0 r0", "0:1 r1", "1:0 r2"], {"0:0 r0": 1, "0:1 r1": 2, "1:0 r2": 3})
    assert all(tally.exact for tally in tallies.tallies().values())
    predictions = tallies.tallies()["predictions"]
    assert predictions == Tally(lost=0, doubled=0, wrong={}, republished=3)
    assert predictions.summary()["republished"] == 3
    assert "republished" not in tallies.tallies()["changelog"].summary()


def test_a_lost_an_invented_and_a_rekeyed_prediction_are_each_wrong() -> None:
    inputs = ["0:0 r0", "0:1 r1", "0:2 r2", "1:0 r3"]
    predicted = {
        "0:0 r0": 2,  # republished: counted once
        # 0:1 lost
        "0:2 r2": 1,
        "0:2 r9": 1,  # a republished batch with another key for the record at 0:2
        "1:0 r3": 1,
        "1:1 r4": 1,  # a record never produced
    }
    tallies = result(inputs, predicted).tallies()
    assert tallies["changelog"].exact and tallies["model-updates"].exact
    assert tallies["predictions"] == Tally(
        lost=1,
        doubled=2,
        wrong={"0:1 r1": (1, None), "0:2 r9": (0, 1), "1:1 r4": (0, 1)},
        republished=1,
    )
    assert not tallies["predictions"].exact


def test_counters_compare_per_key() -> None:
    tally = Tally.of({"k1": 2, "k2": 1, "k3": 1}, {"k1": 3, "k2": 1, "k4": 1})
    assert tally == Tally(lost=1, doubled=2, wrong={"k1": (2, 3), "k3": (1, None), "k4": (0, 1)})


def test_the_reader_rows_are_the_workers_predictions() -> None:
    unit = Unit(5, raw=[(b"{}", None, None)])
    batch = Unit(6, raw=[(b"", None, 0), (b"", None, 1)])
    outputs = [Prediction(0.5, None, b"r5"), Prediction(1.0, 2.0, None), Prediction(3.0, 4.0)]
    _, value = predictions_message(2, [unit, batch], outputs)
    assert list(prediction_rows(json.loads(value))) == [
        PredictedRecord((2, 5, None), "r5", None, 0.5),
        PredictedRecord((2, 6, 0), None, 2.0, 1.0),
        PredictedRecord((2, 6, 1), None, 4.0, 3.0),
    ]
