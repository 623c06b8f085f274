"""Command-line flags generated from :class:`agents.settings.JobSettings`, so that a flag's help,
default and effect are the setting's own and cannot drift from it.

Field ``batch_size`` becomes ``--batch-size``, typed and checked by the model's own
validation, with the field's description, its default and its environment variable as help.
A ``Literal`` field's flag takes one of its values, a bool's is ``--x``/``--no-x``, and a dict's
or list's is JSON. A flag a command already has with another meaning (``kps model --topic``)
keeps it: the setting's own flag is still there under its field name.
A flag that is given wins over the environment, which wins over the settings file, which wins
over the model's default (:mod:`agents.config`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from kafka_ps.agents.settings import JobSettings

#: Where a subcommand's namespace lists the settings its flags set.
SETTINGS_FLAGS = "setting_flags"


def flag_name(name: str) -> str:
    """The command-line flag of setting ``name``: ``batch_size`` is ``--batch-size``."""
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    """The environment variable of setting ``name``: ``KPS_BATCH_SIZE``."""
    return f"{JobSettings.model_config.get('env_prefix', '')}{name}".upper()


def shown_default(field: FieldInfo) -> str:
    """A field's default as a user would write it on the command line."""
    value = field.get_default(call_default_factory=True)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value) if value != "" else "none"


def add_setting_flags(
    parser: argparse.ArgumentParser,
    names: Iterable[str] = tuple(JobSettings.model_fields),
    aliases: Mapping[str, str] | None = None,
) -> None:
    """Add a flag to ``parser`` for each of the job settings ``names``.

    Parameters
    ----------
    parser
        The (sub)command's parser.
    names
        Field names of :class:`agents.settings.JobSettings`; every field by default.
    aliases
        Another flag for a setting, by field name (``{"input_topic": "--topic"}``), unless
        the parser already has that flag.
    """
    names = tuple(names)
    taken = parser._option_string_actions
    for name in names:
        field = JobSettings.model_fields[name]
        if not field.description:
            raise ValueError(f"JobSettings.{name} has no description for its --help")
        extra = (aliases or {}).get(name)
        flags = [flag_name(name), *([extra] if extra and extra not in taken else [])]
        help_text = f"{field.description} (default: {shown_default(field)}; env {env_name(name)})"
        kind: dict[str, Any]
        if field.annotation is bool:
            kind = {"action": argparse.BooleanOptionalAction}
        elif get_origin(field.annotation) is Literal:
            kind = {"choices": get_args(field.annotation)}
        else:
            kind = {"metavar": name.upper(), "type": _converter(name, field)}
        parser.add_argument(
            *flags, dest=name, default=argparse.SUPPRESS, help=help_text.replace("%", "%%"), **kind
        )
    parser.set_defaults(**{SETTINGS_FLAGS: names})


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives: only the generated flags that were used."""
    return {name: getattr(args, name) for name in getattr(args, SETTINGS_FLAGS, ()) if name in args}


def job_settings(args: argparse.Namespace) -> JobSettings:
    """The job's settings: the command line's flags over the environment and the file."""
    return JobSettings(**given_settings(args))


def _converter(name: str, field: FieldInfo) -> Any:
    """An argparse ``type`` that checks a flag's text as the model checks the setting."""
    is_json = get_origin(field.annotation) in (dict, list)

    def convert(text: str) -> Any:
        try:
            value = json.loads(text) if is_json else text
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(f"{text!r} is not JSON: {error}") from None
        # Checked alone: neither the environment nor the file's other settings take part.
        checked = JobSettings.model_construct()
        try:
            JobSettings.__pydantic_validator__.validate_assignment(checked, name, value)
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise argparse.ArgumentTypeError(f"{text!r} is not valid: {reason}") from None
        return getattr(checked, name)

    return convert
