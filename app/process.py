"""Running a kafka-ps process, in this interpreter or as a child process.

A process hosts one role of a job: ``kps serve`` hosts shards (the ``server`` job),
``kps learn`` hosts logical workers (the ``worker`` job), and ``kps host JOB`` any job,
such as the test harness's counter. A logical worker is a training partition, not a
process: a process hosts whichever ones Kafka assigns it.

Faust never closes its RocksDB handles, so a process is restarted as a new process,
never inside the same interpreter: :class:`JobProcess` is how ``kps train``, the tests
and the benchmarks do that.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from kafka_ps.agents.deadline import Deadline
from kafka_ps.agents.faust_app import create_app
from kafka_ps.agents.jobs import job_named
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import ensure_topics
from kafka_ps.app.input_schema import with_input_schema
from kafka_ps.app.orphans import die_with_parent, parent_env
from kafka_ps.app.preflight import Access
from kafka_ps.app.stopping import BoundedWorker
from kafka_ps.tables.errors import KafkaPsError
from kafka_ps.tables.local_state import LocalState

#: The command that hosts each built-in job; any other job is ``kps host JOB``.
COMMANDS = {"server": "serve", "worker": "learn"}


class ProcessDied(KafkaPsError, RuntimeError):
    """A process of the job exited while the job still needed it.

    Parameters
    ----------
    message
        Which process, how it exited and where its log is, then the end of its log.
    """


def command_line(job: str) -> list[str]:
    """The ``kps`` arguments that host ``job`` in a process."""
    return [COMMANDS[job]] if job in COMMANDS else ["host", job]


def run_process(job: str, settings: JobSettings) -> None:
    """Host ``job``'s agents and tables in this process until SIGTERM or SIGINT (which
    its parent's death sends, if a :class:`JobProcess` started it)."""
    die_with_parent()
    spec = job_named(job)
    ensure_topics(settings.broker, spec.topics(settings))
    if job in ("worker", "server"):
        settings = with_input_schema(settings)
    state = LocalState(settings.data_dir)
    state.claim()
    app = create_app(settings, spec.group(settings))
    spec.register(app, settings)
    collect_rarely()
    try:
        faust_worker = BoundedWorker(
            app, loglevel=settings.log_level, stop_timeout=settings.stop_timeout
        )
        faust_worker.execute_from_commandline()
    except SystemExit as exit:
        if exit.code in (0, None):
            state.release()
        raise
    state.release()


#: Allocations (net of frees) between two collections of the youngest generation; each
#: older generation is collected after this many of the one below it.
GC_THRESHOLDS = (50_000, 20, 20)


def collect_rarely() -> None:
    """Run the cyclic garbage collector rarely, and never over what start-up built.

    A worker makes several objects per record (a parsed record, its prediction, the
    mini-batch's lists) that die young and hold no cycles. Python's default, a collection
    every 700 net allocations, ran several times per mini-batch, and its full collections
    walked every imported module: a fifth of a worker's CPU in ``kps bench``. Objects alive
    once the app is built (modules, Faust's services, the model) are frozen out of every
    collection; cycles made later are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def job_access(settings: JobSettings, jobs: Iterable[str]) -> Access:
    """The topics and consumer groups the processes of ``jobs`` use."""
    topics = tuple(
        dict.fromkeys(spec.name for job in jobs for spec in job_named(job).topics(settings))
    )
    groups = tuple(dict.fromkeys(job_named(job).group(settings) for job in jobs))
    return Access(read=topics, write=topics, groups=groups)


def settings_env(settings: JobSettings) -> dict[str, str]:
    """The environment that makes a child process build the same settings (a setting that
    is None is left out, so the child takes the default, None)."""
    return {
        f"KPS_{name.upper()}": value if isinstance(value, str) else json.dumps(value)
        for name, value in settings.model_dump(mode="json").items()
        if value is not None
    }


_JOB_VARIABLES = {f"KPS_{name.upper()}" for name in JobSettings.model_fields}


def child_env(settings: JobSettings) -> dict[str, str]:
    """The environment of a process :class:`JobProcess` starts: this one's, with the job's
    settings instead of any inherited ones, the working directory on ``PYTHONPATH``, and
    this process as the parent it dies with (:mod:`app.orphans`)."""
    path = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
    inherited = {k: v for k, v in os.environ.items() if k not in _JOB_VARIABLES}
    return {
        **inherited,
        **settings_env(settings),
        **parent_env(),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": path,
    }


#: Seconds a process may take to log Faust's "Ready" line.
READY_TIMEOUT = 60.0


def wait_first_ready(processes: Sequence[JobProcess], timeout: float = READY_TIMEOUT) -> None:
    """Wait until any of ``processes`` is ready (:attr:`JobProcess.ready`)."""
    deadline = Deadline(timeout)
    while not any(process.ready for process in processes):
        if deadline.passed():
            raise TimeoutError(f"no process ready after {timeout:.0f}s")
        time.sleep(0.05)


class JobProcess:
    """One child process hosting ``job``, with its own log file and data directory; it
    stops when this process dies, even by SIGKILL (:mod:`app.orphans`).

    Parameters
    ----------
    job
        What it hosts: ``server`` (``kps serve``), ``worker`` (``kps learn``), or another
        job as ``module:attribute`` (``kps host``).
    settings
        The job's settings, passed to the child as ``KPS_*`` variables.
    log_path
        Where the child's stdout and stderr go (appended to).
    """

    def __init__(self, job: str, settings: JobSettings, log_path: Path) -> None:
        self.job = job
        self.settings = settings
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("process not started")
        return self._process.pid

    def start(self) -> JobProcess:
        """Create the job's topics, so records can be produced at once, then spawn the process."""
        if self.running:
            raise RuntimeError(f"process already running (pid {self.pid})")
        ensure_topics(self.settings.broker, job_named(self.job).topics(self.settings))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "kafka_ps.app.cli", *command_line(self.job)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(self.settings),
            )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the process is :attr:`ready`."""
        deadline = Deadline(timeout)
        while not self.ready:
            if deadline.passed():
                raise TimeoutError(
                    f"{self.job} process not ready after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    @property
    def ready(self) -> bool:
        """Whether this run has logged Faust's "Ready" line and the job's own
        (:attr:`~agents.jobs.Job.ready_lines`): the process has started and joined its
        groups; its tables may still be recovering."""
        lines = (b"Ready", *job_named(self.job).ready_lines(self.settings))
        return all(self.logged(line) for line in lines)

    def logged(self, text: bytes) -> bool:
        """Whether ``text`` is in what this run has logged so far; :class:`ProcessDied` if
        the process has exited."""
        if not self.running:
            raise self.died()
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return text in log.read()

    def died(self) -> ProcessDied:
        """The error that says this process exited, how, and where its log is."""
        code = None if self._process is None else self._process.returncode
        return ProcessDied(
            f"{self.job} process exited (code {code}); its log is {self.log_path}\n"
            f"{self.log_tail()}"
        )

    def wait_log(self, text: bytes, timeout: float) -> None:
        """Wait for ``text`` in what this run has logged so far."""
        deadline = Deadline(timeout)
        while not deadline.passed():
            if self.logged(text):
                return
            time.sleep(0.2)
        raise TimeoutError(f"no {text!r} after {timeout:.0f}s:\n{self.log_tail()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM: Faust flushes its producer, commits and closes; return the exit code."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self) -> int:
        return self._stop(signal.SIGKILL, 30.0)

    def _stop(self, sig: signal.Signals, timeout: float) -> int:
        if self._process is None:
            raise RuntimeError("process not started")
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                return self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                raise TimeoutError(f"process ignored {sig.name} for {timeout:.0f}s") from None
        return self._process.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> JobProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            with contextlib.suppress(TimeoutError):
                self.terminate()
