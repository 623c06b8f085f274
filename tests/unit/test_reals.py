"""One predicate for a real number, shared by every check of a number kafka-ps is given."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kafka_ps.agents.models.hyper import finite
from kafka_ps.tables.init import Constant, Normal
from kafka_ps.tables.reals import is_finite_real, is_real


def test_a_real_number_is_an_int_or_a_float_and_never_a_bool() -> None:
    assert all(is_real(v) for v in (0, -3, 2.5, math.inf, math.nan, np.float64(1.5)))
    assert not any(is_real(v) for v in (True, False, "1", None, 1j, [1.0]))
    assert is_finite_real(2.5) and is_finite_real(7)
    assert not any(is_finite_real(v) for v in (math.inf, -math.inf, math.nan, True, "1"))


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_refused_where_a_number_is_wanted(value: bool) -> None:
    with pytest.raises(ValueError):
        finite("lr", value)
    with pytest.raises(ValueError):
        Constant(value)
    with pytest.raises(ValueError):
        Normal(std=value)
