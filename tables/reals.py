"""What kafka-ps takes for a real number wherever it checks one it is given: a
hyper-parameter, an initialiser's scale, a model's output to score.

One definition, so that every check agrees on what ``True`` is: an ``int`` to Python, but
always a mistake where a number is wanted. The training-record decoder checks exact types
instead (``agents/records.py``): its input comes from a JSON or msgpack decoder, which
makes no subclasses, and it runs per value on the hot path.
"""

from __future__ import annotations

import math


def is_real(value: object) -> bool:
    """Whether ``value`` is an ``int`` or a ``float`` (a subclass too, such as numpy's
    ``float64``), and not a ``bool``."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_real(value: object) -> bool:
    """Whether ``value`` is a real number (:func:`is_real`) and neither NaN nor infinite."""
    return is_real(value) and math.isfinite(value)  # type: ignore[arg-type]
