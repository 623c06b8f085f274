"""CPU time of a job's processes over its timed window, read from ``/proc``.

``kps bench`` gives :meth:`CpuMeter.window` to :func:`app.train.run_job` as its ``window``:
it reads user plus system time of every learning and server process, of the broker if it
runs on this machine, and of the process running the job (the bench itself, doing what
``kps train`` does: following the job and, when records are produced while it learns,
producing them) as the job's clock starts and as it stops.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

PROC = Path("/proc")
#: Names of the readings that are not a learning or server process.
BROKER, DRIVER = "broker", "kps train"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"  # the TCP state "listening" in /proc/net/tcp


class Process(Protocol):
    """What the meter needs of a job's process (:class:`app.process.JobProcess`)."""

    @property
    def job(self) -> str: ...

    @property
    def pid(self) -> int: ...


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid``, all its threads, in seconds."""
    stat = (PROC / str(pid) / "stat").read_text()
    # The command, in parentheses, may hold spaces: utime and stime, fields 14 and 15 of
    # proc(5), are the 12th and 13th after its ")".
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _open_files(pid: str) -> set[str]:
    links = set()
    with suppress(OSError):  # the process is gone, or is another user's
        for fd in os.listdir(PROC / pid / "fd"):
            with suppress(OSError):
                links.add(os.readlink(PROC / pid / "fd" / fd))
    return links


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine, if this user can see it."""
    sockets = set()
    for table in ("tcp", "tcp6"):
        with suppress(FileNotFoundError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                _, local, _, state, *rest = line.split()
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{rest[5]}]")
    if sockets:
        for entry in PROC.iterdir():
            if entry.name.isdigit() and sockets & _open_files(entry.name):
                return int(entry.name)
    return None


def broker_pid(bootstrap: str) -> int | None:
    """The broker's process if ``bootstrap`` is one broker at a loopback address (the local
    broker, whichever folder started it): the process listening on its port. None for a
    broker elsewhere or several."""
    host, _, port = bootstrap.rpartition(":")
    if "," in bootstrap or not port.isdigit():
        return None
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except OSError:
        return None
    return listening_pid(int(port)) if loopback else None


def process_names(processes: Sequence[Process]) -> dict[str, int]:
    """``worker-0``, ``worker-1``, ``server-0``...: each process's pid by job and rank."""
    ranks: Counter[str] = Counter()
    names = {}
    for process in processes:
        names[f"{process.job}-{ranks[process.job]}"] = process.pid
        ranks[process.job] += 1
    return names


def per_thousand(seconds: Mapping[str, float], samples: int) -> dict[str, float]:
    """CPU-seconds per 1,000 samples of each reading; NaN for no samples."""
    return {name: 1000 * s / samples if samples else float("nan") for name, s in seconds.items()}


class CpuMeter:
    """CPU-seconds each process of a job spends in its timed window, by name.

    After the window, :attr:`seconds` holds the job's processes (:func:`process_names`),
    :data:`BROKER` if the broker runs on this machine (a broker shared with other jobs
    counts their work too) and :data:`DRIVER`; :attr:`pids` their process ids.

    Parameters
    ----------
    bootstrap
        The job's broker address, for :func:`broker_pid`.
    """

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.pids: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    @contextmanager
    def window(self, processes: Sequence[Process]) -> Iterator[None]:
        """``run_job``'s ``window``: every process read as the clock starts and stops."""
        pids = process_names(processes)
        broker = broker_pid(self.bootstrap)
        if broker is not None:
            pids[BROKER] = broker
        pids[DRIVER] = os.getpid()
        started = {name: cpu_seconds(pid) for name, pid in pids.items()}
        yield
        # Whole clock ticks, their difference rounded off the float dust.
        self.seconds = {
            name: round(cpu_seconds(pid) - started[name], 3) for name, pid in pids.items()
        }
        self.pids = pids

    def figures(self, samples: int, river_per_1k: float) -> dict[str, Any]:
        """The readings per 1,000 of the ``samples`` learned in the window, their total and
        the total's ratio to River's ``river_per_1k``, as the bench reports them."""
        per_1k = per_thousand(self.seconds, samples)
        total = sum(per_1k.values())
        return {
            "cpu_pids": self.pids,
            "cpu_seconds": self.seconds,
            "cpu_per_1k": per_1k,
            "cpu_per_1k_total": total,
            "vs_river_cpu": total / river_per_1k if river_per_1k else float("nan"),
        }
