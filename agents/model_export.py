"""Models as ``.npz`` files, one array per parameter key: from the model-updates topic, a
warm start's values, or both."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kafka_ps.agents.client import read_latest
from kafka_ps.tables.clocks import is_reserved
from kafka_ps.tables.codec import decode_record
from kafka_ps.tables.pages import params_in_table


def read_model(bootstrap: str, topic: str, progress: str | None = None) -> dict[bytes, np.ndarray]:
    """The latest value of every parameter published to ``topic`` (a model-updates
    topic; its ``__marks__`` records are left out); ``progress`` names a progress bar."""
    return {
        key: np.array(decode_record(value).value)
        for key, value in read_latest(bootstrap, topic, progress=progress).items()
        if value is not None and not is_reserved(key)
    }


def read_table(bootstrap: str, changelog: str) -> dict[bytes, np.ndarray]:
    """Every parameter's slots ``(n_slots, *shape)`` as a shard table's changelog holds them."""
    return params_in_table(read_latest(bootstrap, changelog))


def read_npz(path: str | Path) -> dict[bytes, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name.encode(): npz[name] for name in npz.files}


def write_npz(model: Mapping[bytes, np.ndarray], path: str | Path) -> None:
    """Write ``path`` whole or not at all: a job warm-starting from it, or a job stopped
    while exporting over the file it started from, never sees half a model."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as file:
        np.savez(file, **{key.decode(): value for key, value in sorted(model.items())})
    partial.replace(path)


def export_npz(
    bootstrap: str, topic: str, path: str | Path, base: Mapping[bytes, np.ndarray] | None = None
) -> int:
    """Write the model published to ``topic`` over ``base`` (a warm start's values: the
    topic carries only the parameters its job changed); return the number of parameters."""
    model = {**(base or {}), **read_model(bootstrap, topic, f"reading {topic}")}
    write_npz(model, path)
    return len(model)
