"""The worker's client refuses, before anything is sent, what a shard would reject."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kafka_ps.agents.api import ParamRegistry, ParamSpec, UnknownParameterError
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.telemetry import WorkerTelemetry
from kafka_ps.agents.worker import KafkaPsClient
from kafka_ps.tables.shard import RejectedPush
from kafka_ps.tables.update_rules import make_rule

W = b"w:0"


def client(**settings: object) -> KafkaPsClient:
    """No app and no router: a check that lets anything through fails on them instead."""
    registry = ParamRegistry([ParamSpec("w", (3,), make_rule("add"))])
    return KafkaPsClient(
        None,  # type: ignore[arg-type]
        JobSettings(**settings),  # type: ignore[arg-type]
        registry,
        None,  # type: ignore[arg-type]
        0,
        0,
        asyncio.Semaphore(),
        {},
        WorkerTelemetry("t", {}, {}),
    )


def test_a_pull_of_an_unknown_parameter_fails_before_asking() -> None:
    with pytest.raises(UnknownParameterError, match="nope"):
        asyncio.run(client().pull_many([W, b"nope:0"]))


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (np.ones(4), "wrong_shape"),
        (np.ones((3, 1, 1, 2)), "wrong_shape"),
        (np.array([1.0, np.nan, 1.0]), "non_finite_delta"),
        (np.array([[np.inf, 1.0, 1.0]]), "non_finite_delta"),
    ],
)
def test_a_bad_delta_fails_and_leaves_the_batch_unchanged(delta: np.ndarray, reason: str) -> None:
    ps = client()
    ps.push_many({W: np.ones(3)})
    with pytest.raises(RejectedPush) as raised:
        ps.push_many({W: np.ones(3), b"w:1": delta})
    assert raised.value.reason == reason
    np.testing.assert_array_equal(ps.deltas[W], [[1.0, 1.0, 1.0]])
    assert list(ps.deltas) == [W]


def test_deltas_that_overflow_when_summed_are_refused() -> None:
    ps = client()
    ps.push_many({W: np.full(3, 1e308)})
    with pytest.raises(RejectedPush, match="non_finite_delta"):
        ps.push_many({W: np.full(3, 1e308)})


def test_deltas_to_a_key_are_summed_in_the_parameter_s_delta_shape() -> None:
    ps = client()
    ps.push_many({W: np.array([1.0, 2.0, 3.0])})
    ps.push_many({W: np.array([[1.0, 1.0, 1.0]])})
    assert ps.deltas[W].shape == (1, 3)
    np.testing.assert_array_equal(ps.deltas[W], [[2.0, 3.0, 4.0]])


def test_an_unknown_parameter_in_a_push_is_refused() -> None:
    with pytest.raises(UnknownParameterError):
        client().push_many({b"nope:0": np.ones(3)})


def test_the_significance_filter_holds_small_deltas_back_until_they_add_up() -> None:
    ps = client(push_threshold=0.5)
    held = ps.held_back
    ps.deltas = {b"w:0": np.array([0.3, 0.0, 0.0]), b"w:1": np.array([0.0, 0.9, 0.0])}
    ps._filter()
    assert list(ps.deltas) == [b"w:1"]
    np.testing.assert_array_equal(held[b"w:0"], [0.3, 0.0, 0.0])
    ps.deltas = {b"w:0": np.array([0.3, 0.0, 0.0])}
    ps._filter()
    np.testing.assert_allclose(ps.deltas[b"w:0"], [0.6, 0.0, 0.0])
    assert held == {}
