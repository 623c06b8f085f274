"""``kps kafka start --secure``: a local broker that authenticates and authorizes clients.

Beside the plain broker, on its own ports and with its own state, it serves one
SASL_PLAINTEXT listener with SCRAM-SHA-512 and runs KRaft's ``StandardAuthorizer`` with
``allow.everyone.if.no.acl.found=false``: a client with no ACLs can do nothing. Its users:

- ``admin`` (a super user), created when the storage is formatted, because the broker
  itself logs in as ``admin`` on its inter-broker listener;
- ``kafka-ps`` (``KPS_KAFKA_USER``), whose SCRAM credential and ACLs are set through the
  Admin API at every start, so a changed password or prefix list applies at once: every
  operation on topics and consumer groups whose names start with one of
  ``KPS_KAFKA_ACL_PREFIXES``.

The controller listener stays PLAINTEXT on loopback: KRaft controllers cannot check SCRAM
credentials (those live in the metadata the controller serves), so the broker reaches its
controller as ``User:ANONYMOUS``, which is therefore a super user as well.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from kafka_ps.agents.deadline import wait_until
from kafka_ps.agents.security import KafkaSecurity, confluent_config
from kafka_ps.app.local_kafka import LocalKafka, LocalKafkaError

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
#: PBKDF2 iterations of the stored SCRAM credentials (Kafka's minimum is 4096).
ITERATIONS = 8192


class SecureLocalKafka(LocalKafka):
    """The local broker with SASL/SCRAM authentication and ACLs (see the module's notes).

    Parameters
    ----------
    settings
        Its ports, directories and credentials (the ``secure_*``, ``admin_password``,
        ``user`` and ``acl_prefixes`` fields); ``KPS_KAFKA_*`` by default.
    """

    port_variables = "KPS_KAFKA_SECURE_PORT / KPS_KAFKA_SECURE_CONTROLLER_PORT"

    @property
    def home(self) -> Path:
        return self.settings.secure_home

    @property
    def port(self) -> int:
        return self.settings.secure_port

    @property
    def controller_port(self) -> int:
        return self.settings.secure_controller_port

    def user_security(self, user: str, password: str) -> KafkaSecurity:
        """Client settings that log in to this broker as ``user``."""
        return KafkaSecurity(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=MECHANISM,
            sasl_username=user,
            sasl_password=password,
        )

    def admin_security(self) -> KafkaSecurity:
        return self.user_security(ADMIN, self.settings.admin_password.get_secret_value())

    def job_security(self) -> KafkaSecurity:
        """The settings a kafka-ps job uses on this broker (as ``KPS_KAFKA_USER``)."""
        password = self.settings.user_password.get_secret_value()
        return self.user_security(self.settings.user, password)

    def client_hint(self) -> str:
        """How a job connects, for ``kps kafka start --secure`` to print (no password)."""
        prefixes = " or ".join(repr(prefix) for prefix in self.settings.acl_prefixes)
        return (
            f"jobs: KPS_BROKER={self.bootstrap} KPS_SECURITY_PROTOCOL=SASL_PLAINTEXT "
            f"KPS_SASL_MECHANISM={MECHANISM} KPS_SASL_USERNAME={self.settings.user} "
            "KPS_SASL_PASSWORD=<KPS_KAFKA_USER_PASSWORD>, "
            f"with app ids and input topics that start with {prefixes}"
        )

    def _listener_properties(self) -> list[str]:
        host = self.settings.host
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{self.settings.admin_password.get_secret_value()}";'
        )
        return [
            f"listeners=SASL_PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            f"advertised.listeners=SASL_PLAINTEXT://{host}:{self.port}",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]

    def _format_options(self) -> list[str]:
        password = self.settings.admin_password.get_secret_value()
        return ["--add-scram", f"{MECHANISM}=[name={ADMIN},password={password}]"]

    def _provision(self) -> None:
        """Give ``KPS_KAFKA_USER`` its password and its ACLs (both idempotent), then wait
        until it can log in: SCRAM credentials reach the broker through the metadata log."""
        settings = self.settings
        config = confluent_config(self.bootstrap, self.admin_security())
        admin = AdminClient({**config, "log_level": 0})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
        upsert = UserScramCredentialUpsertion(
            settings.user, info, settings.user_password.get_secret_value().encode()
        )
        principal = f"User:{settings.user}"
        acls = [
            AclBinding(
                kind,
                prefix,
                ResourcePatternType.PREFIXED,
                principal,
                "*",
                AclOperation.ALL,
                AclPermissionType.ALLOW,
            )
            for prefix in settings.acl_prefixes
            for kind in (ResourceType.TOPIC, ResourceType.GROUP)
        ]
        try:
            for future in admin.alter_user_scram_credentials([upsert]).values():
                future.result()
            for future in admin.create_acls(acls).values():
                future.result()
        except KafkaException as error:
            raise LocalKafkaError(f"setting up user {settings.user} failed: {error}") from None
        if not self._await_login(self.job_security()):
            raise LocalKafkaError(f"user {settings.user} cannot log in to {self.bootstrap}")

    def _await_login(self, security: KafkaSecurity, timeout: float = 30.0) -> bool:
        try:
            return wait_until(lambda: self._answers(timeout=1.0, security=security), timeout, 0.25)
        except TimeoutError:
            return False
