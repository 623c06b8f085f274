"""The input topic's schema: which of its features are numeric.

``kps produce --file`` detects (or is told) the numeric columns of a file and writes their
names to the compacted topic ``<input topic>-schema``. A worker or server process whose
model takes a ``numeric`` hyper-parameter and whose job does not set one
(``KPS_MODEL_PARAMS``) reads it from there at start, so the model treats those features
as numbers instead of hashing every distinct value as a category. A ``numeric`` the job
sets itself wins.
"""

from __future__ import annotations

import importlib
import inspect
import json

from kafka_ps.agents.client import produce, read_latest
from kafka_ps.agents.settings import JobSettings
from kafka_ps.agents.topics import TopicSpec, ensure_topics

_NUMERIC = b"numeric"


def schema_topic(input_topic: str) -> str:
    """The compacted topic that holds ``input_topic``'s schema."""
    return f"{input_topic}-schema"


def write_numeric(bootstrap: str, input_topic: str, numeric: list[str]) -> None:
    """Record ``numeric`` as the numeric features of ``input_topic``."""
    topic = schema_topic(input_topic)
    ensure_topics(bootstrap, [TopicSpec(topic, 1, compacted=True)])
    produce(bootstrap, topic, [(_NUMERIC, json.dumps(sorted(numeric)).encode(), 0)])


def read_numeric(bootstrap: str, input_topic: str) -> list[str] | None:
    """The numeric features recorded for ``input_topic``, or None if none were."""
    value = read_latest(bootstrap, schema_topic(input_topic), timeout=30).get(_NUMERIC)
    return None if value is None else [str(name) for name in json.loads(value)]


def _accepts_numeric(model: str) -> bool:
    if ":" in model:
        module, _, attribute = model.partition(":")
        factory = getattr(importlib.import_module(module), attribute, None)
    else:
        from kafka_ps.agents.models import MODELS

        factory = MODELS.get(model)
    return factory is not None and "numeric" in inspect.signature(factory).parameters


def with_input_schema(settings: JobSettings) -> JobSettings:
    """``settings`` with the input topic's numeric features in the model's parameters,
    unless the job sets ``numeric`` itself or its model takes none."""
    if "numeric" in settings.model_params or not _accepts_numeric(settings.model):
        return settings
    numeric = read_numeric(settings.broker, settings.input_topic)
    if not numeric:
        return settings
    params = {**settings.model_params, "numeric": numeric}
    return settings.model_copy(update={"model_params": params})
