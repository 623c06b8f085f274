"""Built-in models trained end to end through Kafka on real data, against sequential references."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from kafka_ps.agents.client import read_all
from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.datasets import FLIGHT_CROSSES, flights, movielens
from kafka_ps.app.process import settings_env
from kafka_ps.app.train import run_job
from tests.reference import ftrl_logloss, river_logistic, sequential_mf

MF = {"k": 16, "lr": 0.01, "reg": 0.05, "mean": 3.5, "init_std": 0.1, "seed": 0, "clip": None}


#: How far kafka-ps's progressive logloss may sit from sequential FTRL's (0.4638 on these
#: records), either way. In process (agents.local), two logical workers alternating
#: 32-record batches, each learning record by record on its local copy, measured 0.4639
#: (+0.01%); with 256-record batches +0.3%. Through the broker (this test, 2 worker
#: processes) it measured 0.4670 (+0.7%), the rest being pulls in flight and workers out
#: of step; 2% leaves about three times that. FTRL with one summed update per 256-record
#: batch falls 5.5% behind (docs/architecture.md, "Learning quality versus batching"), and
#: fails. The test runs 256-record batches, to keep its time in bounds on a busy machine.
FTRL_TOLERANCE = 0.02


def test_flights_logistic_regression_matches_sequential_ftrl_and_river(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    records = list(flights(limit=60_000))
    crosses = [list(cross) for cross in FLIGHT_CROSSES]
    settings = job_settings.model_copy(
        update={
            "partitions": 2,
            "shards": 4,
            "batch_size": 256,
            "model": "logreg_ftrl",
            "model_params": {"crosses": crosses},
        }
    )
    summary = run_job(settings, records, "classification", workers=2, servers=1, logs=tmp_path)
    assert summary.records == len(records)
    # The same model's hyper-parameters (the defaults), one record at a time in order.
    ftrl = ftrl_logloss(records, crosses=FLIGHT_CROSSES).logloss
    river = river_logistic(records, crosses=FLIGHT_CROSSES).logloss
    assert abs(summary.loss - ftrl) / ftrl <= FTRL_TOLERANCE, (summary.loss, ftrl)
    assert summary.loss <= river * 1.02, (summary.loss, river)


def read_model_updates(bootstrap: str, topic: str, partitions: int) -> dict[str, np.ndarray]:
    """The topic's messages decoded by hand from the documented format (docs/formats.md)."""
    latest: dict[str, np.ndarray] = {}
    for message in read_all(bootstrap, topic, range(partitions)):
        value = message.value()
        if message.key().startswith(b"__marks__:"):
            marks = np.frombuffer(value, "<i8")
            assert marks.shape == (2,) and (marks >= -1).all()
            continue
        magic, version, dtype, ndim, n_slots, _rule, _offset, _clock = struct.unpack_from(
            "<2sBBBBHqq", value
        )
        assert (magic, version, dtype, n_slots) == (b"KP", 1, 2, 1)
        shape = struct.unpack_from(f"<{ndim}I", value, 24)
        size = int(np.prod(shape))
        latest[message.key().decode()] = np.frombuffer(value, "<f8", size, 24 + 4 * ndim).reshape(
            shape
        )
    return latest


def test_matrix_factorisation_on_ml100k_and_the_model_updates_topic(
    job_settings: JobSettings, tmp_path: Path
) -> None:
    records = list(movielens("ml-100k"))
    settings = job_settings.model_copy(
        update={"partitions": 2, "shards": 4, "batch_size": 256, "model": "mf", "model_params": MF}
    )
    summary = run_job(settings, records, "regression", workers=2, servers=1, logs=tmp_path)
    reference = sequential_mf(
        records, k=16, lr=0.01, reg=0.05, init_std=0.1, seed=0, global_mean=3.5
    ).rmse
    assert summary.records == len(records)
    assert summary.loss <= reference * 1.02, (summary.loss, reference)

    topic = settings.topic("model-updates")
    plain = read_model_updates(settings.broker, topic, settings.shards)
    users = {record["features"]["user"] for record in records}
    assert sum(key.startswith("u:") for key in plain) == len(users)
    out = tmp_path / "model.npz"
    env = {**settings_env(settings), "PATH": str(Path(sys.executable).parent)}
    subprocess.run(
        [sys.executable, "-m", "kafka_ps.app.cli", "model", "--out", str(out)], env=env, check=True
    )
    exported = np.load(out)
    assert set(exported.files) == set(plain)
    for key, value in plain.items():
        np.testing.assert_array_equal(exported[key], value)
