"""Small numeric helpers shared by the built-in models."""

from __future__ import annotations

import math

import numpy as np

#: Margins are clipped to this before the sigmoid, so that exp() cannot overflow.
MAX_MARGIN = 35.0


def sigmoid(margin: np.ndarray) -> np.ndarray:
    """The logistic function, element-wise."""
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(margin, -MAX_MARGIN, MAX_MARGIN)))
    return result


def logistic(margin: float) -> float:
    """The logistic function of one number; cheaper than :func:`sigmoid` per record."""
    return 1.0 / (1.0 + math.exp(-min(max(margin, -MAX_MARGIN), MAX_MARGIN)))
