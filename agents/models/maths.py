"""Small numeric helpers shared by the built-in models."""

from __future__ import annotations

import math

#: Margins are clipped to this before the sigmoid, so that exp() cannot overflow.
MAX_MARGIN = 35.0


def logistic(margin: float) -> float:
    """The logistic function of one number, its margin clipped to :data:`MAX_MARGIN`."""
    return 1.0 / (1.0 + math.exp(-min(max(margin, -MAX_MARGIN), MAX_MARGIN)))
