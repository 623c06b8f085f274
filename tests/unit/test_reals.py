"""One predicate for a real number, shared by every check of a number kafka-ps is given."""

from __future__ import annotations

import math

import numpy as np

from kafka_ps.tables.reals import is_finite_real, is_real


def test_a_real_number_is_an_int_or_a_float_and_never_a_bool() -> None:
    assert all(is_real(v) for v in (0, -3, 2.5, math.inf, math.nan, np.float64(1.5)))
    assert not any(is_real(v) for v in (True, False, "1", None, 1j, [1.0]))
    assert is_finite_real(2.5) and is_finite_real(7)
    assert not any(is_finite_real(v) for v in (math.inf, -math.inf, math.nan, True, "1"))
