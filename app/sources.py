"""Training records from ordinary files, for ``kps produce --file``.

Formats, told by the file's suffix:

- ``.csv`` / ``.tsv``: a header row, then one record per row. A first column without a
  name (pandas' ``to_csv`` writes its index so) is dropped, as is a column named by
  ``index_col``.
- ``.jsonl`` / ``.ndjson`` / ``.json``: one object per line, either already a training
  record (``features``/``dense``/``label``/``key``/``ts``, see docs/formats.md) or a flat
  row of columns, which is read like a CSV row.
- ``.parquet`` / ``.pq`` (needs ``pyarrow``): one record per row; the index is dropped.

In a table, the ``label`` column is the label, ``key`` the record key, every other column
a feature. A column is numeric when every value in it is a finite number (or, in text, reads
as one): its values become numbers, which the model treats as numeric features; all other
columns are categorical and their values strings. ``numeric`` given explicitly wins over that
detection: exactly those columns are numeric, and a cell in them that is not a number is a
bad row. Empty cells are missing features.

A file is read whole and every record validated before any is sent. A bad row raises
:class:`InputError` naming ``file:line`` and the reason, or with ``skip_bad`` is left out
and counted.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka_ps.agents.records import FIELDS, BadRecordError, record_from_object
from kafka_ps.tables.errors import KafkaPsError


@dataclass(frozen=True)
class Bad:
    """A row already found bad while reading.

    Parameters
    ----------
    reason
        ``file:line: reason``.
    """

    reason: str


Row = tuple[str, "dict[str, Any] | Bad"]
"""(where the row is, as ``file:line`` or ``file:row n``; column name -> value, or Bad)."""

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class InputError(KafkaPsError, ValueError):
    """A file, or a row of it, that cannot become training records; the message is one line."""


@dataclass
class FileRecords:
    """The validated records of one file, ready for :func:`app.train.training_records`.

    Parameters
    ----------
    records : list of dict
        Keyword arguments of :func:`agents.records.encode_record`, in file order.
    numeric : list of str
        The feature columns whose values are numbers (detected or given).
    skipped : list of str
        ``file:line: reason`` of every bad row left out (with ``skip_bad``).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_file(
    path: Path,
    label: str = "label",
    key: str | None = None,
    *,
    index_col: str | None = None,
    numeric: Sequence[str] | None = None,
    skip_bad: bool = False,
) -> FileRecords:
    """Read and validate every record of ``path``; raise :class:`InputError` on bad input."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown format; expected one of {', '.join(sorted(SUFFIXES))}")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if kind == "csv":
        columns, rows = _csv_rows(path, index_col)
    elif kind == "parquet":
        columns, rows = _parquet_rows(path, index_col)
    else:
        columns, rows, records = _jsonl_rows(path)
        if records is not None:
            return _validated(records, skip_bad, [])
    return _table_records(path, columns, rows, label, key, numeric, skip_bad)


# -- readers ------------------------------------------------------------------------


def _csv_rows(path: Path, index_col: str | None) -> tuple[list[str], list[Row]]:
    with path.open(encoding="utf-8", newline="") as handle:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(handle, dialect)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file, expected a header row") from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise InputError(f"{path}:1: {error}") from None
        if header and header[0] == "" and index_col is None:
            index_col = ""  # pandas' to_csv index: an unnamed first column
        rows: list[Row] = []
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as error:
                raise InputError(f"{path}:{reader.line_num}: {error}") from None
            where = f"{path}:{reader.line_num}"
            if not cells:
                continue
            if len(cells) != len(header):
                reason = f"{where}: {len(cells)} fields, the header has {len(header)}"
                rows.append((where, Bad(reason)))
                continue
            rows.append((where, {name: cell for name, cell in zip(header, cells, strict=True)}))
    return _drop_index(path, header, rows, index_col)


def _parquet_rows(path: Path, index_col: str | None) -> tuple[list[str], list[Row]]:
    try:
        import pandas as pd
    except ImportError:  # pandas comes with the data extra
        raise InputError(
            "reading Parquet needs pandas and pyarrow: the kafka-ps[data] extra"
        ) from None
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise InputError("reading Parquet needs the kafka-ps[data] extra") from None
    except Exception as error:
        raise InputError(f"{path}: not a readable Parquet file: {error}") from None
    columns = [str(name) for name in frame.columns]
    rows = [
        (f"{path}:row {number}", dict(zip(columns, values, strict=True)))
        for number, values in enumerate(frame.itertuples(index=False, name=None), 1)
    ]
    return _drop_index(path, columns, rows, index_col)


def _jsonl_rows(path: Path) -> tuple[list[str], list[Row], list[Row] | None]:
    """Flat rows (columns, rows, None), or training records as they are ([], [], records)."""
    objects: list[Row] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                obj = Bad(f"{where}: not JSON: {error}")
            objects.append((where, obj))
    good = [obj for _, obj in objects if isinstance(obj, dict)]
    if good and all(("features" in obj or "dense" in obj) and obj.keys() <= FIELDS for obj in good):
        return [], [], objects
    columns = list(dict.fromkeys(name for obj in good for name in obj))
    rows: list[Row] = [
        (where, obj if isinstance(obj, dict | Bad) else Bad(f"{where}: not an object"))
        for where, obj in objects
    ]
    return columns, rows, None


def _drop_index(
    path: Path, columns: list[str], rows: list[Row], index_col: str | None
) -> tuple[list[str], list[Row]]:
    if index_col is None:
        return columns, rows
    if index_col not in columns:
        raise InputError(f"{path}: no index column {index_col!r} in {columns}")
    for _, row in rows:
        if isinstance(row, dict):
            row.pop(index_col, None)
    return [name for name in columns if name != index_col], rows


# -- tables to records ----------------------------------------------------------------


def _missing(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _as_number(value: object) -> float | None:
    """The finite number ``value`` is or reads as, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or type(value).__module__ == "numpy":
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def detect_numeric(columns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """The columns with at least one value, every value a finite number."""
    numeric = []
    for name in columns:
        values = [
            row[name]
            for _, row in rows
            if isinstance(row, dict) and name in row and not _missing(row[name])
        ]
        if values and all(_as_number(value) is not None for value in values):
            numeric.append(name)
    return numeric


def _table_records(
    path: Path,
    columns: list[str],
    rows: list[Row],
    label: str,
    key: str | None,
    numeric: Sequence[str] | None,
    skip_bad: bool,
) -> FileRecords:
    for role, name in (("label", label), ("key", key)):
        if name is not None and name not in columns:
            raise InputError(f"{path}: no {role} column {name!r}; columns: {columns}")
    features = [name for name in columns if name not in (label, key)]
    try:
        record_from_object({"features": dict.fromkeys(features, 0.0)})
    except BadRecordError as error:
        raise InputError(f"{path}: header: {error}") from None
    if numeric is None:
        numeric = detect_numeric(features, rows)
    else:
        unknown = [name for name in numeric if name not in features]
        if unknown:
            raise InputError(f"{path}: --numeric names no feature column: {unknown}")
    numeric_set = frozenset(numeric)
    records: list[Row] = []
    for where, row in rows:
        if isinstance(row, Bad):
            records.append((where, row))
            continue
        try:
            records.append((where, _record(row, label, key, features, numeric_set)))
        except ValueError as error:
            records.append((where, Bad(f"{where}: {error}")))
    return _validated(records, skip_bad, list(numeric))


def _record(
    row: dict[str, Any], label: str, key: str | None, features: list[str], numeric: frozenset[str]
) -> dict[str, Any]:
    record: dict[str, Any] = {"label": None}
    cell = row.get(label)
    if not _missing(cell):
        record["label"] = _as_number(cell)
        if record["label"] is None:
            raise ValueError(f"label {cell!r} is not a finite number")
    if key is not None and not _missing(row.get(key)):
        record["key"] = str(row[key])
    values: dict[str, float | str] = {}
    for name in features:
        value = row.get(name)
        if _missing(value):
            continue
        if name in numeric:
            number = _as_number(value)
            if number is None:
                raise ValueError(f"numeric column {name!r}: {value!r} is not a finite number")
            values[name] = number
        else:
            values[name] = _text(value)
    record["features"] = values
    return record


def _text(value: object) -> str:
    """A categorical value as text; a whole float (a pandas int column with gaps) without
    its ``.0``, so that 3 and 3.0 are the same category."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _validated(rows: list[Row], skip_bad: bool, numeric: list[str]) -> FileRecords:
    """Check every record as a worker would; a bad one raises, or is counted with skip_bad."""
    result = FileRecords(numeric=numeric)
    for where, record in rows:
        reason = record.reason if isinstance(record, Bad) else None
        if reason is None:
            try:
                record_from_object(record)
            except BadRecordError as error:
                reason = f"{where}: {error}"
        if reason is None:
            result.records.append(record)
        elif skip_bad:
            result.skipped.append(reason)
        else:
            raise InputError(reason)
    return result
