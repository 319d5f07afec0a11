"""A numeric order column as dates for TabularARGN's relative encoding (ordered histories).

The argn engine learns a numeric order column (ChickWeight's ``Time``) through the engine's
``TABULAR_DATETIME_RELATIVE`` encoding: the values become days from an origin and back.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tabular_runner.generators.argn_adapter import OrderScale

pytestmark = pytest.mark.unit


def test_order_values_round_trip_through_dates() -> None:
    # Setup: days of a study, fractional and negative values included
    values = pd.Series([-3.0, 0.0, 2.5, 21.0])

    # Run
    scale = OrderScale.of(values)
    dates = scale.to_dates(values)

    # Assert: one day per unit from the lowest value, and back exactly
    assert scale.unit == 1.0
    assert dates.iloc[0] == pd.Timestamp("2000-01-01")
    assert dates.iloc[2] == pd.Timestamp("2000-01-06 12:00")
    assert scale.to_numbers(dates).tolist() == values.tolist()


def test_a_wide_span_is_scaled_into_dates_pandas_can_hold() -> None:
    # Setup: Unix seconds over thirty years (about a billion units)
    values = pd.Series([1.0e9, 1.5e9, 1.9e9])

    # Run
    scale = OrderScale.of(values)
    back = scale.to_numbers(scale.to_dates(values))

    # Assert: no overflow; values come back within a second
    assert scale.unit > 1.0
    assert (back - values).abs().max() < 1.0
