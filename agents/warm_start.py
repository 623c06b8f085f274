"""Where a job's warm start comes from (``KPS_WARM_START``); :mod:`tables.warm_start` says
how the shards use it."""

from __future__ import annotations

import numpy as np

from kafka_ps.agents.model_export import read_model, read_npz
from kafka_ps.agents.settings import JobSettings
from kafka_ps.tables.warm_start import WarmStartError

TOPIC_PREFIX = "topic:"


def load_warm_start(settings: JobSettings) -> dict[bytes, np.ndarray]:
    """The values ``settings.warm_start`` names, a ``.npz`` file or ``topic:<name>`` (a
    model-updates topic, read to its current end); empty when there is no warm start.

    A source that holds nothing is an error, so that a mistyped topic or file does not
    silently start the job cold.
    """
    source = settings.warm_start
    if not source:
        return {}
    if source.startswith(TOPIC_PREFIX):
        values = read_model(settings.broker, source.removeprefix(TOPIC_PREFIX))
    else:
        values = read_npz(source)
    if not values:
        raise WarmStartError(f"warm start {source!r} holds no parameters")
    return values
