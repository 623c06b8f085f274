"""An optional TOML settings file: ``kps --config PATH`` or ``KPS_CONFIG=PATH``.

Settings come, highest first, from the values a program passes (the command line's setting
flags, :mod:`app.cli_settings`), ``KPS_*`` environment variables, the file, and the defaults.
The file holds a ``[job]`` table with :class:`agents.settings.JobSettings` fields, a ``[kafka]``
table with :class:`agents.settings.LocalKafkaSettings` fields and a ``[security]`` table with
:class:`agents.security.KafkaSecurity` fields, by their field names::

    [job]
    broker = "kafka-1:9092,kafka-2:9092"
    app_id = "clicks"
    consistency = "ssp:4"
    model_params = { numeric = ["price"] }

    [kafka]
    port = 19092

    [security]
    security_protocol = "SASL_SSL"
    sasl_username = "kafka-ps"
    sasl_password_file = "/run/secrets/kafka-password"
"""

from __future__ import annotations

import inspect
import os
import textwrap
from pathlib import Path
from typing import Any, ClassVar

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from kafka_ps.tables.errors import KafkaPsError

CONFIG_VARIABLE = "KPS_CONFIG"


class ConfigFileError(KafkaPsError, ValueError):
    """The settings file named by ``KPS_CONFIG`` is missing."""


def with_config_file(
    settings_cls: type[BaseSettings],
    table: str,
    init: PydanticBaseSettingsSource,
    env: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The sources of ``settings_cls``: ``init``, ``env``, then ``[table]`` of the file."""
    name = os.environ.get(CONFIG_VARIABLE)
    if not name:
        return init, env
    path = Path(name)
    if not path.is_file():
        raise ConfigFileError(f"{CONFIG_VARIABLE}={name}: no such settings file")
    return init, env, TomlConfigSettingsSource(settings_cls, path, toml_table_header=(table,))


def parameters_section(settings_cls: type[BaseSettings]) -> str:
    """A numpydoc ``Parameters`` section made from the fields' descriptions: each field, its
    environment variable, its description and its default (unless a factory makes it, which
    may depend on where the process runs)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    lines = ["Parameters", "----------"]
    for name, field in settings_cls.model_fields.items():
        default = "" if field.default_factory else f" (default: {field.default!r})"
        text = f"``{prefix}{name.upper()}``: {field.description}{default}."
        indent = " " * 4
        wrapped = textwrap.fill(
            text, 88, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )
        lines += [name, wrapped]
    return "\n".join(lines)


class FileSettings(BaseSettings):
    """Settings read, highest first, from the values given, the environment, then the table
    ``config_table`` of the settings file.

    A subclass whose fields all have a ``description`` and whose docstring has no
    ``Parameters`` section gets one made from them, so the descriptions are the one place
    a setting is documented.
    """

    config_table: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        doc = inspect.cleandoc(cls.__doc__ or "")
        described = all(field.description for field in cls.model_fields.values())
        if described and "\nParameters\n---" not in doc:
            cls.__doc__ = f"{doc}\n\n{parameters_section(cls)}\n"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return with_config_file(settings_cls, cls.config_table, init_settings, env_settings)
