"""A child process that ends with the process that started it, so none is orphaned.

:class:`~app.process.JobProcess` puts its own pid in the child's environment
(:func:`parent_env`); the child, first thing in :func:`~app.process.run_process`, asks Linux
to SIGTERM it when that parent dies (``prctl(PR_SET_PDEATHSIG)``), then exits at once if
the parent died before it asked (:func:`die_with_parent`). So a ``kps train`` killed even
by SIGKILL leaves no learning or server process behind, and each one stops as on any
SIGTERM. Only JobProcess's children opt in: a ``kps serve`` started from a shell must
outlive the shell.

The child asks for itself because the parent cannot ask for it: Popen's ``preexec_fn``
is unsafe in a process that runs threads, as ``kps train`` does. Linux sends the signal
when the *thread* that started the child ends, so a JobProcess is started from a thread
that outlives it (every caller starts them from its main thread).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

#: The child's environment variable that names the pid of the parent it dies with.
PARENT_VARIABLE = "KPS_DIE_WITH_PARENT"

#: prctl's option that sets the signal a process receives when its parent dies.
PR_SET_PDEATHSIG = 1


def parent_env() -> dict[str, str]:
    """The environment entry that makes a child of this process die with it."""
    return {PARENT_VARIABLE: str(os.getpid())}


def die_with_parent() -> None:
    """In a child started with :func:`parent_env`: SIGTERM this process when its parent
    dies, or exit now if it already has. Without the variable, do nothing.

    The variable is removed from this process's environment, so that the processes it
    starts itself do not take it for their own.
    """
    parent = os.environ.pop(PARENT_VARIABLE, None)
    if parent is None:
        return
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != int(parent):
        raise SystemExit(f"the process that started this one (pid {parent}) has exited")
