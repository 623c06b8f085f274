"""No unused code in the packages and the benchmarks (issue 16).

``vulture`` reads its paths, and the names and decorators it must take for used (each with
how it is used), from ``[tool.vulture]`` in pyproject.toml. A finding is either code to
delete or, if something outside Python's own references uses it, a name to add there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_no_code_is_unused() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "vulture"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 0, f"vulture:\n{found.stdout}{found.stderr}"
