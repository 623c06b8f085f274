"""Read-only access to the RocksDB files a stopped worker left behind.

Faust keeps one RocksDB per table partition at ``<datadir>/v1/tables/<table>-<p>.db``
and stores its changelog position under a reserved key, which is left out here.
Opening a DB a running worker holds is refused by RocksDB's lock, so use this on
stopped workers only (tests, diagnostics, disk-loss checks).
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import AccessType, Options, Rdict

FAUST_OFFSET_KEY = b"__faust\0offset__"


def table_dir(data_dir: Path, version: int = 1) -> Path:
    return data_dir / f"v{version}" / "tables"


def read_partition(path: Path) -> dict[bytes, bytes]:
    db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        return {key: value for key, value in db.items() if key != FAUST_OFFSET_KEY}
    finally:
        db.close()


def read_table(data_dir: Path, table: str) -> dict[bytes, bytes]:
    """Every key of ``table`` in the partitions stored under ``data_dir``."""
    merged: dict[bytes, bytes] = {}
    for path in sorted(table_dir(data_dir).glob(f"{table}-*.db")):
        merged.update(read_partition(path))
    return merged
