"""Local table state is kept after a clean stop and deleted after a crash, and a
directory in use by a running process is never taken for a crashed one."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from kafka_ps.tables.local_state import RUNNING_MARK, DataDirInUse, LocalState


def _tables(data_dir: Path) -> Path:
    db = data_dir / "v1" / "tables" / "params-0.db"
    db.mkdir(parents=True)
    (db / "000001.log").write_bytes(b"rocksdb")
    return db


def test_state_of_a_clean_stop_is_kept(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "data")
    assert not state.claim()
    db = _tables(tmp_path / "data")
    state.release()
    assert not LocalState(tmp_path / "data").claim()
    assert (db / "000001.log").read_bytes() == b"rocksdb"


def _claim_and_die(data_dir: Path) -> None:
    LocalState(data_dir).claim()
    _tables(data_dir)
    os._exit(0)  # no release(), as after a SIGKILL; the kernel drops the lock


def test_state_of_a_crashed_run_is_deleted(tmp_path: Path) -> None:
    crashed = multiprocessing.get_context("fork").Process(
        target=_claim_and_die, args=(tmp_path / "data",)
    )
    crashed.start()
    crashed.join()
    assert (tmp_path / "data" / "v1" / "tables").exists()
    (tmp_path / "data" / "worker.log").write_text("kept")
    assert LocalState(tmp_path / "data").claim()
    assert not (tmp_path / "data" / "v1" / "tables").exists()
    assert (tmp_path / "data" / "worker.log").read_text() == "kept"
    assert (tmp_path / "data" / RUNNING_MARK).exists()


def test_a_directory_in_use_is_refused_and_left_alone(tmp_path: Path) -> None:
    running = LocalState(tmp_path / "data")
    running.claim()
    db = _tables(tmp_path / "data")
    with pytest.raises(DataDirInUse, match="in use by another running process"):
        LocalState(tmp_path / "data").claim()
    assert (db / "000001.log").read_bytes() == b"rocksdb"
    running.release()
    assert not LocalState(tmp_path / "data").claim()
