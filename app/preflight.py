"""Checks a command makes before it writes anything: the broker answers, accepts the
client's credentials, and lets its principal use the topics and groups the command needs.

Each failure is a :class:`app.cli_errors.BrokerError`: one line and exit code 5. Without
these checks a wrong password shows up as ten seconds of silence and a bare "transport
failure", and a missing ACL as a learning process dying in Faust's start-up, after other
processes have created topics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

from kafka_ps.agents.client import is_transient
from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.security import KafkaSecurity, confluent_config
from kafka_ps.app.cli_errors import BrokerError

#: Client-side errors that mean the broker refused this client, not that it is away.
_REFUSALS = {KafkaError._AUTHENTICATION, KafkaError._SSL}
_NOT_AUTHORIZED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
_READ = {AclOperation.READ, AclOperation.ALL}
_WRITE = {AclOperation.WRITE, AclOperation.ALL}

T = TypeVar("T")


def require_broker(bootstrap: str, timeout: float, security: KafkaSecurity | None = None) -> None:
    """Raise :class:`BrokerError` unless an admin metadata request to ``bootstrap`` succeeds
    within ``timeout`` seconds; at once if the broker refuses the client's credentials."""
    security = security or KafkaSecurity()
    refusals: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in _REFUSALS:
            refusals.append(error)

    config = confluent_config(bootstrap, security)
    admin = AdminClient({**config, "log_level": 0, "error_cb": on_error})
    deadline = Deadline(timeout)
    while True:
        try:
            admin.list_topics(timeout=min(1.0, max(deadline.left(), 0.01)))
            return
        except KafkaException:
            admin.poll(0)  # serves error_cb
        if refusals:
            raise BrokerError(
                f"the broker at {bootstrap} refuses {_who(security)}: {_reason(refusals[0])}"
            )
        if deadline.passed():
            raise BrokerError(
                f"the broker at {bootstrap} does not answer within {timeout:g}s "
                "(set KPS_BROKER, or start one with kps kafka start)"
            )


def _who(security: KafkaSecurity) -> str:
    if security.sasl:
        return f"user {security.sasl_username!r} ({security.sasl_mechanism})"
    return f"this {security.security_protocol} client"


def _reason(error: KafkaError) -> str:
    """librdkafka's text without its broker-address prefix and timing suffix."""
    text = error.str().split(": ", 1)[-1]
    return text.split(" (after ", 1)[0]


@dataclass(frozen=True)
class Access:
    """What a command is about to do on the cluster.

    Parameters
    ----------
    read
        Topics it reads.
    write
        Topics it writes; those that do not exist yet it creates.
    groups
        Consumer groups it joins or commits offsets in.
    """

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


def require_access(
    bootstrap: str, access: Access, timeout: float, security: KafkaSecurity | None = None
) -> None:
    """Raise :class:`BrokerError` unless the client's principal may do ``access``.

    Asks the brokers which operations the principal may perform on each topic and group
    (KIP-430's authorized operations), and validates the creation of missing topics
    without creating them, so nothing is written either way."""
    security = security or KafkaSecurity()
    # Quiet, as require_broker's: librdkafka's own log lines would break the one-line failure.
    admin = AdminClient({**confluent_config(bootstrap, security), "log_level": 0})
    who = security.principal
    missing = _check_topics(admin, access, who, timeout)
    if missing:
        _check_create(admin, missing, who, timeout)
    for group in access.groups:
        operations = _retrying(lambda g=group: _group_operations(admin, g, timeout), timeout)
        if operations is None or not operations & _READ:
            raise BrokerError(_denied(who, "read", "consumer group", group))


def _check_topics(admin: AdminClient, access: Access, who: str, timeout: float) -> list[str]:
    """Check the existing topics of ``access``; return those that do not exist."""
    names = list(dict.fromkeys(access.read + access.write))
    if not names:
        return []
    futures = admin.describe_topics(
        TopicCollection(names), request_timeout=timeout, include_authorized_operations=True
    )
    missing = []
    for name, future in futures.items():
        try:
            operations = _known(future.result().authorized_operations)
        except KafkaException as error:
            code = error.args[0].code()
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                missing.append(name)
                continue
            if code in _NOT_AUTHORIZED:
                raise BrokerError(_denied(who, "use", "topic", name)) from None
            raise
        if name in access.read and not operations & _READ:
            raise BrokerError(_denied(who, "read", "topic", name))
        if name in access.write and not operations & _WRITE:
            raise BrokerError(_denied(who, "write", "topic", name))
    return missing


def _known(operations: list[AclOperation] | None) -> set[AclOperation]:
    """The authorized operations a broker reported; all of them if it reported none (a
    broker too old to say)."""
    return {AclOperation.ALL} if operations is None else set(operations)


def _check_create(admin: AdminClient, names: Iterable[str], who: str, timeout: float) -> None:
    topics = [NewTopic(name, num_partitions=1, replication_factor=-1) for name in names]
    futures = admin.create_topics(topics, operation_timeout=timeout, validate_only=True)
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as error:
            code = error.args[0].code()
            if code in _NOT_AUTHORIZED:
                raise BrokerError(_denied(who, "create", "topic", name)) from None
            if code != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def _group_operations(admin: AdminClient, group: str, timeout: float) -> set[AclOperation] | None:
    """The operations the principal may perform on ``group``; None if it may not see it."""
    future = admin.describe_consumer_groups(
        [group], request_timeout=timeout, include_authorized_operations=True
    )[group]
    try:
        return _known(future.result().authorized_operations)
    except KafkaException as error:
        if error.args[0].code() in _NOT_AUTHORIZED:
            return None
        raise


def _retrying(call: Callable[[], T], timeout: float) -> T:
    """``call()``, again while the group coordinator is still loading (a fresh broker)."""
    deadline = Deadline(timeout)
    while True:
        try:
            return call()
        except KafkaException as error:
            if not is_transient(error) or deadline.passed():
                raise
            time.sleep(0.2)


def _denied(who: str, operation: str, kind: str, name: str) -> str:
    return (
        f"{who} may not {operation} {kind} {name!r}: the cluster's ACLs do not allow it "
        "(an operator grants them, e.g. on the job's app-id prefix)"
    )
