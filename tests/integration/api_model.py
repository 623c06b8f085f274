"""A model written only against docs/api.md: online linear regression with AdaGrad on a
dense feature vector. The integration tests train it through ``kafka_ps.run`` and
``kps train --model tests.integration.api_model:make``."""

from __future__ import annotations

import numpy as np

from kafka_ps import AdaGrad, Logic, ParamSpec


class AdaGradRegression(Logic):
    """``y ≈ w · x + b``; the shard takes AdaGrad steps with the summed gradients."""

    task = "regression"

    def __init__(self, dim: int, lr: float = 0.5, journal: str | None = None) -> None:
        self.dim = dim
        #: A file each hook appends its name to, so a test sees the hooks of a process.
        self.journal = journal
        self.params = [
            ParamSpec("w", (dim,), AdaGrad(lr=lr)),
            ParamSpec("b", (1,), AdaGrad(lr=lr)),
        ]
        self.opened = self.ended = self.closed = False

    def open(self) -> None:
        self.opened = True
        self._note("open")

    def end_of_input(self) -> None:
        self.ended = True
        self._note("end_of_input")

    def close(self) -> None:
        self.closed = True
        self._note("close")

    def _note(self, hook: str) -> None:
        if self.journal:
            with open(self.journal, "a") as journal:
                journal.write(hook + "\n")

    async def learn(self, records, ps):
        pulled = await ps.pull_all({"w": 0, "b": 0})
        w, b = pulled["w"], pulled["b"][0]
        grad_w, grad_b = np.zeros(self.dim), 0.0
        for record in records:
            y_hat = float(w @ record.dense + b)
            ps.output(record, y_hat)
            if record.label is not None:
                error = y_hat - record.label
                grad_w += error * record.dense
                grad_b += error
        ps.push("w", 0, grad_w / len(records))
        ps.push("b", 0, [grad_b / len(records)])


def make(dim: int = 5, lr: float = 0.5, journal: str | None = None) -> AdaGradRegression:
    """The factory ``kps train --model tests.integration.api_model:make`` calls."""
    return AdaGradRegression(dim, lr, journal)


def synthetic(n: int, dim: int = 5, seed: int = 0) -> tuple[list[dict], np.ndarray, float]:
    """Records ``{"dense": x, "label": w·x + b + noise}``, the true ``w`` and ``b``."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=dim), 0.7
    x = rng.normal(size=(n, dim))
    y = x @ w + b + rng.normal(0.0, 0.05, n)
    records = [{"dense": x[t].tolist(), "label": float(y[t]), "key": f"r{t}"} for t in range(n)]
    return records, w, b
