"""Kafka security against a real broker with SASL/SCRAM-SHA-512 and ACLs.

The fixture starts ``kps kafka start --secure``'s broker (beside the plain one, on its own
ports). An authorized job trains through the ``kps`` command line; a wrong password, and a
principal without ACLs, stop at start with one line and exit code 5, and the cluster holds
exactly what it held before.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from kafka_ps.agents.deadline import wait_until
from kafka_ps.agents.security import KafkaSecurity, confluent_config
from kafka_ps.app.cli_errors import EXIT_BROKER
from kafka_ps.app.secure_kafka import SecureLocalKafka
from tests.cli import run_kps

pytestmark = pytest.mark.broker

RECORDS = 2000


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureLocalKafka]:
    broker = SecureLocalKafka()
    started_here = not broker.status().running
    broker.start()
    yield broker
    if started_here:
        broker.stop()


@pytest.fixture(scope="module")
def admin(secure_kafka: SecureLocalKafka) -> AdminClient:
    return AdminClient(confluent_config(secure_kafka.bootstrap, secure_kafka.admin_security()))


def job_env(
    broker: SecureLocalKafka, app_id: str, data: Path, user: str, password: str
) -> dict[str, str]:
    return {
        "KPS_BROKER": broker.bootstrap,
        "KPS_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KPS_SASL_MECHANISM": "SCRAM-SHA-512",
        "KPS_SASL_USERNAME": user,
        "KPS_SASL_PASSWORD": password,
        "KPS_APP_ID": app_id,
        "KPS_INPUT_TOPIC": f"{app_id}-input",
        "KPS_DATA_DIR": str(data),
    }


def contents(broker: SecureLocalKafka, admin: AdminClient, prefix: str) -> dict[str, int]:
    """Records in each topic whose name starts with ``prefix`` (end offsets, read as admin)."""
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    config = confluent_config(broker.bootstrap, broker.admin_security())
    consumer = Consumer({**config, "group.id": f"kps-test-{uuid.uuid4().hex}"})
    try:
        metadata = admin.list_topics(timeout=10).topics
        return {
            name: sum(
                consumer.get_watermark_offsets(TopicPartition(name, p), 10)[1]
                for p in metadata[name].partitions
            )
            for name in names
        }
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def trained(
    secure_kafka: SecureLocalKafka, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app id of a job that the ``kafka-ps`` principal produced to and trained."""
    app_id = f"kps-secure-{uuid.uuid4().hex[:8]}"
    password = secure_kafka.settings.user_password.get_secret_value()
    env = job_env(secure_kafka, app_id, tmp_path_factory.mktemp("data"), "kafka-ps", password)
    produced = run_kps("produce", "--dataset", "flights", "--limit", str(RECORDS), **env)
    assert produced.returncode == 0, produced.stderr
    trained = run_kps("train", "--until-end", "--workers", "1", timeout=300, **env)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert f"done: {RECORDS:,} records" in trained.stdout
    yield app_id
    admin.delete_topics(list(contents(secure_kafka, admin, app_id)), operation_timeout=30)


def test_an_authorized_job_trains_and_writes_its_topics(
    secure_kafka: SecureLocalKafka, admin: AdminClient, trained: str
) -> None:
    written = contents(secure_kafka, admin, trained)
    assert written[f"{trained}-input"] > 0
    assert written[f"{trained}-model-updates"] > 0
    assert written[f"{trained}-predictions"] > 0


def assert_refused(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == EXIT_BROKER, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_password_fails_at_start_and_writes_nothing(
    secure_kafka: SecureLocalKafka, admin: AdminClient, trained: str, tmp_path: Path
) -> None:
    before = contents(secure_kafka, admin, trained)
    for app_id in (trained, f"kps-secure-{uuid.uuid4().hex[:8]}"):
        env = job_env(secure_kafka, app_id, tmp_path / "data", "kafka-ps", "not-the-password")
        env["KPS_CONNECT_TIMEOUT"] = "60"
        for command in (
            ["produce", "--dataset", "flights", "--limit", "100"],
            ["train", "--until-end"],
        ):
            started = time.monotonic()
            result = run_kps(*command, **env)
            assert_refused(result, "refuses user 'kafka-ps' (SCRAM-SHA-512): SASL authentication")
            # At once, not when the connect timeout runs out.
            assert time.monotonic() - started < 30
        if app_id != trained:
            assert contents(secure_kafka, admin, app_id) == {}
    assert contents(secure_kafka, admin, trained) == before


def create_user(broker: SecureLocalKafka, admin: AdminClient, name: str, password: str) -> None:
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
    upsert = UserScramCredentialUpsertion(name, info, password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result()
    security = KafkaSecurity(
        security_protocol="SASL_PLAINTEXT", sasl_username=name, sasl_password=password
    )
    client = AdminClient({**confluent_config(broker.bootstrap, security), "log_level": 0})

    def logs_in() -> bool:
        try:
            client.list_topics(timeout=1)
            return True
        except Exception:
            return False

    # The credential reaches the broker through the metadata log.
    wait_until(logs_in, 30, 0.0, f"user {name} cannot log in")


def test_a_principal_without_acls_fails_at_start_and_writes_nothing(
    secure_kafka: SecureLocalKafka, admin: AdminClient, trained: str, tmp_path: Path
) -> None:
    user = f"kps-no-acls-{uuid.uuid4().hex[:6]}"
    create_user(secure_kafka, admin, user, "its-password")
    before = contents(secure_kafka, admin, trained)
    for app_id in (trained, f"kps-secure-{uuid.uuid4().hex[:8]}"):
        env = job_env(secure_kafka, app_id, tmp_path / "data", user, "its-password")
        for command in (
            ["produce", "--dataset", "flights", "--limit", "100"],
            ["train", "--until-end"],
        ):
            result = run_kps(*command, **env)
            assert_refused(result, f"User:{user} may not use topic '{app_id}-input'")
        if app_id != trained:
            assert contents(secure_kafka, admin, app_id) == {}
    assert contents(secure_kafka, admin, trained) == before
