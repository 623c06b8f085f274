"""SIGTERM ends every kafka-ps process within 10 s, also when the broker has gone away.

A broker of the test's own (its own ports and directory, so that the session's broker is
untouched) serves a ``kps train`` job (a parent and its worker and server children) and a
standalone pair, ``kps serve`` and ``kps worker --job worker`` (the old spelling of ``kps
learn``), as containers would run them. The broker is SIGKILLed; then
every process gets SIGTERM at once, as a container engine's stop does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka_ps.agents.deadline import Deadline, wait_until
from kafka_ps.agents.settings import LocalKafkaSettings
from kafka_ps.app.local_kafka import LocalKafka, _alive
from kafka_ps.app.stopping import _children
from tests.cli import free_port

REPO = Path(__file__).resolve().parents[2]


def _wait_for(path_glob: str, root: Path, text: bytes, timeout: float) -> None:
    wait_until(
        lambda: any(text in path.read_bytes() for path in root.glob(path_glob)),
        timeout,
        0.5,
        f"no {text!r} in {root}/{path_glob} after {timeout:.0f}s",
    )


def test_sigterm_ends_every_process_within_10s_with_the_broker_gone(tmp_path: Path) -> None:
    broker = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), home=tmp_path / "kafka")
    )
    bootstrap = broker.start().bootstrap
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPS_")}
    env.update(KPS_BROKER=bootstrap, PYTHONPATH=str(REPO))
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str, log: str, **extra: str) -> None:
        with (tmp_path / log).open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kafka_ps.app.cli", *args],
                    cwd=tmp_path,
                    env={**env, **extra},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    try:
        spawn("train", "--dataset", "flights", "--limit", "300000", log="train.log")
        for role, args in (("server", ["serve"]), ("worker", ["worker", "--job", "worker"])):
            own = str(tmp_path / "standalone" / role)  # "worker" is the alias of learn
            spawn(*args, log=f"{role}.log", KPS_APP_ID="standalone", KPS_DATA_DIR=own)
        _wait_for(".kps/data/*/worker-1.log", tmp_path, b"Worker ready", 180)
        _wait_for("worker.log", tmp_path, b"Worker ready", 180)
        _wait_for("server.log", tmp_path, b"Worker ready", 180)
        everyone = [p.pid for p in processes] + _children(processes[0].pid)
        assert len(everyone) == 6, everyone

        pid = broker._pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        time.sleep(2)  # the processes notice: connections refused, fetches failing

        stopped_at = time.monotonic()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for child in everyone[len(processes) :]:
            os.kill(child, signal.SIGTERM)
        ended: dict[int, float] = {}
        deadline = Deadline(15)
        while len(ended) < len(everyone) and not deadline.passed():
            for p in everyone:
                if p not in ended and not _alive(p):
                    ended[p] = round(time.monotonic() - stopped_at, 1)
            time.sleep(0.05)
        names = ["train", "server", "worker", *(f"train child {p}" for p in everyone[3:])]
        took = {name: ended.get(p) for name, p in zip(names, everyone, strict=True)}
        assert all(t is not None and t < 10 for t in took.values()), took
        for process in processes:
            assert process.wait(1) is not None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        broker.stop()
