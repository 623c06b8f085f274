"""One validation and one array contract for both runtimes (tables/contract.py).

The Kafka worker's client and the in-process server are given the same pushes and must
accept, refuse and sum them alike; pulled values have the same kind on both.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from kafka_ps.agents.api import ParamRegistry, ParamSpec, UnknownParameterError
from kafka_ps.agents.local import LocalParameterServer, Session
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.telemetry import WorkerTelemetry
from kafka_ps.agents.worker import KafkaPsClient
from kafka_ps.tables.contract import BadPushError, pulled_value
from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.shard import RejectedPush
from kafka_ps.tables.update_rules import BadDeltaError, make_rule

SPECS = [ParamSpec("w", (3,), make_rule("add")), ParamSpec("z", (2,), make_rule("ftrl_additive"))]
W, Z = b"w:0", b"z:0"


def kafka_client() -> KafkaPsClient:
    return KafkaPsClient(
        None,  # type: ignore[arg-type]
        JobSettings(),
        ParamRegistry(SPECS),
        None,  # type: ignore[arg-type]
        0,
        0,
        asyncio.Semaphore(),
        {},
        WorkerTelemetry("t", {}, {}),
    )


def local_client() -> Session:
    return Session(LocalParameterServer(SPECS))


def pending(client: Any) -> dict[bytes, np.ndarray]:
    return client.deltas if isinstance(client, KafkaPsClient) else client.pushes


CLIENTS = [kafka_client, local_client]


@pytest.mark.parametrize("make", CLIENTS)
@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (np.ones(4), "wrong_shape"),
        (np.ones((2, 3)), "wrong_shape"),
        (np.array([1.0, np.nan, 1.0]), "non_finite_delta"),
        (np.array([[np.inf, 1.0, 1.0]]), "non_finite_delta"),
        (np.array([True, False, True]), "wrong_type"),
        (np.array(["a", "b", "c"]), "wrong_type"),
        ([[1.0], [1.0, 2.0]], "wrong_type"),
    ],
)
def test_both_clients_refuse_the_same_deltas_with_the_same_reason(
    make: Any, delta: object, reason: str
) -> None:
    client = make()
    client.push_many({W: np.ones(3)})
    with pytest.raises(BadPushError) as raised:
        client.push_many({b"w:1": np.ones(3), W: delta})
    assert raised.value.reason == reason
    assert isinstance(raised.value, RejectedPush | BadDeltaError | KafkaPsError)
    assert list(pending(client)) == [W]
    np.testing.assert_array_equal(pending(client)[W], [[1.0, 1.0, 1.0]])


@pytest.mark.parametrize("make", CLIENTS)
def test_both_clients_reshape_and_sum_alike(make: Any) -> None:
    client = make()
    client.push_many({W: [1, 2, 3], Z: np.ones(4)})
    client.push_many({W: np.array([[0.5, 0.5, 0.5]]), Z: np.ones((2, 2))})
    assert pending(client)[W].dtype == np.float64
    np.testing.assert_array_equal(pending(client)[W], [[1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(pending(client)[Z], [[2.0, 2.0], [2.0, 2.0]])


@pytest.mark.parametrize("make", CLIENTS)
def test_both_clients_refuse_undeclared_parameters(make: Any) -> None:
    with pytest.raises(UnknownParameterError, match="nope"):
        make().push_many({b"nope:0": np.ones(3)})
    with pytest.raises(UnknownParameterError, match="nope"):
        asyncio.run(make().pull_many([W, b"nope:0"]))


def test_pulled_values_are_read_only_float64_in_slot_shape() -> None:
    flat = np.arange(6, dtype=np.float32)
    value = pulled_value(SPECS[1], flat)
    assert value.shape == (3, 2) and value.dtype == np.float64
    assert not value.flags.writeable
    local = asyncio.run(local_client().pull_many([Z]))[Z]
    assert local.shape == (3, 2) and local.dtype == np.float64 and not local.flags.writeable
    mine = np.zeros(3)
    pulled_value(SPECS[0], mine)
    assert mine.flags.writeable  # the caller's own array is left writable


def pending_rows(client: Any) -> dict[bytes, np.ndarray]:
    """A client's pending deltas by key, its first push by rows included."""
    if isinstance(client, KafkaPsClient) and client.rows is not None:
        return {**client.deltas, **dict(zip(*client.rows, strict=True))}
    return pending(client)


@pytest.mark.parametrize("make", CLIENTS)
@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        ([], ValueError, "at least one key"),
        ([b"w:0", b"z:0"], ValueError, "one parameter"),
        ([b"w:0", b"w:0"], ValueError, "twice"),
        ([b"w:0", b"w:1:2"], UnknownParameterError, "w:1"),
    ],
)
def test_both_clients_refuse_the_same_rows(
    make: Any, keys: list[bytes], error: type[Exception], match: str
) -> None:
    client = make()
    with pytest.raises(error, match=match):
        client.push_rows(keys, np.ones((len(keys), 1, 3)))
    with pytest.raises(error, match=match):
        asyncio.run(client.pull_rows(keys))
    assert pending_rows(client) == {}


@pytest.mark.parametrize("make", CLIENTS)
@pytest.mark.parametrize(
    ("delta", "reason"),
    [(np.ones((2, 4)), "wrong_shape"), (np.array([[1.0, 2, 3], [np.inf, 0, 0]]), "non_finite")],
)
def test_both_clients_refuse_bad_rows_alike(make: Any, delta: np.ndarray, reason: str) -> None:
    client = make()
    with pytest.raises(BadPushError) as refused:
        client.push_rows([b"w:0", b"w:1"], delta)
    assert refused.value.reason.startswith(reason)
    assert pending_rows(client) == {}


@pytest.mark.parametrize("make", CLIENTS)
def test_rows_are_summed_with_pushes_by_key(make: Any) -> None:
    client = make()
    client.push_rows([b"w:0", b"w:1"], np.arange(6.0).reshape(2, 1, 3))
    client.push_many({W: np.ones(3)})
    client.push_rows([b"w:1"], np.ones((1, 3)))
    summed = pending_rows(client)
    assert np.array_equal(summed[W], [[1.0, 2, 3]])
    assert np.array_equal(summed[b"w:1"], [[4.0, 5, 6]])


def test_pulled_rows_are_read_only_float64_of_a_row_per_key() -> None:
    server = LocalParameterServer(SPECS)
    server.apply({b"z:1": np.array([[1.0, 2.0], [3.0, 4.0]])})
    rows = asyncio.run(Session(server).pull_rows([b"z:0", b"z:1"]))
    assert rows.shape == (2, 3, 2) and rows.dtype == np.float64 and not rows.flags.writeable
    assert np.array_equal(rows[0], np.zeros((3, 2)))
    assert np.array_equal(rows[1], np.stack(server.slots(b"z:1")))
