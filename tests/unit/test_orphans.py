"""A process that JobProcess starts ends with its parent, even one killed by SIGKILL
(app/orphans.py); a process started otherwise outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kafka_ps.agents.settings import JobSettings
from kafka_ps.app import process
from kafka_ps.app.orphans import PARENT_VARIABLE, parent_env
from kafka_ps.app.process import child_env, run_process

#: A child that opts in (as run_process does), says so, and would then live 30 s.
_CHILD = (
    "import time; from kafka_ps.app.orphans import die_with_parent; "
    "die_with_parent(); print('armed', flush=True); time.sleep(30)"
)

#: A parent that starts two children, one with parent_env() (as JobProcess does) and one
#: without, prints their pids once both run, and waits to be killed.
_PARENT = f"""
import os, subprocess, sys, time
from kafka_ps.app.orphans import parent_env
children = [
    subprocess.Popen([sys.executable, "-c", {_CHILD!r}], env={{**os.environ, **env}},
                     stdout=subprocess.PIPE)
    for env in (parent_env(), {{}})
]
for child in children:
    child.stdout.readline()
print(*(child.pid for child in children), flush=True)
time.sleep(30)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: neither gone nor a zombie (an orphan's zombie waits for init,
    which in a container may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_child_of_a_job_process_ends_when_its_parent_is_killed() -> None:
    env = {k: v for k, v in os.environ.items() if k != PARENT_VARIABLE}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, env=env, text=True
    )
    opted_in, other = map(int, parent.stdout.readline().split())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 3.0
        while _alive(opted_in) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(opted_in), "the child outlived its parent"
        assert _alive(other), "a child that did not opt in ended with its parent"
    finally:
        for pid in (opted_in, other):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_child_whose_parent_died_before_it_could_ask_exits_at_once() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    env = {**os.environ, PARENT_VARIABLE: str(dead.pid)}  # its parent, had it lived
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=10
    )
    assert child.returncode == 1
    assert "armed" not in child.stdout
    assert f"(pid {dead.pid}) has exited" in child.stderr


def test_a_job_process_names_itself_the_parent_its_child_dies_with(tmp_path: Path) -> None:
    assert child_env(JobSettings(data_dir=tmp_path))[PARENT_VARIABLE] == str(os.getpid())
    assert parent_env() == {PARENT_VARIABLE: str(os.getpid())}


def test_a_hosted_job_checks_its_parent_before_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Checked(Exception):
        pass

    def check() -> None:
        raise Checked

    def reached_the_broker(*_: object) -> None:
        raise AssertionError("run_process went on before it checked its parent")

    monkeypatch.setattr(process, "die_with_parent", check)
    monkeypatch.setattr(process, "ensure_topics", reached_the_broker)
    with pytest.raises(Checked):
        run_process("worker", JobSettings(data_dir=tmp_path))
