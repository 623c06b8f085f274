"""LocalParameterServer: both logic forms, mini-batch semantics, and what it refuses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from kafka_ps.agents.adapter import RecordLogicAdapter, as_batch_logic
from kafka_ps.agents.api import (
    BatchParameterServerClient,
    BatchWorkerLogic,
    ParameterServerClient,
    ParamSpec,
    Prediction,
    TrainingRecord,
    UnknownParameterError,
    WorkerLogic,
)
from kafka_ps.agents.local import Counters, LocalParameterServer
from kafka_ps.tables.init import Constant
from kafka_ps.tables.keys import param_key
from kafka_ps.tables.update_rules import AdaGrad, Add, BadDeltaError, Sgd

COUNT = ParamSpec("count", (1,), Add(), dtype=np.dtype(np.int64))
MEAN = ParamSpec("mean", (1,), Sgd(lr=0.1), Constant(1.0))


def records(names: str) -> list[TrainingRecord]:
    """One record per character, naming that key; label = position."""
    return [
        TrainingRecord(features={"k": c}, label=float(t), key=b"r%d" % t)
        for t, c in enumerate(names)
    ]


def key_of(record: TrainingRecord, name: str = "count") -> bytes:
    return param_key(name, str(record.features["k"]))


def label_of(record: TrainingRecord) -> float:
    assert record.label is not None
    return record.label


class RecordCounter(WorkerLogic):
    """Counts records per key, record at a time; outputs the count it saw."""

    params = (COUNT,)
    task = "regression"

    def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
        ps.pull(key_of(record))

    def on_pull_recv(self, key: bytes, value: np.ndarray, ps: ParameterServerClient) -> None:
        ps.output(Prediction(float(value[0, 0]), None, key))
        ps.push(key, np.ones((1, 1), dtype=np.int64))


class BatchCounter(BatchWorkerLogic):
    """The same counting, a mini-batch at a time: one summed push per key."""

    params = (COUNT,)
    task = "regression"

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        keys = [key_of(r) for r in records]
        pulled = await ps.pull_many(keys)
        for key in keys:
            ps.output(Prediction(float(pulled[key][0, 0]), None, key))
        ps.push_many({key: np.array([[n]]) for key, n in Counter(keys).items()})


class RecordMean(WorkerLogic):
    """SGD on squared loss for a per-key mean, one gradient push per record."""

    params = (MEAN,)
    task = "regression"

    def __init__(self) -> None:
        self.waiting: list[TrainingRecord] = []

    def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
        self.waiting.append(record)
        ps.pull(key_of(record, "mean"))

    def on_pull_recv(self, key: bytes, value: np.ndarray, ps: ParameterServerClient) -> None:
        record = self.waiting.pop(0)
        assert key == key_of(record, "mean")
        estimate = float(value[0, 0])
        ps.output(Prediction(estimate, record.label, record.key))
        ps.push(key, np.array([[estimate - label_of(record)]]))


class BatchMean(BatchWorkerLogic):
    """The same SGD with one summed gradient per key per mini-batch."""

    params = (MEAN,)
    task = "regression"

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        keys = [key_of(r, "mean") for r in records]
        pulled = await ps.pull_many(keys)
        gradients: dict[bytes, float] = {}
        for key, record in zip(keys, records, strict=True):
            estimate = float(pulled[key][0, 0])
            ps.output(Prediction(estimate, record.label, record.key))
            gradients[key] = gradients.get(key, 0.0) + estimate - label_of(record)
        ps.push_many({key: np.array([[g]]) for key, g in gradients.items()})


class Scripted(BatchWorkerLogic):
    """Pulls and pushes exactly what it is given, once per mini-batch."""

    task = "regression"

    def __init__(
        self,
        params: Sequence[ParamSpec],
        pulls: Sequence[bytes],
        pushes: Mapping[bytes, object],
        repeat: int = 1,
    ) -> None:
        self.params = tuple(params)
        self.pulls = list(pulls)
        self.pushes = dict(pushes)
        self.repeat = repeat
        self.pulled: dict[bytes, np.ndarray] = {}

    async def on_batch(
        self, records: Sequence[TrainingRecord], ps: BatchParameterServerClient
    ) -> None:
        self.pulled = await ps.pull_many(self.pulls)
        for _ in range(self.repeat):
            for key, delta in self.pushes.items():
                ps.push_many({key: delta})  # type: ignore[dict-item]


STREAM = "abcabbacddaab" * 3


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_record_and_batch_counting_agree(batch_size: int) -> None:
    results = []
    for logic in (RecordCounter(), BatchCounter()):
        server = LocalParameterServer(logic.params, partitions=2)
        predictions = server.run(logic, records(STREAM), batch_size)
        results.append((predictions, server.snapshot(), server.counters))
    (p_rec, s_rec, c_rec), (p_batch, s_batch, c_batch) = results
    assert p_rec == p_batch
    assert c_rec == c_batch  # the same traffic on the wire
    assert s_rec.keys() == s_batch.keys()
    for key, n in Counter(key_of(r) for r in records(STREAM)).items():
        assert s_rec[key].tolist() == s_batch[key].tolist() == [n]


def test_record_and_batch_sgd_agree() -> None:
    stream = records("aabbbabcca" * 5)
    results = []
    for logic in (RecordMean(), BatchMean()):
        server = LocalParameterServer(logic.params)
        values = [p.value for p in server.run(logic, stream, 8)]
        results.append((values, server.snapshot()))
    (v_rec, s_rec), (v_batch, s_batch) = results
    np.testing.assert_allclose(v_rec, v_batch, rtol=1e-12)
    assert s_rec.keys() == s_batch.keys() == {param_key("mean", c) for c in "abc"}
    for key in s_rec:
        np.testing.assert_allclose(s_rec[key], s_batch[key], rtol=1e-12)


def test_pushes_are_applied_at_the_end_of_the_mini_batch() -> None:
    server = LocalParameterServer([COUNT])
    predictions = server.run(RecordCounter(), records("aaaaaaa"), batch_size=3)
    assert [p.value for p in predictions] == [0, 0, 0, 3, 3, 3, 6]
    assert server.snapshot()[param_key("count", "a")].tolist() == [7]
    # Per mini-batch: one pull and one push of the key, however many records name it.
    assert server.counters == Counters(pulls=3, pushes=3, pull_messages=3, push_messages=3)


def test_deltas_to_one_key_in_a_mini_batch_are_summed() -> None:
    """As on Kafka, where a push message names each key once: AdaGrad sees (g1 + g2)²."""
    spec = ParamSpec("w", (1,), AdaGrad(lr=1.0))
    key = param_key("w", 0)
    server = LocalParameterServer([spec])
    server.run(Scripted([spec], [], {key: np.array([[1.0]])}, repeat=2), records("a"))
    np.testing.assert_allclose(server.slots(key)[1], [4.0])


def test_pulls_are_answered_in_pull_order_with_later_rounds() -> None:
    class Echo(WorkerLogic):
        params = (COUNT,)
        task = "regression"

        def __init__(self) -> None:
            self.answered: list[bytes] = []

        def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
            ps.pull(key_of(record))

        def on_pull_recv(self, key: bytes, value: np.ndarray, ps: ParameterServerClient) -> None:
            self.answered.append(key)
            if key == param_key("count", "b"):
                ps.pull(param_key("count", "z"))  # a pull made while answering

    logic = Echo()
    LocalParameterServer(logic.params).run(logic, records("cabac"), batch_size=10)
    assert logic.answered == [param_key("count", c) for c in "cabacz"]


def test_a_pull_does_not_store_and_values_are_read_only_float64() -> None:
    """The array contract of tables/contract.py, as the Kafka client gives it."""
    spec = ParamSpec("w", (2,), Add(), Constant(3.0), dtype=np.dtype(np.float32))
    key = param_key("w", 0)
    server = LocalParameterServer([spec])
    logic = Scripted([spec], [key], {})
    asyncio.run(server.arun(logic, records("x")))
    np.testing.assert_array_equal(logic.pulled[key], [[3.0, 3.0]])
    assert logic.pulled[key].dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        logic.pulled[key][0, :] = 99.0
    assert server.snapshot() == {}
    np.testing.assert_array_equal(server.slots(key)[0], [3.0, 3.0])


@pytest.mark.parametrize("key", [b"nope:1", b"no-separator", b"\xff:1"])
def test_unknown_parameters_are_refused(key: bytes) -> None:
    server = LocalParameterServer([COUNT])
    with pytest.raises(UnknownParameterError):
        server.run(Scripted([COUNT], [key], {}), records("a"))
    with pytest.raises(UnknownParameterError):
        server.run(Scripted([COUNT], [], {key: np.ones((1, 1))}), records("a"))

    class PullsUnknown(RecordCounter):
        def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
            ps.pull(key)

    with pytest.raises(UnknownParameterError):
        server.run(PullsUnknown(), records("a"))
    assert server.snapshot() == {}


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((2, 1)),  # wrong shape
        np.array([[np.nan]]),
        np.array([[np.inf]]),
        np.array([["x"]]),
        np.array([[True]]),
        [[1.0], [1.0, 2.0]],  # ragged
        np.array([[1e308]]),  # overflows the value
    ],
)
def test_bad_deltas_are_refused_without_changing_state(bad: object) -> None:
    spec = ParamSpec("w", (1,), Add(), Constant(1e308))
    good, other = param_key("w", 0), param_key("w", 1)
    server = LocalParameterServer([spec])
    server.run(Scripted([spec], [], {good: np.array([[-1.0]])}), records("a"))
    before = server.snapshot()
    with pytest.raises(BadDeltaError):
        # A good push to a new key comes first in the same mini-batch: all or nothing.
        server.run(Scripted([spec], [], {other: np.array([[1.0]]), good: bad}), records("a"))
    assert server.snapshot().keys() == before.keys()
    np.testing.assert_array_equal(server.snapshot()[good], before[good])


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="partitions"):
        LocalParameterServer([COUNT], partitions=0)
    server = LocalParameterServer([COUNT])
    with pytest.raises(ValueError, match="batch_size"):
        server.run(BatchCounter(), records("a"), batch_size=0)
    with pytest.raises(TypeError):
        server.run(object(), records("a"))  # type: ignore[arg-type]


def test_outputs_accumulate_across_runs() -> None:
    server = LocalParameterServer([COUNT])
    first = server.run(BatchCounter(), records("ab"))
    second = server.run(BatchCounter(), records("a"))
    assert server.outputs == first + second
    assert second[0].value == 1


class RecordingClient:
    """A batch client that answers every pull with 5 and records every call."""

    def __init__(self) -> None:
        self.pulls: list[list[bytes]] = []
        self.pushes: list[dict[bytes, np.ndarray]] = []
        self.outputs: list[Prediction] = []

    async def pull_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        self.pulls.append(list(keys))
        return {key: np.full((1, 1), 5, dtype=np.int64) for key in keys}

    def push_many(self, deltas: Mapping[bytes, np.ndarray]) -> None:
        self.pushes.append(dict(deltas))

    def output(self, prediction: Prediction) -> None:
        self.outputs.append(prediction)


def test_as_batch_logic_wraps_record_logic_and_passes_batch_logic_through() -> None:
    batch = BatchCounter()
    assert as_batch_logic(batch) is batch
    record = RecordCounter()
    adapted = as_batch_logic(record)
    assert isinstance(adapted, RecordLogicAdapter) and adapted.logic is record
    assert adapted.params == record.params and adapted.task == record.task
    with pytest.raises(TypeError, match="not a Logic, WorkerLogic or BatchWorkerLogic"):
        as_batch_logic(object())  # type: ignore[arg-type]


def test_adapter_pulls_once_per_round_and_forwards_pushes_and_outputs() -> None:
    client = RecordingClient()
    asyncio.run(as_batch_logic(RecordCounter()).on_batch(records("abca"), client))
    keys = [param_key("count", c) for c in "abca"]
    assert client.pulls == [keys]
    assert [p.record_key for p in client.outputs] == keys
    assert [p.value for p in client.outputs] == [5.0] * 4
    assert [list(push) for push in client.pushes] == [[key] for key in keys]
    assert all(push[key].tolist() == [[1]] for push, key in zip(client.pushes, keys, strict=True))


def test_adapter_answers_pulls_made_while_answering_in_a_further_round() -> None:
    class Chain(RecordCounter):
        """Pulls ``a``; its answer pulls ``b`` and ``c``; their answers pull nothing."""

        def __init__(self) -> None:
            self.seen: list[int] = []

        def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
            ps.pull(param_key("count", "a"))

        def on_pull_recv(self, key: bytes, value: np.ndarray, ps: ParameterServerClient) -> None:
            self.seen.append(int(value[0, 0]))
            value[0, 0] = -1  # each answer is the logic's own copy
            if key == param_key("count", "a"):
                ps.pull(param_key("count", "b"))
                ps.pull(param_key("count", "c"))

    client, logic = RecordingClient(), Chain()
    asyncio.run(as_batch_logic(logic).on_batch(records("xy"), client))
    a, b, c = (param_key("count", name) for name in "abc")
    assert client.pulls == [[a, a], [b, c, b, c]]
    assert logic.seen == [5] * 6


def test_adapter_refuses_an_unknown_key_where_it_is_pulled() -> None:
    class PullsUnknown(RecordCounter):
        def on_recv(self, record: TrainingRecord, ps: ParameterServerClient) -> None:
            ps.pull(b"nope:1")

    client = RecordingClient()
    with pytest.raises(UnknownParameterError):
        asyncio.run(as_batch_logic(PullsUnknown()).on_batch(records("a"), client))
    assert client.pulls == []
