"""Training records from files: JSON lines and CSV, for ``kps produce --file``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _number_or_text(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """One record object per line, in the training-record format (docs/formats.md)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON: {error}") from None


def read_csv(path: Path, label: str = "label", key: str | None = None) -> Iterator[dict[str, Any]]:
    """A header row, then one record per row: ``label`` is the label, every other column
    (but ``key``) a feature; numeric cells become numbers, others categorical strings."""
    with path.open(encoding="utf-8", newline="") as rows:
        reader = csv.DictReader(rows)
        if reader.fieldnames is None or label not in reader.fieldnames:
            raise ValueError(f"{path}: no {label!r} column in the header")
        for row in reader:
            cell = row.pop(label)
            record: dict[str, Any] = {"label": float(cell) if cell not in ("", None) else None}
            if key is not None:
                record["key"] = row.pop(key)
            record["features"] = {
                name: _number_or_text(value)
                for name, value in row.items()
                if value not in ("", None)
            }
            yield record


def read_file(path: Path, label: str = "label", key: str | None = None) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        return read_csv(path, label, key)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    raise ValueError(f"{path}: expected a .jsonl or .csv file")
