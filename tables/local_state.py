"""A process's local table state survives a clean stop, and is rebuilt after a crash.

After a SIGKILL, a partition's RocksDB can hold writes whose changelog records were
never sent, and Faust's recovery then replays the changelog records sent after the last
*acknowledged* one over it. Keys written both before and after that point revert to an
older value, while keys written only after it keep the newer one: a mix that is no
prefix of the write sequence. The exactly-once rules need a prefix (a shard's
high-water mark vouches for parameter writes made before it; see
:mod:`tables.replay`). The changelog itself is one, since a partition's records are
produced in order, and every write of a committed message is in it (Faust flushes
before committing).

So, as Kafka Streams does under exactly-once, a process marks its data directory while
it runs and clears the mark on a clean stop; finding the mark at start means the last
run crashed, and the table files are deleted so Faust rebuilds them from the changelog.

A mark left by a process that is still running is no crash: two processes given one data
directory would delete each other's open tables. Each process therefore holds an
exclusive lock on the directory while it runs (the kernel drops it when the process dies,
however it dies), and a second process is refused in one line, as Kafka Streams refuses a
second instance on one state directory.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from pathlib import Path
from typing import IO

from kafka_ps.tables.errors import KafkaPsError

log = logging.getLogger(__name__)

RUNNING_MARK = "kps-running"
LOCK_FILE = "kps-lock"


class DataDirInUse(KafkaPsError):
    """Another running process holds the data directory."""


class LocalState:
    """A process's data directory, marked while the process runs (see the module).

    Parameters
    ----------
    data_dir
        The process's data directory (the job's ``data_dir``); the mark file lives in it
        and, after a crash, its ``v*/tables`` directories are deleted.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.mark = data_dir / RUNNING_MARK
        self._lock: IO[bytes] | None = None

    def claim(self) -> bool:
        """Lock the directory and mark the state in use; first delete the state if the last
        user crashed. Return whether it was deleted; :class:`DataDirInUse` if another
        running process holds the directory."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.data_dir / LOCK_FILE).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise DataDirInUse(
                f"data directory {self.data_dir} is in use by another running process: "
                "give each process its own KPS_DATA_DIR"
            ) from None
        self._lock = lock
        crashed = self.mark.exists()
        if crashed:
            log.warning("the last run crashed: rebuilding %s from changelogs", self.data_dir)
            for tables in self.data_dir.glob("v*/tables"):
                shutil.rmtree(tables)
        self.mark.touch()
        return crashed

    def release(self) -> None:
        """Call after a clean stop: every table write has reached its changelog."""
        self.mark.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
