"""One typed security settings object, turned into each Kafka client's configuration."""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
import sys
from pathlib import Path

import faust
import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

from kafka_ps.agents.security import (
    LIBRDKAFKA_LOG,
    MAX_MESSAGE_BYTES,
    KafkaSecurity,
    aiokafka_config,
    confluent_config,
    faust_config,
    faust_credentials,
    producer_config,
)
from kafka_ps.agents.settings import LocalKafkaSettings
from kafka_ps.app.cli_errors import EXIT_USAGE, failure
from kafka_ps.app.secure_kafka import SecureLocalKafka
from tests.cli import free_port


@pytest.fixture(autouse=True)
def _no_kps_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("KPS_")]:
        monkeypatch.delenv(name)


def _sasl_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPS_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KPS_SASL_USERNAME", "kafka-ps")
    monkeypatch.setenv("KPS_SASL_PASSWORD", "s3cret")


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    assert confluent_config("b:9092") == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "plaintext",
        "logger": LIBRDKAFKA_LOG,
    }
    assert aiokafka_config("b:9092") == {
        "bootstrap_servers": "b:9092",
        "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }
    assert faust_credentials() is None


def test_producers_and_the_faust_app_are_configured_in_the_same_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _sasl_environment(monkeypatch)
    producer = producer_config("b:9094", linger_ms=1)
    assert producer == {
        **confluent_config("b:9094"),
        "linger.ms": 1,
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
    app = faust_config("b:9094")
    assert app["broker"] == "kafka://b:9094"
    assert isinstance(app["broker_credentials"], faust.SASLCredentials)
    assert app["producer_max_request_size"] == app["consumer_max_fetch_size"] == MAX_MESSAGE_BYTES
    assert app["producer_acks"] == -1


def test_sasl_settings_from_the_environment_reach_every_client_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _sasl_environment(monkeypatch)
    assert confluent_config("b:9094") == {
        "bootstrap.servers": "b:9094",
        "security.protocol": "sasl_plaintext",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "kafka-ps",
        "sasl.password": "s3cret",
        "logger": LIBRDKAFKA_LOG,
    }
    aiokafka = aiokafka_config("b:9094")
    assert (aiokafka["sasl_mechanism"], aiokafka["sasl_plain_username"]) == (
        "SCRAM-SHA-512",
        "kafka-ps",
    )
    assert (aiokafka["security_protocol"], aiokafka["sasl_plain_password"]) == (
        "SASL_PLAINTEXT",
        "s3cret",
    )
    credentials = faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("kafka-ps", "s3cret")
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_the_password_is_a_secret_and_a_password_file_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _sasl_environment(monkeypatch)
    assert "s3cret" not in repr(KafkaSecurity())
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("KPS_SASL_PASSWORD_FILE", str(secret))
    assert confluent_config("b:9094")["sasl.password"] == "from-file"


def test_tls_files_and_context(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("PEM")
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_username="kafka-ps",
        ssl_cafile=files["ca"],
        ssl_certfile=files["cert"],
        ssl_keyfile=files["key"],
    )
    config = confluent_config("b:9093", security)
    assert config["security.protocol"] == "sasl_ssl"
    assert config["ssl.ca.location"] == str(files["ca"])
    assert config["ssl.certificate.location"] == str(files["cert"])
    assert config["ssl.key.location"] == str(files["key"])
    # Without files, TLS verifies the brokers against the system's CA certificates.
    plain_tls = KafkaSecurity(security_protocol="SSL")
    assert isinstance(aiokafka_config("b:9093", plain_tls)["ssl_context"], ssl.SSLContext)
    assert isinstance(faust_credentials(plain_tls), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"KPS_SECURITY_PROTOCOL": "SASL_SSL"}, "KPS_SASL_USERNAME=''"),
        ({"KPS_SECURITY_PROTOCOL": "KERBEROS"}, "KPS_SECURITY_PROTOCOL='KERBEROS'"),
        ({"KPS_SSL_CERTFILE": "/etc/hostname"}, "KPS_SSL_KEYFILE=None"),
        ({"KPS_SASL_PASSWORD_FILE": "/nonexistent"}, "KPS_SASL_PASSWORD_FILE='/nonexistent'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("KPS_SASL_PASSWORD", "s3cret")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        KafkaSecurity()
    known = failure(raised.value)
    assert known is not None
    message, code = known
    assert code == EXIT_USAGE and message.startswith(named)
    assert "s3cret" not in message


def test_the_secure_broker_has_its_own_ports_state_and_an_authorizer(tmp_path: Path) -> None:
    settings = LocalKafkaSettings(home=tmp_path / "plain", secure_home=tmp_path / "secure")
    broker = SecureLocalKafka(settings)
    assert (broker.bootstrap, broker.home) == ("127.0.0.1:9094", tmp_path / "secure")
    properties = broker._server_properties()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095" in properties
    assert "allow.everyone.if.no.acl.found=false" in properties
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in (
        properties
    )
    assert f"log.dirs={tmp_path / 'secure' / 'data'}" in properties
    assert broker.job_security().principal == "User:kafka-ps"
    hint = broker.client_hint()
    assert "KPS_BROKER=127.0.0.1:9094" in hint and "KPS_SASL_USERNAME=kafka-ps" in hint
    assert settings.user_password.get_secret_value() not in hint


def test_the_settings_file_has_a_security_table_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "kps.toml"
    path.write_text('[security]\nsecurity_protocol = "SASL_SSL"\nsasl_username = "from-file"\n')
    monkeypatch.setenv("KPS_CONFIG", str(path))
    assert KafkaSecurity().principal == "User:from-file"
    monkeypatch.setenv("KPS_SASL_USERNAME", "from-env")
    monkeypatch.setenv("KPS_SASL_PASSWORD", "")  # empty counts as unset
    security = KafkaSecurity()
    assert (security.security_protocol, security.principal) == ("SASL_SSL", "User:from-env")


def test_librdkafka_log_lines_go_through_logging_not_to_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens there: librdkafka logs a failed connection as it tries.
    consumer = Consumer({**confluent_config(f"127.0.0.1:{free_port()}"), "group.id": "g"})
    with caplog.at_level(logging.ERROR, logger=LIBRDKAFKA_LOG.name):
        with pytest.raises(KafkaException):
            consumer.committed([TopicPartition("t", 0)], 0.5)
        consumer.close()
    assert any("Connection refused" in record.getMessage() for record in caplog.records)
    assert "rdkafka" not in capfd.readouterr().err


UNCONFIGURED = """
import sys
from confluent_kafka import Consumer, KafkaException, TopicPartition
from kafka_ps.agents.security import confluent_config

consumer = Consumer({**confluent_config(sys.argv[1]), "group.id": "g"})
try:
    consumer.committed([TopicPartition("t", 0)], 0.5)
except KafkaException as error:
    print(error.args[0].name())
consumer.close()
"""


def test_a_process_without_logging_configured_prints_no_librdkafka_lines() -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNCONFIGURED, f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["_TIMED_OUT"], done.stdout + done.stderr
    assert done.stderr == ""
