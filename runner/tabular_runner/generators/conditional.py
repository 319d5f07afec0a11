"""Conditional sampling shared by the adapters: rows drawn to fit given cells.

A *given* frame holds, per output row, the cells the caller fixes (a seed row, a row with
holes, a rebalanced category); the adapter generates the other columns of that row to fit
them. Two ways, depending on what the generator can do:

* :func:`copula_given`: GaussianCopula conditions exactly. In the copula's latent normal
  space the unknown columns of a row given the known ones are normal with mean
  ``Σ_uk Σ_kk⁻¹ z_k`` and covariance ``Σ_uu − Σ_uk Σ_kk⁻¹ Σ_ku`` (the formula SDV's
  conditional sampling uses), computed here for all rows that share a pattern of known
  columns at once. SDV's own ``sample_remaining_columns`` solves it once per distinct
  row: 15 rows/s on Adult when every row differs (``make bench-controls``; ours 670), too slow
  to impute thousands of rows.
* :func:`fill_by_rejection`: draw unconditioned rows and keep, for every distinct
  combination of given values, as many matching rows as the given frame asks for. Exact for
  categorical given columns (the way SDV conditions CTGAN and TVAE); a combination the
  model hardly ever generates fails with a message naming it.

Both return one row per given row, in the given frame's order, with the given cells as
given (an empty given cell stays empty unless its column is in ``fill``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.errors import UserInputError

MAX_REJECTION_DRAWS = 50
"""Most unconditioned batches :func:`fill_by_rejection` draws before giving up."""

MIN_BATCH = 1000


def restore_given(out: pd.DataFrame, given: pd.DataFrame, fill: Sequence[str] = ()) -> pd.DataFrame:
    """Put the given cells back exactly (generated values keep only where a cell was filled)."""
    out = out.reset_index(drop=True).copy()
    for column in given.columns:
        values = given[column].reset_index(drop=True)
        keep = values.notna() | (column not in fill)
        if not keep.any():
            continue
        column_values = out[column].astype(object) if column in out else None
        if column_values is None:
            out[column] = values
            continue
        column_values[keep] = values[keep].astype(object)
        try:
            out[column] = column_values.astype(out[column].dtype)
        except (TypeError, ValueError):
            out[column] = column_values
    return out


def fill_by_rejection(
    draw: Callable[[int, int], pd.DataFrame],
    given: pd.DataFrame,
    *,
    seed: int,
    generator: str,
    max_draws: int = MAX_REJECTION_DRAWS,
) -> pd.DataFrame:
    """One drawn row per given row whose values match the given (categorical) cells.

    Args:
        draw: ``draw(n, seed)`` returns ``n`` unconditioned rows of the model.
        given: The cells to match; an empty cell matches an empty value.
        seed: First draw's seed (each further draw adds one).
        generator: Name used in the error message.
        max_draws: Most batches drawn.

    Raises:
        UserInputError: when a combination of given values is not drawn often enough.
    """
    columns = list(given.columns)
    keys = _row_keys(given, columns)
    wanted: dict[tuple[Any, ...], list[int]] = {}
    for position, key in enumerate(keys):
        wanted.setdefault(key, []).append(position)
    placed: dict[int, Any] = {}
    batch = max(MIN_BATCH, 2 * len(given))
    for attempt in range(max_draws):
        if not wanted:
            break
        rows = draw(batch, seed + attempt).reset_index(drop=True)
        for key, row_index in _group_rows(rows, columns).items():
            positions = wanted.get(key)
            if not positions:
                continue
            take = min(len(positions), len(row_index))
            for position, index in zip(positions[:take], row_index[:take], strict=True):
                placed[position] = rows.loc[index]
            del positions[:take]
            if not positions:
                del wanted[key]
    if wanted:
        key, positions = max(wanted.items(), key=lambda item: len(item[1]))
        shown = ", ".join(f"{c}={v!r}" for c, v in zip(columns, key, strict=True))
        raise UserInputError(
            "spec.generation",
            f"{generator} drew too few rows with {shown} ({len(positions)} still missing after "
            f"{max_draws} batches of {batch}): it conditions by drawing rows and keeping "
            "those that match, and rarely generates this combination",
            "ask for combinations the data holds often enough, or use gaussian_copula or "
            "tabularargn, which condition directly",
        )
    frame = pd.DataFrame([placed[i] for i in range(len(given))]).reset_index(drop=True)
    return restore_given(frame, given)


def present_patterns(given: pd.DataFrame) -> list[tuple[list[str], list[int]]]:
    """Rows of ``given`` grouped by which cells they give: ``[(columns, row positions)]``."""
    groups: dict[tuple[bool, ...], list[int]] = {}
    present = given.notna().to_numpy()
    for position, row in enumerate(present):
        groups.setdefault(tuple(bool(v) for v in row), []).append(position)
    columns = [str(c) for c in given.columns]
    return [
        ([c for c, here in zip(columns, pattern, strict=True) if here], rows)
        for pattern, rows in groups.items()
    ]


def _row_keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    return [
        tuple(None if _missing(v) else plain_value(v) for v in row)
        for row in frame[columns].itertuples(index=False, name=None)
    ]


def _group_rows(frame: pd.DataFrame, columns: list[str]) -> dict[tuple[Any, ...], list[int]]:
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, key in enumerate(_row_keys(frame, columns)):
        groups.setdefault(key, []).append(index)
    return groups


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def plain_value(value: Any) -> Any:
    """Compare ``13``, ``13.0`` and ``numpy.int64(13)`` as one value; text as text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------------------------------
# GaussianCopula: exact conditioning in the latent normal space

_EPS: float = float(np.finfo(np.float32).eps)


def copula_given(
    synthesizer: Any,
    given: pd.DataFrame,
    *,
    fill: Sequence[str],
    seed: int,
) -> pd.DataFrame:
    """Rows of SDV's GaussianCopula ``synthesizer`` conditioned on the given cells.

    Rows are grouped by which given cells are present; each group is sampled at once. A
    cell to fill that comes out empty (the model learnt that the column is sometimes
    missing) is drawn again, up to :data:`MAX_FILL_ROUNDS` times: imputing means a value.
    """
    frame = _copula_given_once(synthesizer, given, fill=fill, seed=seed)
    fill_columns = [c for c in fill if c in frame.columns]
    for attempt in range(1, MAX_FILL_ROUNDS + 1):
        empty = (frame[fill_columns].isna() & given[fill_columns].isna().to_numpy()).any(axis=1)
        if not fill_columns or not empty.any():
            break
        rows = list(np.flatnonzero(empty.to_numpy()))
        again = _copula_given_once(
            synthesizer, given.iloc[rows].reset_index(drop=True), fill=fill, seed=seed + attempt
        )
        again.index = frame.index[rows]
        frame.loc[again.index, again.columns] = again
    return frame


MAX_FILL_ROUNDS = 20


def _copula_given_once(
    synthesizer: Any,
    given: pd.DataFrame,
    *,
    fill: Sequence[str],
    seed: int,
) -> pd.DataFrame:
    copula = synthesizer._model
    processor = synthesizer._data_processor
    rng = np.random.default_rng(seed)
    correlation = copula.correlation.to_numpy()
    names = list(copula.columns)
    position = {name: i for i, name in enumerate(names)}
    given = given.reset_index(drop=True)
    parts: list[pd.DataFrame] = []
    for known_columns, rows in present_patterns(given):
        subset = given.iloc[rows][known_columns]
        latent = pd.DataFrame(index=range(len(subset)))
        if known_columns:
            transformed = processor.transform(subset.reset_index(drop=True), is_condition=True)
            latent = transformed[[c for c in transformed.columns if c in position]]
        known = list(latent.columns)
        unknown = [c for c in names if c not in set(known)]
        sampled = _conditional_normal(copula, correlation, position, latent, unknown, rng)
        raw = pd.DataFrame(index=range(len(subset)))
        for name in names:
            raw[name] = latent[name].to_numpy() if name in known else sampled[name]
        out = processor.reverse_transform(raw)
        out.index = rows
        parts.append(out)
    frame = pd.concat(parts).sort_index()
    return restore_given(frame, given, fill)


def _conditional_normal(
    copula: Any,
    correlation: np.ndarray[Any, Any],
    position: dict[str, int],
    latent: pd.DataFrame,
    unknown: list[str],
    rng: np.random.Generator,
) -> dict[str, np.ndarray[Any, Any]]:
    """Values (in the transformed space) of ``unknown`` columns, given ``latent`` known ones."""
    from scipy import stats

    n = len(latent)
    u_index = [position[c] for c in unknown]
    k_index = [position[c] for c in latent.columns]
    if not u_index:
        return {}
    if k_index:
        z_known = np.column_stack(
            [
                stats.norm.ppf(
                    np.clip(
                        copula.univariates[position[c]].cdf(latent[c].to_numpy(dtype=float)),
                        _EPS,
                        1 - _EPS,
                    )
                )
                for c in latent.columns
            ]
        )
        s_uk = correlation[np.ix_(u_index, k_index)]
        s_kk = correlation[np.ix_(k_index, k_index)]
        s_uu = correlation[np.ix_(u_index, u_index)]
        gain = np.linalg.solve(s_kk, s_uk.T).T  # Σ_uk Σ_kk⁻¹
        means = z_known @ gain.T
        covariance = s_uu - gain @ s_uk.T
    else:
        means = np.zeros((n, len(u_index)))
        covariance = correlation[np.ix_(u_index, u_index)]
    covariance = (covariance + covariance.T) / 2
    noise = rng.multivariate_normal(np.zeros(len(u_index)), covariance, size=n, method="eigh")
    z = means + noise
    values: dict[str, np.ndarray[Any, Any]] = {}
    for j, name in enumerate(unknown):
        cdf = np.clip(stats.norm.cdf(z[:, j]), _EPS, 1 - _EPS)
        values[name] = copula.univariates[position[name]].percent_point(cdf)
    return values
