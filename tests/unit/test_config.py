"""Typed settings from KPS_* variables and a TOML file; bad values stop with one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from kafka_ps.agents.config import ConfigFileError
from kafka_ps.agents.settings import JobSettings, LocalKafkaSettings
from kafka_ps.app.cli_errors import EXIT_USAGE
from tests.cli import run_kps

TOML = """
[job]
app_id = "clicks"
consistency = "ssp:4"
partitions = 6
model_params = { numeric = ["price"] }

[kafka]
port = 29092
"""


def test_a_settings_file_sets_both_tables_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("KPS_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "kps.toml"
    path.write_text(TOML)
    monkeypatch.setenv("KPS_CONFIG", str(path))
    monkeypatch.setenv("KPS_PARTITIONS", "3")
    settings = JobSettings()
    assert (settings.app_id, settings.consistency, settings.partitions) == ("clicks", "ssp:4", 3)
    assert settings.model_params == {"numeric": ["price"]}
    assert LocalKafkaSettings().port == 29092
    assert JobSettings(app_id="given").app_id == "given"


def test_a_missing_settings_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPS_CONFIG", "/nonexistent/kps.toml")
    with pytest.raises(ConfigFileError, match="no such settings file"):
        JobSettings()


@pytest.mark.parametrize(
    ("name", "value"), [("KPS_CONSISTENCY", "sometimes"), ("KPS_LOG_LEVEL", "loud")]
)
def test_enum_like_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        JobSettings()


def test_the_cli_names_the_setting_the_value_and_what_is_allowed(tmp_path: Path) -> None:
    result = run_kps("model", KPS_CONSISTENCY="sometimes")
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().startswith("kps model: KPS_CONSISTENCY='sometimes': ")
    assert "'bsp', 'ssp:<s>'" in result.stderr and len(result.stderr.splitlines()) == 1
    path = tmp_path / "kps.toml"
    path.write_text('[job]\nlog_level = "loud"\n')
    result = run_kps("--config", str(path), "model")
    assert result.returncode == EXIT_USAGE
    assert "KPS_LOG_LEVEL='loud': Input should be 'debug'" in result.stderr
    result = run_kps("--config", str(tmp_path / "missing.toml"), "model")
    assert (result.returncode, len(result.stderr.splitlines())) == (EXIT_USAGE, 1)
    assert "no such settings file" in result.stderr
