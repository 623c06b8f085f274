"""The container files: hadolint passes the Dockerfile, the compose files are valid Compose,
and compose.yml passes every kafka-ps setting as a KPS_* variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kafka_ps.agents.security import KafkaSecurity
from kafka_ps.agents.settings import JobSettings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
BIN = Path(sys.executable).parent


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = run(BIN / "hadolint", "--failure-threshold", "warning", DOCKER / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    assert run(BIN / "hadolint", "--failure-threshold", "warning", bad).returncode != 0


@pytest.mark.parametrize("name", ["compose.yml", "compose.host.yml", "compose.prod.yml"])
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    schema = ("--builtin-schema", "vendor.compose-spec")
    result = run(BIN / "check-jsonschema", *schema, DOCKER / name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_does_fail_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  web:\n    image: 3\n    ports: 80\n")
    schema = ("--builtin-schema", "vendor.compose-spec")
    assert run(BIN / "check-jsonschema", *schema, bad).returncode != 0


def test_compose_passes_every_setting_but_the_per_process_instance_id() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    environment = compose["x-kps-environment"]
    fields = [*JobSettings.model_fields, *KafkaSecurity.model_fields]
    expected = {f"KPS_{name.upper()}" for name in fields} - {"KPS_INSTANCE_ID"}
    assert set(environment) == expected
    for role in ("server", "worker", "producer", "model"):
        assert compose["services"][role]["environment"] == environment
