"""Kafka client configuration: one typed security settings object, and one function per
client kind.

Every Kafka client kafka-ps builds takes its configuration from here: confluent-kafka
producers, consumers and admin clients (:func:`confluent_config`, and
:func:`producer_config` for the idempotent producers), aiokafka consumers
(:func:`aiokafka_config`) and the Faust app's aiokafka clients (:func:`faust_config`). So a
job that works against one cluster works against a cluster with SASL and TLS by setting
``KPS_SECURITY_PROTOCOL`` and friends alone, and every client agrees on the largest message.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from kafka_ps.agents.config import FileSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

#: Largest message kafka-ps produces or reads: the local broker's message.max.bytes. Larger
#: than the largest valid training record (1 MiB), so an oversized record still reaches a
#: worker, which sends it, bytes intact, to the dead-letter topic.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(FileSettings):
    """How kafka-ps's Kafka clients authenticate and encrypt: ``KPS_*`` variables, or the
    ``[security]`` table of the settings file.

    Parameters
    ----------
    security_protocol
        ``PLAINTEXT`` (the default), ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
    sasl_mechanism
        ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; used by the ``SASL_*`` protocols.
    sasl_username
        The SASL user (the ACL principal ``User:<name>``).
    sasl_password
        The SASL password. Never printed: a secret everywhere it is shown.
    sasl_password_file
        A file holding the password instead (a mounted container secret); it wins over
        ``sasl_password``.
    ssl_cafile
        CA certificates (PEM) to verify the brokers with; default: the system's.
    ssl_certfile, ssl_keyfile
        The client's certificate and private key (PEM), for brokers that require them.
    """

    config_table: ClassVar[str] = "security"

    # Empty variables count as unset, so compose files can pass every one through.
    model_config = SettingsConfigDict(env_prefix="KPS_", env_ignore_empty=True)

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str = Field(default="", validate_default=True)
    sasl_password: SecretStr = SecretStr("")
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = Field(default=None, validate_default=True)

    # Errors name one field, never the whole input: the input holds the password.

    @field_validator("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not (path.is_file() and os.access(path, os.R_OK)):
            raise ValueError("no such file, or not readable")
        return path

    @field_validator("sasl_username")
    @classmethod
    def _named(cls, name: str, info: ValidationInfo) -> str:
        protocol = info.data.get("security_protocol", "")
        if protocol.startswith("SASL_") and not name:
            raise ValueError(f"security_protocol {protocol} needs a user name")
        return name

    @field_validator("ssl_keyfile")
    @classmethod
    def _paired(cls, keyfile: Path | None, info: ValidationInfo) -> Path | None:
        if (info.data.get("ssl_certfile") is None) != (keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return keyfile

    def password(self) -> str:
        """The SASL password: ``sasl_password_file``'s content (without a trailing newline),
        read when a client is built, so a rotated secret file is picked up; or else
        ``sasl_password``."""
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return self.sasl_password.get_secret_value()

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def principal(self) -> str:
        """The ACL principal the brokers see (``User:ANONYMOUS`` without SASL or client
        certificates)."""
        return f"User:{self.sasl_username}" if self.sasl else "User:ANONYMOUS"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka clients, or None without TLS."""
        if not self.tls:
            return None
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(
            cafile=_name(self.ssl_cafile),
            certfile=_name(self.ssl_certfile),
            keyfile=_name(self.ssl_keyfile),
        )


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)


#: Where the confluent-kafka clients' librdkafka log lines go. A process that configures
#: logging (every Faust process does, into its log) gets them; the ``kps`` commands do not,
#: and print a failure as one line of their own (app/cli_errors.py) instead.
LIBRDKAFKA_LOG = logging.getLogger("kafka_ps.librdkafka")
LIBRDKAFKA_LOG.addHandler(logging.NullHandler())


def confluent_config(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """``bootstrap.servers``, the security settings and the logger of a confluent-kafka
    producer, consumer or admin client; ``security`` defaults to the environment's.

    librdkafka prints its own log lines to stderr (``%3|1796675320.141|FAIL|rdkafka#...``,
    one per second and broker while one is unreachable); with :data:`LIBRDKAFKA_LOG` as the
    client's ``logger`` they go through Python's logging instead, where the process's
    logging configuration decides what a user sees."""
    security = security or KafkaSecurity()
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": security.security_protocol.lower(),
        "logger": LIBRDKAFKA_LOG,
    }
    if security.sasl:
        config["sasl.mechanisms"] = security.sasl_mechanism
        config["sasl.username"] = security.sasl_username
        config["sasl.password"] = security.password()
    if security.tls:
        for key, path in (
            ("ssl.ca.location", security.ssl_cafile),
            ("ssl.certificate.location", security.ssl_certfile),
            ("ssl.key.location", security.ssl_keyfile),
        ):
            if path is not None:
                config[key] = str(path)
    return config


def producer_config(
    bootstrap: str, linger_ms: int = 5, security: KafkaSecurity | None = None
) -> dict[str, Any]:
    """A confluent-kafka producer's configuration: idempotent, acknowledged by every in-sync
    replica, batching for ``linger_ms``, and able to send the largest message."""
    return {
        **confluent_config(bootstrap, security),
        "linger.ms": linger_ms,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }


def aiokafka_config(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """``bootstrap_servers`` and the security keyword arguments of an aiokafka client;
    ``security`` defaults to the environment's."""
    security = security or KafkaSecurity()
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "security_protocol": security.security_protocol,
        "ssl_context": security.ssl_context(),
    }
    if security.sasl:
        config["sasl_mechanism"] = security.sasl_mechanism
        config["sasl_plain_username"] = security.sasl_username
        config["sasl_plain_password"] = security.password()
    return config


def faust_credentials(security: KafkaSecurity | None = None) -> CredentialsT | None:
    """The Faust app's ``broker_credentials`` (its aiokafka driver turns them into the same
    keyword arguments as :func:`aiokafka_config`); ``security`` defaults to the
    environment's. Faust is imported here only: the command line's clients need none of it."""
    import faust

    security = security or KafkaSecurity()
    context = security.ssl_context()
    if security.sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.password(),
            mechanism=security.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_config(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """The Kafka part of a Faust app's settings: its broker and credentials, and producers and
    consumers that agree with every other client (acks from every in-sync replica, the
    largest message)."""
    return {
        "broker": f"kafka://{bootstrap}",
        "broker_credentials": faust_credentials(security),
        "producer_acks": -1,
        "producer_max_request_size": MAX_MESSAGE_BYTES,
        "consumer_max_fetch_size": MAX_MESSAGE_BYTES,
    }
