"""Waiting with a time limit: the one helper every polling loop in kafka-ps uses.

A :class:`Deadline` is a point on the monotonic clock; :func:`wait_until` polls a condition
until it holds or the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    """``seconds`` from now, on the monotonic clock.

    Parameters
    ----------
    seconds
        How long from now until the deadline passes.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds until the deadline, 0 once it has passed."""
        return max(self.end - time.monotonic(), 0.0)

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, but not past the deadline."""
        time.sleep(min(seconds, self.left()))


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something true, and
    return that; raise :class:`TimeoutError` with ``message`` (or what it returns, for the
    latest state) once ``timeout`` seconds have passed. ``condition`` is called at least once,
    and once more at the deadline."""
    deadline = Deadline(timeout)
    while True:
        result = condition()
        if result:
            return result
        if deadline.passed():
            text = message() if callable(message) else message
            raise TimeoutError(text or f"not done after {timeout:g}s")
        deadline.sleep(interval)
