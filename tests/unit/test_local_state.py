"""Local table state is kept after a clean stop and deleted after a crash."""

from __future__ import annotations

from pathlib import Path

from kafka_ps.tables.local_state import RUNNING_MARK, LocalState


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


def test_state_of_a_crashed_run_is_deleted(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "data")
    state.claim()
    _tables(tmp_path / "data")
    # no release(): SIGKILL
    (tmp_path / "data" / "worker.log").write_text("kept")
    assert LocalState(tmp_path / "data").claim()
    assert not (tmp_path / "data" / "v1" / "tables").exists()
    assert (tmp_path / "data" / "worker.log").read_text() == "kept"
    assert (tmp_path / "data" / RUNNING_MARK).exists()
