"""The command line's setting flags come from JobSettings: same names, defaults, checks and
precedence (flag > KPS_* variable > settings file > the model's default)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest
import yaml

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app.cli import build_parser
from kafka_ps.app.cli_errors import EXIT_USAGE
from kafka_ps.app.cli_settings import given_settings, job_settings
from kafka_ps.app.process import child_env, settings_env
from kafka_ps.app.train import DEFAULT_PARAMS, training_settings
from tests.cli import run_kps

DOCKER = Path(__file__).resolve().parents[2] / "docker"

#: The commands that run or read a job, each taking every setting as a flag.
JOB_COMMANDS = ("serve", "learn", "host", "worker", "train", "demo", "produce")
JOB_COMMANDS += ("status", "plot", "exporter", "health", "model")
COMMAND_SETTINGS = {command: set(JobSettings.model_fields) for command in JOB_COMMANDS}

#: What ``kps train`` sets for a data set's fresh job, whatever the settings say.
PER_RUN = {"app_id", "input_topic", "data_dir", "model", "model_params"}


@pytest.fixture(autouse=True)
def no_kps_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("KPS_")]:
        monkeypatch.delenv(name)


def commands() -> dict[str, argparse.ArgumentParser]:
    [subparsers] = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    return dict(subparsers.choices)


def settings_from(*argv: str) -> JobSettings:
    return JobSettings(**given_settings(build_parser().parse_args(list(argv))))


def test_every_flag_named_after_a_setting_is_generated_from_it() -> None:
    for command, parser in commands().items():
        setting_flags = {
            action.dest: action
            for action in parser._actions
            if action.dest in JobSettings.model_fields
        }
        assert set(setting_flags) == COMMAND_SETTINGS.get(command, set()), command
        for name, action in setting_flags.items():
            assert f"--{name.replace('_', '-')}" in action.option_strings
            assert action.default is argparse.SUPPRESS, f"kps {command} --{name}: own default"


@pytest.mark.parametrize("command", sorted(COMMAND_SETTINGS))
def test_help_shows_each_settings_description_model_default_and_variable(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([command, "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in COMMAND_SETTINGS[command]:
        field = JobSettings.model_fields[name]
        default = field.get_default(call_default_factory=True)
        shown = str(default) if default != "" else "none"
        assert f"(default: {shown}; env KPS_{name.upper()})" in text, name
        # argparse wraps help lines, and may break after a hyphen; compare without spaces.
        assert re.sub(r"\s", "", str(field.description)) in re.sub(r"\s", "", text), name


def test_help_shows_the_defaults_the_model_has_today(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, value in [("partitions", 2), ("shards", 2), ("batch_size", 8192)]:
        assert JobSettings().model_dump()[flag] == value
        assert f"(default: {value}; env KPS_{flag.upper()})" in text


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = JobSettings.model_fields["partitions"].default
    assert settings_from("train").partitions == default
    path = tmp_path / "kps.toml"
    path.write_text('[job]\npartitions = 6\ninput_topic = "from-file"\nbatch_size = 64\n')
    monkeypatch.setenv("KPS_CONFIG", str(path))
    assert settings_from("train").partitions == 6
    monkeypatch.setenv("KPS_PARTITIONS", "3")
    assert settings_from("train").partitions == 3
    flagged = settings_from("train", "--partitions", "5", "--consistency", "ssp:2")
    assert (flagged.partitions, flagged.consistency, flagged.batch_size) == (5, "ssp:2", 64)
    produce = settings_from("produce", "--topic", "from-flag")
    assert (produce.input_topic, produce.partitions) == ("from-flag", 3)
    assert settings_from("produce", "--input-topic", "long").input_topic == "long"
    assert settings_from("produce").input_topic == "from-file"


def test_flag_values_are_typed_by_the_model() -> None:
    settings = settings_from(
        "train", "--model-params", '{"alpha": 0.5}', "--publish-interval", "1", "--shards", "8"
    )
    assert settings.model_params == {"alpha": 0.5}
    assert (settings.publish_interval, settings.shards) == (1.0, 8)
    assert {"model_params", "publish_interval", "shards"} <= settings.model_fields_set


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--partitions", "four"], "argument --partitions: 'four' is not valid: "),
        (["train", "--batch-size", "0"], "greater than or equal to 1"),
        (["train", "--consistency", "sometimes"], "consistency must be 'bsp', 'ssp:<s>'"),
        (["demo", "--publish-interval", "0"], "argument --publish-interval: '0' is not valid"),
        (["produce", "--partitions", "-2"], "argument --partitions: '-2' is not valid"),
    ],
)
def test_a_bad_flag_value_stops_with_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_kps(*args)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith(f"kps {args[0]}: error: argument --")


def test_kps_train_keeps_every_configured_setting_and_takes_no_default_of_its_own() -> None:
    """Fails if kps train, its data set's job or a benchmark's job sets a default of its own."""
    from benchmarks.jobs import job_settings

    defaults = JobSettings()
    for dataset in ("flights", "ml-100k"):
        trained = training_settings(dataset, defaults)
        for name in JobSettings.model_fields.keys() - PER_RUN:
            assert getattr(trained, name) == getattr(defaults, name), f"{dataset}: {name}"
    configured = settings_from(
        "train", "--partitions", "3", "--shards", "5", "--batch-size", "7", "--consistency", "bsp"
    ).model_copy(update={"metrics_window": 11})
    trained = training_settings("flights", configured)
    assert (trained.partitions, trained.shards, trained.batch_size) == (3, 5, 7)
    assert (trained.consistency, trained.metrics_window) == ("bsp", 11)
    bench = job_settings("drift")
    for name in JobSettings.model_fields.keys() - {"app_id", "input_topic", "data_dir", "broker"}:
        assert getattr(bench, name) == getattr(defaults, name), f"benchmarks: {name}"


def test_a_data_set_brings_its_model_and_its_models_parameters() -> None:
    flights = training_settings("flights", JobSettings())
    assert (flights.model, flights.model_params) == ("logreg_ftrl", DEFAULT_PARAMS["flights"])
    assert training_settings("ml-100k", JobSettings()).model == "mf"
    other = training_settings("flights", settings_from("train", "--model", "linear"))
    assert (other.model, other.model_params) == ("linear", {})
    own = training_settings("flights", settings_from("train", "--model-params", '{"alpha": 1}'))
    assert (own.model, own.model_params) == ("logreg_ftrl", {"alpha": 1})
    run = training_settings("flights", JobSettings())
    assert run.app_id.startswith("flights-") and run.input_topic == f"{run.app_id}-input"
    assert run.data_dir == JobSettings().data_dir / run.app_id


#: compose.yml's values that are the deployment's own, not the model's defaults (a
#: container's metrics port listens on every interface, to be scraped from outside).
COMPOSE_OWN = {
    "KPS_BROKER",
    "KPS_APP_ID",
    "KPS_INPUT_TOPIC",
    "KPS_DATA_DIR",
    "KPS_MODEL_PARAMS",
    "KPS_METRICS_HOST",
}


def test_compose_defaults_are_the_models() -> None:
    environment = yaml.safe_load((DOCKER / "compose.yml").read_text())["x-kps-environment"]
    checked = JobSettings.model_construct()
    for variable, value in environment.items():
        name = variable.removeprefix("KPS_").lower()
        if variable in COMPOSE_OWN or name not in JobSettings.model_fields:
            continue
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
        assert default, f"{variable}: {value}"
        JobSettings.__pydantic_validator__.validate_assignment(checked, name, default[1])
        assert getattr(checked, name) == getattr(JobSettings(), name), variable


def test_bool_and_literal_settings_get_their_own_kind_of_flag() -> None:
    settings = settings_from(
        "serve", "--no-pack-input", "--predict-unlabelled", "--log-level", "debug",
        "--push-dtype", "float16", "--instance-id", "a-1",
    )  # fmt: skip
    assert (settings.pack_input, settings.predict_unlabelled) == (False, True)
    assert (settings.log_level, settings.push_dtype, settings.instance_id) == (
        "debug",
        "float16",
        "a-1",
    )
    assert settings_from("learn", "--pack-input").pack_input is True


def test_an_existing_flag_keeps_its_meaning() -> None:
    """``kps model --topic`` is the topic to read, not ``--input-topic``; ``kps produce
    --topic`` is ``--input-topic``; kps train's own flags are not settings."""
    args = build_parser().parse_args(["model", "--topic", "old-model-updates"])
    assert args.topic == "old-model-updates" and "input_topic" not in given_settings(args)
    args = build_parser().parse_args(["train", "--workers", "3", "--limit", "9", "--until-end"])
    assert (args.workers, args.limit, args.until_end, given_settings(args)) == (3, 9, True, {})


def test_a_flag_reaches_the_environment_of_the_processes_a_command_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KPS_BATCH_SIZE", "64")
    settings = job_settings(
        build_parser().parse_args(
            ["train", "--batch-size", "7", "--no-pull-ahead", "--model-params", '{"a": 1}']
        )
    )
    env = child_env(settings)
    assert env == {**env, **settings_env(settings)}
    assert (env["KPS_BATCH_SIZE"], env["KPS_PULL_AHEAD"], env["KPS_MODEL_PARAMS"]) == (
        "7",
        "false",
        '{"a": 1}',
    )
    for name, value in env.items():
        if name.startswith("KPS_"):
            monkeypatch.setenv(name, value)
    assert JobSettings() == settings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["learn", "--model-params", "{nope"], "argument --model-params: '{nope' is not JSON"),
        (["status", "--metrics-port", "70000"], "argument --metrics-port: '70000' is not valid"),
    ],
)
def test_a_bad_value_of_any_commands_flag_stops_with_one_line_and_exit_2(
    args: list[str], message: str
) -> None:
    result = run_kps(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == EXIT_USAGE and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"kps {args[0]}: error: {message}"), lines[0]
