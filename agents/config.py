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

import os
from pathlib import Path
from typing import ClassVar

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


class FileSettings(BaseSettings):
    """Settings read, highest first, from the values given, the environment, then the table
    ``config_table`` of the settings file."""

    config_table: ClassVar[str] = ""

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
