"""The process commands: ``kps serve`` hosts shards, ``kps learn`` logical workers, and the old
spelling ``kps worker --job ...`` still means the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kafka_ps.app.cli import build_parser
from kafka_ps.app.process import command_line

DOCKER = Path(__file__).parents[2] / "docker"


def hosted(*argv: str) -> str:
    args = build_parser().parse_args(list(argv))
    assert args.handler.__name__ == "_host"
    return args.job


@pytest.mark.parametrize(
    ("argv", "job"),
    [
        (["serve"], "server"),
        (["learn"], "worker"),
        (["host", "benchmarks.counter:COUNTER"], "benchmarks.counter:COUNTER"),
        (["host", "server"], "server"),
        # The old spelling, which scripts and containers may still use.
        (["worker", "--job", "server"], "server"),
        (["worker", "--job", "worker"], "worker"),
        (["worker"], "worker"),
        (["worker", "--job", "benchmarks.counter:COUNTER"], "benchmarks.counter:COUNTER"),
    ],
)
def test_each_spelling_hosts_its_job(argv: list[str], job: str) -> None:
    assert hosted(*argv) == job


@pytest.mark.parametrize("job", ["server", "worker", "benchmarks.counter:COUNTER"])
def test_a_child_process_is_started_with_a_command_that_hosts_its_job(job: str) -> None:
    assert hosted(*command_line(job)) == job


def test_the_containers_run_the_new_commands() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    assert hosted(*compose["services"]["server"]["command"]) == "server"
    assert hosted(*compose["services"]["worker"]["command"]) == "worker"
    assert 'CMD ["learn"]' in (DOCKER / "Dockerfile").read_text()
