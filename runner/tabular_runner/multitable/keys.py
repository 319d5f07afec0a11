"""Primary keys of synthetic tables: fresh identifiers, and composite keys made unique.

A single-column primary key that is not also a foreign key gets fresh identifiers in the
real column's format (:func:`tabular_runner.pii.fake_values`): never a real value, unique.

A composite key whose other columns are foreign keys (weather's ``(origin, time_hour)``:
``origin`` comes from the parent airport) must be unique within each parent; the free part
(``time_hour``) is sampled by the table's model, so two rows of one airport can draw the
same hour. Such collisions are nudged to the next free step of the column's grid (the
smallest gap between distinct real values: one hour for ``time_hour``), in sorted order,
which keeps the column's distribution nearly unchanged. Text columns get a ``~n`` suffix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.pii import fake_values

Array = np.ndarray[Any, Any]
"""A numpy array (dtypes are checked at run time, not by mypy)."""


def fresh_identifiers(real: pd.Series, n: int, seed: int) -> pd.Series:
    """``n`` unique identifiers shaped like ``real``'s values, none of them real."""
    return fake_values("id", n, seed=seed, real=real.dropna())


def _grid_step(values: Array) -> float:
    distinct = np.unique(values[~np.isnan(values)])
    if len(distinct) < 2:
        return 1.0
    gaps = np.diff(distinct)
    positive = gaps[gaps > 0]
    return float(positive.min()) if len(positive) else 1.0


def _spread(
    values: Array,
    groups: Array,
    step: float,
) -> Array:
    """Within each group, move repeated values up to the next free multiple of ``step``."""
    out = values.copy()
    frame = pd.DataFrame({"v": values, "g": groups})
    for _, part in frame.groupby("g", sort=False, dropna=False):
        order = part.sort_values("v", kind="stable")
        current = order["v"].to_numpy(dtype=float)
        for i in range(1, len(current)):
            if not np.isnan(current[i]) and current[i] <= current[i - 1]:
                current[i] = current[i - 1] + step
        out[order.index.to_numpy()] = current
    return out


def _datetime_text_format(real: pd.Series) -> str:
    sample = [str(v) for v in real.dropna().head(20)]
    with_t = bool(sample) and all("T" in v for v in sample)
    if sample and all(v.endswith("Z") for v in sample):
        return "%Y-%m-%dT%H:%M:%SZ" if with_t else "%Y-%m-%d %H:%M:%SZ"
    if with_t:
        return "%Y-%m-%dT%H:%M:%S"
    return "%Y-%m-%d %H:%M:%S"


def make_unique(
    frame: pd.DataFrame,
    key: list[str],
    fixed: list[str],
    real: pd.DataFrame,
    datetime_columns: set[str],
) -> tuple[pd.DataFrame, int]:
    """Make ``key`` unique by nudging its one free column within each ``fixed`` group.

    Args:
        frame: Synthetic rows.
        key: The primary key's columns.
        fixed: Key columns assigned from parents (not changed).
        real: The real table (grid step and text format of the free column).
        datetime_columns: Columns the analysis found to be datetimes.

    Returns:
        The frame and the number of rows whose value was moved. With more than one free
        column (or none) nothing is moved; the caller drops what is still duplicated.
    """
    free = [c for c in key if c not in fixed]
    duplicated = frame.duplicated(subset=key, keep=False)
    if len(free) != 1 or not duplicated.any():
        return frame, 0
    column = free[0]
    groups = (
        frame[fixed].astype(str).agg("\x1f".join, axis=1).to_numpy(dtype=object)
        if fixed
        else np.zeros(len(frame), dtype=object)
    )
    values = frame[column]
    out = frame.copy()
    if column in datetime_columns or pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        seconds = (stamps.astype("int64") // 10**9).astype(float).where(stamps.notna())
        real_stamps = pd.to_datetime(real[column], utc=True, errors="coerce", format="ISO8601")
        real_seconds = (real_stamps.dropna().astype("int64") // 10**9).to_numpy(dtype=float)
        step = _grid_step(real_seconds)
        # Snap to the grid first: hourly data sampled as 06:00:17 is not a new hour.
        snapped = np.round(seconds.to_numpy(dtype=float) / step) * step
        moved = _spread(snapped, groups, step)
        new = pd.to_datetime(pd.Series(moved), unit="s", utc=True)
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            out[column] = new.dt.tz_localize(None) if values.dt.tz is None else new
        else:
            out[column] = new.dt.strftime(_datetime_text_format(real[column])).where(
                pd.Series(moved).notna(), None
            )
        changed = int((moved != seconds.to_numpy(dtype=float)).sum())
    elif pd.api.types.is_numeric_dtype(values.dtype):
        numeric = values.to_numpy(dtype=float)
        step = _grid_step(pd.to_numeric(real[column], errors="coerce").to_numpy(dtype=float))
        moved = _spread(numeric, groups, step)
        out[column] = pd.Series(moved).astype(values.dtype) if not np.isnan(moved).any() else moved
        changed = int((moved != numeric).sum())
    else:
        rank = frame.groupby([*fixed, column], dropna=False).cumcount().to_numpy()
        text = [str(v) for v in values]
        out[column] = [t if r == 0 else f"{t}~{r}" for t, r in zip(text, rank, strict=True)]
        changed = int((rank > 0).sum())
    return out, changed
