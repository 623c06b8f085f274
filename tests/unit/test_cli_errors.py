"""Every failure of the ``kps`` command line: one line on stderr, a documented exit code."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafka_ps.app.cli_errors import (
    EXIT_BROKER,
    EXIT_INPUT,
    EXIT_KAFKA_TOOL,
    EXIT_NOT_RUNNING,
    EXIT_USAGE,
)
from tests.cli import run_kps


@pytest.fixture
def dead_broker() -> Iterator[str]:
    """An address where nothing answers: a port held but never listened on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


def kps(*args: str, cwd: Path, **env: str) -> tuple[int, str]:
    result = run_kps(*args, KPS_CONNECT_TIMEOUT="1", KPS_KAFKA_HOME=str(cwd / "kafka"), **env)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return result.returncode, lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model-params", "{bad"], "--model-params: '{bad' is not JSON"),
        (["train", "--model-params", "[1]"], "Input should be a valid dictionary"),
        (["train", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--model-params", '{"bogus": 1}'], "bad hyper-parameters"),
        (["train", "--model", "no_such_module:factory"], "No module named"),
        (["train", "--dataset", "nope"], "invalid choice: 'nope'"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_a_bad_command_line_exits_2(
    tmp_path: Path, dead_broker: str, args: list[str], message: str
) -> None:
    code, line = kps(*args, cwd=tmp_path, KPS_BROKER=dead_broker)
    assert code == EXIT_USAGE
    assert message in line


def test_a_bad_setting_names_the_variable_and_value(tmp_path: Path) -> None:
    code, line = kps("produce", "--limit", "1", cwd=tmp_path, KPS_PARTITIONS="four")
    assert code == EXIT_USAGE
    assert "KPS_PARTITIONS='four'" in line


@pytest.mark.parametrize(
    "args",
    [
        ["produce", "--dataset", "flights", "--limit", "10"],
        ["model", "--out", "m.npz"],
        ["train", "--limit", "10"],
    ],
)
def test_a_broker_that_does_not_answer_exits_5(
    tmp_path: Path, dead_broker: str, args: list[str]
) -> None:
    code, line = kps(*args, cwd=tmp_path, KPS_BROKER=dead_broker)
    assert code == EXIT_BROKER
    assert f"the broker at {dead_broker} does not answer within 1s" in line


def test_bad_input_files_exit_4(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,label\nx,1\ny,maybe\n")
    code, line = kps("produce", "--file", str(tmp_path / "bad.csv"), cwd=tmp_path)
    assert (code, line) == (
        EXIT_INPUT,
        f"kps produce: {tmp_path}/bad.csv:3: label 'maybe' is not a finite number",
    )
    code, line = kps("produce", "--file", str(tmp_path / "none.csv"), cwd=tmp_path)
    assert code == EXIT_INPUT and "no such file" in line


def test_kafka_start_on_a_taken_port_exits_1_and_status_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, line = kps("kafka", "start", cwd=tmp_path, KPS_KAFKA_PORT=port)
    assert code == EXIT_KAFKA_TOOL
    assert f"port {port} on 127.0.0.1 is taken" in line
    result = run_kps("kafka", "status", KPS_KAFKA_HOME=str(tmp_path / "kafka"))
    assert (result.returncode, result.stdout.strip()) == (EXIT_NOT_RUNNING, "not running")
