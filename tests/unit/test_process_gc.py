"""A job process tunes Python's cyclic garbage collector before it starts its app."""

from __future__ import annotations

import subprocess
import sys

#: In a fresh interpreter: the collector's settings are per process.
SCRIPT = """
import gc
from kafka_ps.app.process import GC_THRESHOLDS, collect_rarely

before = gc.get_freeze_count()
collect_rarely()
garbage = []
garbage.append(garbage)  # a cycle made after start-up
del garbage
print(gc.get_threshold() == GC_THRESHOLDS, gc.get_freeze_count() > before, gc.collect() >= 1)
"""


def test_start_up_objects_are_frozen_and_later_cycles_still_collected() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "True", "True"], done.stdout + done.stderr
