"""The one helper for waiting with a time limit."""

from __future__ import annotations

import time

import pytest

from kafka_ps.agents.deadline import Deadline, wait_until


def test_a_deadline_counts_down_and_passes() -> None:
    deadline = Deadline(0.05)
    assert 0 < deadline.left() <= 0.05 and not deadline.passed()
    deadline.sleep(10)  # never past the deadline
    assert deadline.passed() and deadline.left() == 0


def test_wait_until_returns_the_first_true_result() -> None:
    calls = iter([0, None, "done"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.001) == "done"


def test_wait_until_times_out_with_the_latest_message() -> None:
    state = {"n": 0}

    def check() -> bool:
        state["n"] += 1
        return False

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"still \d+ behind"):
        wait_until(check, timeout=0.05, interval=0.01, message=lambda: f"still {state['n']} behind")
    assert time.monotonic() - started < 1 and state["n"] >= 2
