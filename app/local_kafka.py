"""A real single-node Apache Kafka broker (KRaft) on loopback, without Docker.

The broker's jars come from Maven Central through ``app/kafka_files/pom.xml`` (package
data, copied next to the jar cache before Maven runs, so nothing is written into the
installed package) and are cached once per version. ``start`` is idempotent: a broker
this tooling started and that still answers is reused; a stale pid file, a dead or
unresponsive broker and a half-formatted log directory are cleaned up. Readiness means an
admin metadata request succeeded, not merely that the port is open.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.security import MAX_MESSAGE_BYTES, KafkaSecurity, confluent_config
from kafka_ps.agents.settings import LocalKafkaSettings
from kafka_ps.tables.errors import KafkaPsError

#: The broker's files, shipped as package data of ``app``.
_FILES = resources.files("kafka_ps.app") / "kafka_files"


def _package_file(name: str, destination: Path) -> Path:
    """Copy the packaged file ``name`` to ``destination`` (a real file Maven or Java can
    read wherever and however the package is installed) and return it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text((_FILES / name).read_text(encoding="utf-8"), encoding="utf-8")
    return destination


class LocalKafkaError(KafkaPsError, RuntimeError):
    """Something stops the local broker from starting; the message says what."""


@dataclass(frozen=True)
class BrokerStatus:
    """Whether the local broker runs, as ``kps kafka status`` reports it.

    Parameters
    ----------
    running
        Whether it answers.
    pid
        Its process id, if it has a pid file.
    bootstrap
        Its address.
    detail
        One line for a person.
    """

    running: bool
    pid: int | None
    bootstrap: str
    detail: str


class LocalKafka:
    """Fetches, formats, starts and stops one local broker+controller.

    Parameters
    ----------
    settings
        Its version, ports and directories; ``KPS_KAFKA_*`` by default.
    """

    def __init__(self, settings: LocalKafkaSettings | None = None) -> None:
        self.settings = settings or LocalKafkaSettings()
        home = self.home
        self.pid_file = home / "broker.pid"
        self.log_file = home / "broker.log"
        self.properties_file = home / "server.properties"
        self.cluster_id_file = home / "cluster.id"
        self.log_dir = home / "data"
        self.log4j_config = home / "log4j2.properties"
        self.libs = self.settings.cache / f"kafka-{self.settings.version}" / "libs"

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def controller_port(self) -> int:
        return self.settings.controller_port

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def admin_security(self) -> KafkaSecurity:
        """How this tooling's own admin client connects (whatever ``KPS_SECURITY_*`` say)."""
        return KafkaSecurity(security_protocol="PLAINTEXT")

    # -- jars ---------------------------------------------------------------------

    def fetch(self) -> Path:
        """Collect the broker's runtime jars from Maven Central, once per version."""
        complete = self.libs / ".complete"
        if complete.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError("Maven (mvn) is not on PATH; it fetches the Kafka jars")
        staging = self.libs.with_name(f"libs.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        pom = _package_file("pom.xml", self.libs.with_name("pom.xml"))
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
            f"-Dkafka.version={self.settings.version}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        jar = staging / f"kafka_2.13-{self.settings.version}.jar"
        if result.returncode != 0 or not jar.exists():
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr)[-3000:]
            log = self.libs.with_name("maven.log")
            log.write_text(output)
            raise LocalKafkaError(
                f"Maven failed to fetch Apache Kafka {self.settings.version} "
                f"(exit {result.returncode}; its output: {log}):\n{output}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        complete.touch()
        return self.libs

    # -- state --------------------------------------------------------------------

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_our_broker(pid) else None

    def _answers(self, timeout: float = 3.0, security: KafkaSecurity | None = None) -> bool:
        config = confluent_config(self.bootstrap, security or self.admin_security())
        admin = AdminClient({**config, "log_level": 0})
        try:
            admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def status(self) -> BrokerStatus:
        pid = self._pid()
        bootstrap = self.bootstrap
        if pid is None:
            return BrokerStatus(False, None, bootstrap, "not running")
        if self._answers():
            return BrokerStatus(True, pid, bootstrap, f"running (pid {pid}) on {bootstrap}")
        return BrokerStatus(False, pid, bootstrap, f"pid {pid} alive but not answering")

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> BrokerStatus:
        """Start the broker, or reuse the one already running; return once it answers."""
        current = self.status()
        if current.running:
            return current
        if current.pid is not None:
            self._terminate(current.pid)
        self.pid_file.unlink(missing_ok=True)
        java = shutil.which("java")
        if java is None:
            raise LocalKafkaError("Java is not on PATH; Apache Kafka 4 needs Java 17 or newer")
        for port in (self.port, self.controller_port):
            if _port_taken(self.settings.host, port):
                raise LocalKafkaError(
                    f"port {port} on {self.settings.host} is taken by another process; "
                    f"set {self.port_variables} to free ports"
                )
        libs = self.fetch()
        _package_file("log4j2.properties", self.log4j_config)
        self._format(java, libs)
        command = [
            java,
            f"-Xmx{self.settings.heap}",
            f"-Xms{self.settings.heap}",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = Deadline(self.settings.start_timeout)
        while not deadline.passed():
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"the broker exited with code {process.returncode} "
                    f"(its log: {self.log_file}):\n{self._log_tail()}"
                )
            if self._answers(timeout=1.0):
                self._provision()
                return self.status()
            time.sleep(0.25)
        self._terminate(process.pid)
        raise LocalKafkaError(
            f"the broker did not answer within {self.settings.start_timeout:.0f}s "
            f"(its log: {self.log_file}):\n{self._log_tail()}"
        )

    def stop(self) -> bool:
        """Stop the broker by its PID; return whether one was running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._terminate(pid)
        return True

    def wipe(self) -> None:
        """Stop the broker and delete its data; the next start formats afresh."""
        self.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.cluster_id_file.unlink(missing_ok=True)

    # -- internals ----------------------------------------------------------------

    def _terminate(self, pid: int, grace: float = 30.0) -> None:
        _signal(pid, signal.SIGTERM)
        deadline = Deadline(grace)
        while not deadline.passed() and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    #: The settings that choose this broker's ports, for messages.
    port_variables = "KPS_KAFKA_PORT / KPS_KAFKA_CONTROLLER_PORT"

    def _provision(self) -> None:
        """Set the running broker up for its users (the plain broker needs nothing)."""

    def _format_options(self) -> list[str]:
        """What ``StorageTool format`` takes besides the cluster id and the properties."""
        return []

    def _listener_properties(self) -> list[str]:
        host = self.settings.host
        return [
            f"listeners=PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{self.port}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]

    def _format(self, java: str, libs: Path) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self._server_properties())
        self.properties_file.chmod(0o600)
        meta = self.log_dir / "meta.properties"
        cluster_id = (
            self.cluster_id_file.read_text().strip() if self.cluster_id_file.exists() else ""
        )
        if meta.exists() and cluster_id and f"cluster.id={cluster_id}" in meta.read_text():
            return
        # Half-formatted, or formatted for another cluster: start over.
        shutil.rmtree(self.log_dir, ignore_errors=True)
        cluster_id = _new_cluster_id()
        result = subprocess.run(
            [
                java,
                "-cp",
                f"{libs}/*",
                f"-Dlog4j2.configurationFile={self.log4j_config}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties_file),
                *self._format_options(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            raise LocalKafkaError(
                f"formatting KRaft storage in {self.log_dir} failed (exit {result.returncode}):"
                f"\n{result.stdout}{result.stderr}"
            )
        self.cluster_id_file.write_text(cluster_id)

    def _server_properties(self) -> str:
        s = self.settings
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{s.host}:{self.controller_port}",
                "controller.listener.names=CONTROLLER",
                *self._listener_properties(),
                f"log.dirs={self.log_dir}",
                "num.partitions=1",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                "auto.create.topics.enable=false",
                "delete.topic.enable=true",
                "group.initial.rebalance.delay.ms=0",
                # Lets jobs trade false alarms for failover speed with session timeouts below 6 s.
                "group.min.session.timeout.ms=500",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "log.cleaner.backoff.ms=1000",
                f"message.max.bytes={MAX_MESSAGE_BYTES}",
                "",
            ]
        )

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


def _new_cluster_id() -> str:
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _is_our_broker(pid: int) -> bool:
    """A pid file can outlive its process and the pid be reused: check the command line."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return b"kafka.Kafka" in cmdline


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
