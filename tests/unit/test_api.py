"""The model author's API (docs/api.md): parameters by name and index, hooks, outputs,
and check_logic catching every mistake the docs list."""

from __future__ import annotations

import asyncio
import json
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kafka_ps
import kafka_ps.agents
from kafka_ps import (
    AdaGrad,
    Add,
    BadPushError,
    LocalParameterServer,
    Logic,
    LogicError,
    OutputError,
    Params,
    ParamSpec,
    TrainingRecord,
    UnknownParameterError,
    check_logic,
    make_rule,
    sample_records,
)
from kafka_ps.agents.jobs import PICKLED, load_logic
from kafka_ps.agents.logic import LogicAdapter
from kafka_ps.agents.records import BadRecordError
from kafka_ps.tables.init import Constant
from kafka_ps.tables.keys import param_key
from tests.integration.api_model import AdaGradRegression, synthetic


def records(n: int, dim: int = 3) -> list[TrainingRecord]:
    rng = np.random.default_rng(1)
    return [
        TrainingRecord(dense=rng.normal(size=dim), label=float(t), key=b"r%d" % t, offset=t)
        for t in range(n)
    ]


class Scripted(Logic):
    """Pulls, pushes and outputs what a test says; records what it saw."""

    def __init__(self, params: Sequence[ParamSpec] | None = None, **script: Any) -> None:
        self.params = params or [ParamSpec("w", (3,), Add(), Constant(2.0))]
        self.script = script
        self.seen: list[Any] = []
        self.calls: list[str] = []

    def open(self) -> None:
        self.calls.append("open")

    def end_of_input(self) -> None:
        self.calls.append("end_of_input")

    def close(self) -> None:
        self.calls.append("close")

    async def learn(self, records: Sequence[TrainingRecord], ps: Params) -> None:
        for name, index in self.script.get("pulls", []):
            self.seen.append(await ps.pull(name, index))
        for name, index, delta in self.script.get("pushes", []):
            ps.push(name, index, delta)
        outputs = self.script.get("outputs", lambda r: [(r, 1.0)])
        for batch_record in records:
            for record, value in outputs(batch_record):
                ps.output(record, value)
        if "raise" in self.script:
            raise self.script["raise"]


def run(logic: Logic, n: int = 2, batch_size: int = 16) -> LocalParameterServer:
    server = LocalParameterServer(logic.params)
    server.run(logic, records(n), batch_size)
    return server


def test_pull_returns_values_in_the_declared_shape_by_name_and_index() -> None:
    logic = Scripted(pulls=[("w", 3), ("w", [3, 17]), ("w", np.array([1]))])
    run(logic)
    one, two, array_index = logic.seen
    assert one.shape == (3,) and two.shape == (2, 3) and array_index.shape == (1, 3)
    np.testing.assert_array_equal(two, np.full((2, 3), 2.0))
    for value in logic.seen:
        assert value.dtype == np.float64 and not value.flags.writeable


def test_pull_all_reads_several_parameters_at_once() -> None:
    specs = [ParamSpec("w", (2,), Add()), ParamSpec("b", (1,), Add(), Constant(5.0))]

    class Both(Scripted):
        async def learn(self, records: Sequence[TrainingRecord], ps: Params) -> None:
            self.seen.append(await ps.pull_all({"w": [0, 1], "b": 0}))
            for record in records:
                ps.output(record, None)

    logic = Both(specs)
    server = run(logic)
    (pulled,) = logic.seen
    assert pulled["w"].shape == (2, 2) and pulled["b"].tolist() == [5.0]
    assert server.counters.pull_messages == 1


def test_push_takes_the_declared_shape_and_sums_repeated_indices() -> None:
    spec = ParamSpec("w", (2,), AdaGrad(lr=1.0))
    logic = Scripted(
        [spec],
        pushes=[("w", [4, 4, 9], [[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]]), ("w", 9, [0.0, 1.0])],
    )
    server = run(logic)
    # AdaGrad's accumulator holds the square of the summed gradient per element.
    np.testing.assert_array_equal(server.slots(param_key("w", 4))[1], [4.0, 0.0])
    np.testing.assert_array_equal(server.slots(param_key("w", 9))[1], [0.0, 16.0])
    assert server.counters.pushes == 2


def test_outputs_may_be_any_json_value_and_keep_record_order() -> None:
    logic = Scripted(outputs=lambda r: [(r, {"class": "a", "score": [r.offset, 0.5]})])
    server = run(logic, n=3)
    assert [p.value for p in server.outputs] == [
        {"class": "a", "score": [t, 0.5]} for t in range(3)
    ]
    assert [p.record_key for p in server.outputs] == [b"r0", b"r1", b"r2"]
    numbers = run(Scripted(outputs=lambda r: [(r, np.int64(r.offset))]), n=2)
    assert [p.value for p in numbers.outputs] == [0.0, 1.0]


def test_hooks_run_open_end_of_input_close_in_order_and_close_after_an_error() -> None:
    logic = Scripted()
    run(logic)
    assert logic.calls == ["open", "end_of_input", "close"]
    failing = Scripted(**{"raise": ValueError("mine")})
    with pytest.raises(ValueError, match="mine"):
        run(failing)
    assert failing.calls == ["open", "close"]


def test_a_logic_whose_rule_takes_two_slots_per_push_is_refused() -> None:
    spec = ParamSpec("z", (2,), make_rule("ftrl_additive"))
    with pytest.raises(LogicError, match="ftrl_additive"):
        LogicAdapter(Scripted([spec]))


MISTAKES: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "wrong shape": (
        {"pushes": [("w", 0, np.ones(4))]},
        BadPushError,
        r"w\[0\]: the delta has shape \[4\], expected \[3\]",
    ),
    "wrong shape for several": (
        {"pushes": [("w", [0, 1], np.ones(3))]},
        BadPushError,
        "expected \\[2, 3\\]",
    ),
    "NaN delta": ({"pushes": [("w", 0, [1.0, np.nan, 0.0])]}, BadPushError, "NaN or Inf"),
    "infinite delta": ({"pushes": [("w", 1, [np.inf, 0.0, 0.0])]}, BadPushError, "NaN or Inf"),
    "not numbers": ({"pushes": [("w", 0, ["a", "b", "c"])]}, BadPushError, "not integers"),
    "undeclared parameter pulled": (
        {"pulls": [("v", 0)]},
        UnknownParameterError,
        "no parameter named 'v'",
    ),
    "undeclared parameter pushed": (
        {"pushes": [("v", 0, np.ones(3))]},
        UnknownParameterError,
        "declared: w",
    ),
    "missing output": ({"outputs": lambda r: []}, OutputError, "no output for record #0"),
    "two outputs": ({"outputs": lambda r: [(r, 1.0), (r, 2.0)]}, OutputError, "two outputs"),
    "output not JSON": (
        {"outputs": lambda r: [(r, object())]},
        OutputError,
        "not JSON-serialisable",
    ),
    "output for a record of another batch": (
        {"outputs": lambda r: [(r, 1.0), (TrainingRecord(), 1.0)]},
        OutputError,
        "not in this mini-batch",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_check_logic_catches_each_documented_mistake(mistake: str) -> None:
    script, error, message = MISTAKES[mistake]
    with pytest.raises(error, match=message) as raised:
        check_logic(Scripted(**script), records(3), picklable=False)  # scripts hold lambdas
    assert any("check_logic: in mini-batch 0" in note for note in raised.value.__notes__)


def test_check_logic_catches_bad_declarations() -> None:
    empty = Scripted()
    empty.params = []
    with pytest.raises(LogicError, match="declares no parameters"):
        check_logic(empty)
    with pytest.raises(LogicError, match="unique"):
        check_logic(Scripted([ParamSpec("w", (1,), Add()), ParamSpec("w", (2,), Add())]))
    wrong_task = Scripted()
    wrong_task.task = "ranking"  # type: ignore[assignment]
    with pytest.raises(LogicError, match="task"):
        check_logic(wrong_task)


def test_check_logic_checks_low_level_logic_outputs_too() -> None:
    from tests.unit.test_local_ps import BatchCounter
    from tests.unit.test_local_ps import Scripted as LowLevel

    check_logic(BatchCounter(), [TrainingRecord(features={"k": "a"}, key=b"r")])
    spec = ParamSpec("w", (1,), Add())
    with pytest.raises(OutputError, match="0 outputs for 1 records"):
        check_logic(LowLevel([spec], [], {}), [TrainingRecord(key=b"r")])


def test_a_correct_logic_passes_and_learns() -> None:
    fields, w, b = synthetic(3000)
    stream = [
        TrainingRecord(dense=np.array(f["dense"]), label=f["label"], key=f["key"].encode())
        for f in fields
    ]
    logic = AdaGradRegression(5)
    server = check_logic(logic, stream, batch_size=32)
    assert logic.opened and logic.ended and logic.closed
    snapshot = server.snapshot()
    np.testing.assert_allclose(snapshot[param_key("w", 0)], w, atol=0.05)
    np.testing.assert_allclose(snapshot[param_key("b", 0)], [b], atol=0.05)
    errors = [(p.value - p.label) ** 2 for p in server.outputs]
    assert np.mean(errors[-500:]) < 0.1 * np.mean(errors[:100])


def test_a_pickled_logic_loads_as_a_job_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "logic.pickle"
    path.write_bytes(pickle.dumps(AdaGradRegression(4, lr=0.1)))
    loaded = load_logic(f"{PICKLED}{path}", {})
    assert isinstance(loaded, LogicAdapter)
    assert [spec.shape for spec in loaded.params] == [(4,), (1,)]
    adapted = load_logic("tests.integration.api_model:make", {"dim": 2})
    assert isinstance(adapted, LogicAdapter) and adapted.logic.dim == 2  # type: ignore[attr-defined]


def test_the_api_is_exported_from_both_package_tops() -> None:
    assert set(kafka_ps.agents.__all__) <= set(kafka_ps.__all__)
    for name in kafka_ps.__all__:
        assert getattr(kafka_ps, name) is not None
    for name in kafka_ps.agents.__all__:
        assert getattr(kafka_ps, name) is getattr(kafka_ps.agents, name)
    assert callable(kafka_ps.run) and callable(kafka_ps.check_logic)
    with pytest.raises(AttributeError):
        kafka_ps.nope  # noqa: B018


def test_the_logic_runs_through_the_batch_client_protocol_unchanged() -> None:
    """The adapter only calls pull_many, push_many and output: what both runtimes offer."""
    from tests.unit.test_local_ps import RecordingClient

    client = RecordingClient()
    spec = ParamSpec("count", (1,), Add(), dtype=np.dtype(np.int64))
    logic = Scripted([spec], pulls=[("count", ["a", "b"])], pushes=[("count", "a", [2])])
    asyncio.run(LogicAdapter(logic).on_batch(records(2), client))
    assert client.pulls == [[param_key("count", "a"), param_key("count", "b")]]
    assert list(client.pushes[0]) == [param_key("count", "a")]
    assert client.pushes[0][param_key("count", "a")].shape == (1, 1)
    assert [p.value for p in client.outputs] == [1.0, 1.0]


def test_metrics_score_numeric_outputs_only() -> None:
    from kafka_ps.agents.metrics import ProgressiveMetrics
    from kafka_ps.agents.worker import Unit, predictions_message

    metrics = ProgressiveMetrics("regression")
    outputs = run(Scripted(outputs=lambda r: [(r, {"top": [1, 2]} if r.offset else 3.0)]), n=2)
    metrics.add_all(outputs.outputs)
    assert metrics.records == 1 and metrics.loss_sum == 9.0  # (3 - 0)², the dict unscored
    units = [Unit(t, [r], [(b"", None, None)]) for t, r in enumerate(records(2))]
    _, body = predictions_message(0, units, outputs.outputs)
    assert json.loads(body)["values"] == [3.0, {"top": [1, 2]}]


def test_check_logic_makes_its_own_records_when_given_none() -> None:
    logic = AdaGradRegression(4, lr=0.1)
    server = check_logic(logic)
    assert len(server.outputs) == 64
    assert server.snapshot()[param_key("w", 0)].shape == (4,)
    assert all(r.dense is not None and r.dense.shape == (4,) for r in sample_records(logic))


def test_run_refuses_a_logic_its_processes_cannot_load(tmp_path: Path) -> None:
    """Before it creates a topic or starts a process."""
    from kafka_ps import run
    from kafka_ps.agents.settings import JobSettings

    settings = JobSettings(data_dir=tmp_path, broker="127.0.0.1:1")

    class Nested(AdaGradRegression):
        pass

    with pytest.raises(LogicError, match="cannot be pickled"):
        run(Nested(3), [], settings=settings)
    in_main = type("InMain", (AdaGradRegression,), {"__module__": "__main__"})
    with pytest.raises(LogicError, match="__main__"):
        run(in_main(3), [], settings=settings)
    with pytest.raises(TypeError, match="params"):
        run(AdaGradRegression(3), [], params={"dim": 3}, settings=settings)
    with pytest.raises(ValueError, match="consistency must be"):
        run(AdaGradRegression(3), [], consistency="sometimes", settings=settings)
    with pytest.raises(ValueError, match="unknown model"):
        run("nope", [], settings=settings)


def test_check_logic_takes_records_as_mappings_parsed_as_run_parses_them() -> None:
    fields = [
        {"dense": np.arange(3.0), "label": 1.5, "key": "a"},
        {"features": {"c": "v"}, "dense": [0, 1, 2], "ts": 7},
    ]
    server = check_logic(Scripted(), [*fields, TrainingRecord(dense=np.ones(3), key=b"c")])
    assert [p.record_key for p in server.outputs] == [b"a", None, b"c"]
    assert [p.label for p in server.outputs] == [1.5, None, None]
    with pytest.raises(BadRecordError):  # as the producer refuses it
        check_logic(Scripted(), [{"dense": [1.0, float("nan"), 0.0]}])


class Locked(Scripted):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def test_check_logic_refuses_a_logic_run_cannot_pickle_for_its_processes() -> None:
    with pytest.raises(LogicError, match=r"cannot be pickled.*lock"):
        check_logic(Locked())
    with pytest.raises(LogicError, match="cannot be pickled"):
        check_logic(Scripted(outputs=lambda r: [(r, 1.0)]))
    in_main = type("InMain", (Scripted,), {"__module__": "__main__"})
    with pytest.raises(LogicError, match="__main__"):
        check_logic(in_main())
    check_logic(Locked(), picklable=False)  # a logic only ever built by its factory


class Scores(Scripted):
    """A classifier that outputs what its test says, for every record."""

    task = "classification"

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    async def learn(self, records: Sequence[TrainingRecord], ps: Params) -> None:
        for record in records:
            ps.output(record, self.value if record.offset == 2 else 0.5)


@pytest.mark.parametrize("value", [2.3, -0.1, float("nan"), float("inf")])
def test_check_logic_refuses_a_classifier_output_that_is_not_a_probability(value: float) -> None:
    with pytest.raises(OutputError, match=r"output 2 is .*not a probability in \[0, 1\]"):
        check_logic(Scores(value), records(4))


def test_check_logic_takes_probabilities_and_non_numbers_from_a_classifier() -> None:
    for value in (0.0, 1.0, 1, "yes"):
        check_logic(Scores(value), records(4))  # type: ignore[arg-type]
    regression = Scores(2.3)
    regression.task = "regression"
    check_logic(regression, records(4))


def test_run_counts_processes_and_takes_the_old_names_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kafka_ps.app.api as api
    from kafka_ps.agents.settings import JobSettings

    calls: list[tuple[int, int]] = []

    def run_job(*args: Any) -> str:
        calls.append(args[3:5])
        return "summary"

    monkeypatch.setattr(api, "run_job", run_job)
    monkeypatch.setattr(api, "_logic_dead_letters", lambda settings: api._DeadLetters())
    settings = JobSettings(data_dir=tmp_path, broker="127.0.0.1:1")
    source = [{"dense": [1.0], "label": 1.0}]
    assert api.run("linear", source, worker_processes=3, server_processes=2, settings=settings)
    with pytest.warns(DeprecationWarning, match="use worker_processes="):
        api.run("linear", source, workers=4, settings=settings)
    with pytest.warns(DeprecationWarning, match="use server_processes="):
        api.run("linear", source, servers=5, settings=settings)
    assert calls == [(3, 2), (4, 1), (1, 5)]
    with pytest.raises(TypeError, match="both workers= and worker_processes="):
        api.run("linear", source, workers=2, worker_processes=2, settings=settings)
