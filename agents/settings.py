"""Settings, read from ``KPS_*`` environment variables and an optional TOML file (agents.config).

Every process of a job (workers, the CLI, the test fixtures) builds its settings
the same way, so a job is configured by its environment alone, as a container is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from kafka_ps.agents.config import FileSettings
from kafka_ps.tables.clocks import Consistency

#: The directory above the package: a checkout's root when running from one. Only tools that
#: exist in a checkout alone (benchmarks) may use it; state never goes there (state_dir).
REPO_ROOT = Path(__file__).resolve().parents[1]


def state_dir() -> Path:
    """Where local state goes unless configured: ``.kps`` in the working directory.

    Never the package's own directory: an installed package's site-packages may be
    read-only and is shared by every job that uses the same environment.
    """
    return Path.cwd() / ".kps"


class LocalKafkaSettings(FileSettings):
    """The local single-node Apache Kafka broker used for development, demos and CI.

    Parameters
    ----------
    version
        ``KPS_KAFKA_VERSION``: the Apache Kafka release to run; 4.0.2 by default.
    host
        ``KPS_KAFKA_HOST``: the address both brokers listen on; 127.0.0.1 by default.
    port
        ``KPS_KAFKA_PORT``: the plain broker's client port; 9092 by default.
    controller_port
        ``KPS_KAFKA_CONTROLLER_PORT``: the plain broker's KRaft controller port; 9093.
    home
        ``KPS_KAFKA_HOME``: broker state (server.properties, log dirs, pid file, the
        broker's log); ``.kps/kafka`` in the working directory by default.
    cache
        ``KPS_KAFKA_CACHE``: where the broker's jars are collected once, shared by every
        checkout; ``~/.cache/kafka-ps`` by default.
    heap
        ``KPS_KAFKA_HEAP``: the broker JVM's heap (``-Xmx``); 512m by default.
    start_timeout
        ``KPS_KAFKA_START_TIMEOUT``: seconds to wait for a started broker to answer; 90.
    secure_port
        ``KPS_KAFKA_SECURE_PORT``: the secure broker's (``kps kafka start --secure``)
        SASL_PLAINTEXT SCRAM-SHA-512 client port; 9094.
    secure_controller_port
        ``KPS_KAFKA_SECURE_CONTROLLER_PORT``: the secure broker's controller port; 9095.
    secure_home
        ``KPS_KAFKA_SECURE_HOME``: the secure broker's own state; ``.kps/kafka-secure``.
    admin_password
        ``KPS_KAFKA_ADMIN_PASSWORD``: the secure broker's super user's password (also its
        inter-broker identity); set before its first start, when the credential is stored.
    user
        ``KPS_KAFKA_USER``: the principal kafka-ps jobs use on the secure broker.
    user_password
        ``KPS_KAFKA_USER_PASSWORD``: that principal's password.
    acl_prefixes
        ``KPS_KAFKA_ACL_PREFIXES``: ``user`` may do anything on topics and consumer groups
        whose names start with one of these (``kps-``, ``kafka-ps`` by default), and
        nothing else; app ids and input topics must start with one of them.
    """

    config_table: ClassVar[str] = "kafka"

    model_config = SettingsConfigDict(env_prefix="KPS_KAFKA_")

    version: str = "4.0.2"
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    #: Broker state: server.properties, log dirs, pid file and the broker's log.
    home: Path = Field(default_factory=lambda: state_dir() / "kafka")
    #: Where the broker's jars are collected once, shared by every checkout.
    cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "kafka-ps")
    heap: str = "512m"
    start_timeout: float = 90.0
    #: ``kps kafka start --secure``: a second broker beside the plain one, with a
    #: SASL_PLAINTEXT SCRAM-SHA-512 listener, ACLs and state of its own.
    secure_port: int = 9094
    secure_controller_port: int = 9095
    secure_home: Path = Field(default_factory=lambda: state_dir() / "kafka-secure")
    #: The secure broker's super user (also its own inter-broker identity); set before
    #: its first start (the credential is stored when its storage is formatted).
    admin_password: SecretStr = SecretStr("kps-admin-secret")
    #: The principal kafka-ps jobs use on the secure broker, and its password.
    user: str = "kafka-ps"
    user_password: SecretStr = SecretStr("kafka-ps-secret")
    #: ``user`` may do anything on topics and consumer groups whose names start with one of
    #: these, and nothing else: app ids and input topics must start with one of them.
    acl_prefixes: list[str] = Field(default_factory=lambda: ["kps-", "kafka-ps"])

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class JobSettings(FileSettings):
    """One kafka-ps job: which broker, which topics, where local state lives.

    Each field's ``description`` is its one documentation: the ``Parameters`` section below
    (generated, :func:`agents.config.parameters_section`), ``kps COMMAND --help`` and the
    settings table of docs/operations.md are made or checked from it.
    """

    config_table: ClassVar[str] = "job"

    model_config = SettingsConfigDict(env_prefix="KPS_")

    broker: str = Field(
        default="127.0.0.1:9092", description="the bootstrap servers, host:port[,host:port...]"
    )
    app_id: str = Field(
        default="kafka-ps",
        description="the job's name; its consumer groups and topics start with it",
    )
    data_dir: Path = Field(
        default_factory=lambda: state_dir() / "data",
        description="where processes keep their local table state",
    )
    input_topic: str = Field(
        default="kps-training", description="the training topic, which producers write"
    )
    partitions: int = Field(
        default=2,
        ge=1,
        description="training partitions: logical workers, and partitions of the input, "
        "replies and predictions topics",
    )
    instance_id: str | None = Field(
        default=None,
        description="static group membership (KIP-345), unique per process: a process "
        "restarted with it takes its partitions back without a rebalance; None: dynamic",
    )
    standby_replicas: int = Field(
        default=0,
        ge=0,
        description="standby copies of each table partition kept warm by other server "
        "processes, so a partition that moves needs no rebuild from the changelog",
    )
    # A container engine SIGKILLs at 10 s.
    stop_timeout: float = Field(
        default=7.0,
        gt=0,
        description="seconds a process may take to stop after SIGTERM before it exits anyway; "
        "kps train allows its processes this plus 1 s",
    )
    connect_timeout: float = Field(
        default=10.0,
        description="seconds the command line waits for the broker's first answer",
    )
    session_timeout: float = Field(
        default=10.0,
        description="the consumer groups' session timeout in seconds; short, so that a "
        "killed process is noticed quickly",
    )
    # A member learns of a rebalance at its next heartbeat, so each join (a process starting
    # or coming back) waited up to this long for the others: 1 s cost a job's start about a
    # second twice over (the worker group, then the packer group).
    heartbeat_interval: float = Field(
        default=0.25, description="seconds between consumer heartbeats"
    )
    # Under BSP and SSP a worker whose clock waits on a killed process holds a rebalance this
    # long; a shorter timeout drops such a worker mid-take, and its push, sent after its
    # partition moved, straddles the new owner's and counts records twice (the SSP chaos
    # test at 20 s).
    rebalance_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds a rebalance waits for every member to rejoin",
    )
    commit_interval: float = Field(default=1.0, description="seconds between offset commits")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="the processes' log level"
    )
    fetch_max_wait_ms: int = Field(
        default=10,
        description="longest a consumer's fetch waits on the broker for new records, in "
        "milliseconds (Faust fixes 1500)",
    )
    shards: int = Field(
        default=2,
        ge=1,
        description="server shards: partitions of the shard topic and of the parameter table",
    )
    model: str = Field(
        default="logreg_ftrl",
        description="a built-in model's name (agents/models) or package.module:factory",
    )
    model_params: dict[str, Any] = Field(
        default_factory=dict, description="the model's hyper-parameters, a JSON object"
    )
    batch_size: int = Field(default=8192, ge=1, description="records per mini-batch")
    batch_wait: float = Field(
        default=0.005,
        gt=0,
        description="seconds a worker waits for more input messages before it learns what "
        "it has read",
    )
    max_pulls_in_flight: int = Field(
        default=8,
        ge=1,
        description="K, the pull requests one logical worker may have unanswered at once "
        "(one per shard it reads per mini-batch); shards hold at most K pulls per worker",
    )
    pull_timeout: float = Field(
        default=10.0,
        description="seconds a worker waits for a pull reply before it asks again",
    )
    publish_interval: float = Field(
        default=0.05,
        gt=0,
        description="seconds between a shard's publications of its changed parameters "
        "and marks to model-updates",
    )
    flush_interval: float = Field(
        default=0.5,
        gt=0,
        description="seconds between a shard's flushes of its changed pages to the table; "
        "pushes are acknowledged after the flush",
    )
    pack_input: bool = Field(
        default=True,
        description="pack one-record input messages many to a message before the workers "
        "read them (agents/packer.py); off when producers write kps-batch messages themselves",
    )
    pull_ahead: bool = Field(
        default=True,
        description="under ASP, pull a mini-batch's rows while the mini-batch before learns, "
        "for logic that can name its keys beforehand (the hashed models)",
    )
    push_threshold: float = Field(
        default=0.0,
        ge=0,
        description="Li et al.'s significance filter: a key's push is held back while the "
        "largest magnitude of its accumulated delta is at most this, and joins the key's next "
        "push; 0 pushes every change",
    )
    push_dtype: Literal["float64", "float16"] = Field(
        default="float64",
        description="the value type of pushes on the wire (a push with a value beyond "
        "float16's range still goes as float64)",
    )
    page_size: int = Field(
        default=1024,
        ge=1,
        description="keys per page of a shard's parameters, the unit of table writes "
        "(tables/pages.py)",
    )
    consistency: str = Field(
        default="asp",
        description="asp, bsp or ssp:<s>: asynchronous, bulk-synchronous, or workers at most "
        "s clocks apart (tables/clocks.py)",
    )
    idle_interval: float = Field(
        default=0.2,
        description="seconds without a mini-batch after which an idle logical worker's clock "
        "advances",
    )
    metrics_window: int = Field(
        default=10_000, description="records per progressive-metrics window"
    )
    warm_start: str = Field(
        default="",
        description="start parameters from a .npz file (as kps model writes) or "
        "topic:<model-updates topic> instead of their initialisers",
    )
    export_on_exit: str = Field(
        default="",
        description="a .npz file kps train writes the model to when the job ends or is "
        "stopped (SIGTERM, Ctrl-C)",
    )
    metrics_interval: float = Field(
        default=5.0,
        description="seconds between a process's reports of its dead-letter counts (sent "
        "only on change)",
    )
    predict_unlabelled: bool = Field(
        default=False,
        description="predict records without a label instead of sending them to dead letters",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="the port this process serves Prometheus metrics on at /metrics "
        "(agents/telemetry.py); 0: none. kps train gives its processes this port, the next "
        "one, and so on",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="the address the metrics port listens on: 0.0.0.0 in a container that "
        "is scraped from outside",
    )

    @field_validator("consistency")
    @classmethod
    def _known_consistency(cls, value: str) -> str:
        Consistency.parse(value)
        return value

    @classmethod
    def for_run(cls, run: str, data_dir: Path, **fields: Any) -> JobSettings:
        """A job of its own: app id ``run``, input topic ``<run>-input``, its own data."""
        return cls(app_id=run, input_topic=f"{run}-input", data_dir=data_dir, **fields)

    def group(self, role: str) -> str:
        """The consumer group (Faust app id) of the job's processes of ``role``."""
        return f"{self.app_id}-{role}" if role else self.app_id

    def topic(self, role: str) -> str:
        """The job's topic for ``role``: shard, replies, model-updates, predictions, metrics."""
        return f"{self.app_id}-{role}"
