"""Stops an orchestrator can rely on: every process ends within a bound after SIGTERM.

A container engine sends SIGTERM and, 10 s later, SIGKILL. A Faust worker stopping with
its broker gone waits for its producer buffer to flush, which never happens. So a SIGTERM
(or SIGINT) also arms a watchdog: if the process is still alive ``stop_timeout`` seconds
later, it SIGKILLs its own child processes and exits with code 143 (128 + SIGTERM). That is
safe: everything kafka-ps keeps is exactly-once even under SIGKILL (docs/architecture.md);
a forced stop only skips what a clean one adds, such as the last publish or export.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

from kafka_ps.agents.faust_compat import SignalledWorker

#: Exit code of a process that its watchdog ended.
FORCED_EXIT = 128 + signal.SIGTERM

_armed = threading.Lock()


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _force_exit() -> None:
    for child in _children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    os._exit(FORCED_EXIT)


def exit_within(seconds: float) -> None:
    """Make this process end at most ``seconds`` from now, however its stop goes; arming
    it again does not move the deadline."""
    if not _armed.acquire(blocking=False):
        return
    timer = threading.Timer(seconds, _force_exit)
    timer.daemon = True
    timer.start()


def bound_sigterm(seconds: float) -> None:
    """Arm :func:`exit_within` on SIGTERM, then run the handler installed before this call."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        exit_within(seconds)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


class BoundedWorker(SignalledWorker):
    """A Faust worker that ends within ``stop_timeout`` seconds of SIGTERM or SIGINT.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`faust.Worker`.
    stop_timeout : float
        Seconds from the signal to a forced exit.
    """

    #: The last loop turns, which let callbacks still queued run. mode waits a whole second
    #: here, after every service has stopped and every future is gathered: a second added to
    #: each process's stop, and so to the end of every ``kps train`` (its processes stop one
    #: after the other). A few loop turns are all the queued callbacks need.
    sentinel_seconds = 0.05

    def __init__(self, *args: Any, stop_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_timeout = stop_timeout

    def on_stop_signal(self) -> None:
        exit_within(self.stop_timeout)
