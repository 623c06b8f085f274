"""Progressive validation metrics: every prediction is scored before its record is learned."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kafka_ps.agents.api import Task
from kafka_ps.tables.reals import is_real

EPS = 1e-15


class Scored(Protocol):
    """A prediction as the metrics read it: an :class:`~agents.api.Prediction`, or a row of
    the predictions topic (``app.train.PredictedRecord``)."""

    @property
    def value(self) -> Any: ...

    @property
    def label(self) -> float | None: ...


def losses(task: Task, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each prediction's loss: for classification the logloss of ``values`` as
    probabilities clipped to [:data:`EPS`, 1 - :data:`EPS`] (a sure miss costs about 34.5,
    not infinity); for regression the squared error, whose mean's root is the RMSE."""
    if task == "classification":
        q = np.clip(values, EPS, 1 - EPS)
        return -(labels * np.log(q) + (1 - labels) * np.log(1 - q))
    return (values - labels) ** 2


@dataclass
class ProgressiveMetrics:
    """Running totals for the whole stream plus the current window.

    Only predictions with a label and a real number as value (:func:`~tables.reals.is_real`;
    a :class:`~agents.logic.Logic` may output any JSON value) are scored.

    Parameters
    ----------
    task
        ``classification`` (logloss and accuracy) or ``regression`` (RMSE).
    records, loss_sum, correct
        Labelled records predicted, their summed loss and, for classification, how many
        were right; all 0 for a new stream.
    window_records, window_loss
        The same for the current window.
    samples_per_s
        Samples/s of the last window that ended (NaN before the first).
    started, window_started
        When the stream and the current window started (``time.monotonic()``).
    """

    task: Task
    records: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    window_records: int = 0
    window_loss: float = 0.0
    samples_per_s: float = math.nan
    started: float = field(default_factory=time.monotonic)
    window_started: float = field(default_factory=time.monotonic)

    def add_all(self, predictions: Iterable[Scored]) -> None:
        """Score a mini-batch's predictions (those with a label and a numeric value), at
        numpy's speed: the sums agree with adding them one by one up to rounding."""
        scored = [
            (p.label, p.value) for p in predictions if p.label is not None and is_real(p.value)
        ]
        if not scored:
            return
        y, p = np.array(scored, dtype=np.float64).T
        loss = float(losses(self.task, y, p).sum())
        if self.task == "classification":
            self.correct += int(((p >= 0.5) == (y >= 0.5)).sum())
        self.records += len(scored)
        self.loss_sum += loss
        self.window_records += len(scored)
        self.window_loss += loss

    @property
    def loss(self) -> float:
        """Progressive logloss, or RMSE for regression."""
        if not self.records:
            return math.nan
        mean = self.loss_sum / self.records
        return mean if self.task == "classification" else math.sqrt(mean)

    @property
    def accuracy(self) -> float | None:
        """Progressive accuracy (0 before any record); None for regression."""
        if self.task != "classification":
            return None
        return self.correct / max(self.records, 1)

    def report(self, worker: int) -> dict[str, Any]:
        """A metrics-topic record for the window just ended; starts the next window."""
        now = time.monotonic()
        name = "logloss" if self.task == "classification" else "rmse"
        window_mean = self.window_loss / max(self.window_records, 1)
        self.samples_per_s = self.window_records / max(now - self.window_started, 1e-9)
        report: dict[str, Any] = {
            "worker": worker,
            "records": self.records,
            name: self.loss,
            f"window_{name}": window_mean if name == "logloss" else math.sqrt(window_mean),
            "samples_per_s": self.samples_per_s,
        }
        if self.accuracy is not None:
            report["accuracy"] = self.accuracy
        self.window_records, self.window_loss, self.window_started = 0, 0.0, now
        return report
