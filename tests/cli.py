"""Running the ``kps`` command line in a child process, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_kps(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """``kps *args`` with only the ``KPS_*`` variables given in ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KPS_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "kafka_ps.app.cli", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
