"""The compacted model-updates topic as a ``.npz`` file: one array per parameter key."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.client import read_latest
from tables.codec import decode_record


def read_model(bootstrap: str, topic: str) -> dict[bytes, np.ndarray]:
    """The latest value of every parameter published to ``topic``."""
    return {
        key: np.array(decode_record(value).value)
        for key, value in read_latest(bootstrap, topic).items()
    }


def export_npz(bootstrap: str, topic: str, path: str | Path) -> int:
    model = read_model(bootstrap, topic)
    np.savez(path, **{key.decode(): value for key, value in sorted(model.items())})
    return len(model)
