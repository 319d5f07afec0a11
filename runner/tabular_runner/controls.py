"""``spec.generation``: seeded, rebalanced and imputing generation, and temperature.

A stored model draws rows in more ways than ``rows: N`` (docs/generation.md):

* ``seed``: one output row per seed row; the seed's cells are kept as given, the other
  columns generated to fit them (MOSTLY AI's seed, SDV's ``sample_remaining_columns``).
* ``rebalance``: a categorical column in asked shares. The shares become exact counts
  (largest remainder), and the counts a column of *given* cells: each row is drawn
  conditioned on its category, so the output holds exactly those counts and the other
  columns follow each category as the model learnt them (SDV's ``sample_from_conditions``).
* ``impute``: a table with holes; its present cells kept, its empty cells filled given the
  present ones of the same row.
* ``temperature``: TabularARGN's sampling temperature.

:func:`plan` checks everything against the model before a row is drawn (the generator
serves the control, the columns exist, categories are known) and turns the request into a
:class:`~tabular_runner.generators.base.SampleRequest` over the model's columns.
:func:`evaluate` (validate stage) measures what came out: honoured seed rows, achieved
shares, filled cells and their fidelity, untouched present cells.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tabular_runner.errors import UserInputError
from tabular_runner.generators import CATEGORICAL_ONLY, CONTROLS, check_controls
from tabular_runner.generators.conditional import plain_value
from tabular_runner.spec import GenerationSpec, GeneratorType, RebalanceSpec, TableRef

if TYPE_CHECKING:
    from pathlib import Path

    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.constraints import Combination
    from tabular_runner.storage.s3 import S3Settings


@dataclass(frozen=True)
class Reader:
    """Where seed and impute tables are read from.

    ``file://`` is relative to the manifest's folder; ``s3://`` is read with the source's
    identity.
    """

    base_dir: Path | None
    s3: S3Settings | None


__all__ = ["Plan", "Reader", "evaluate", "plan", "read_given_table", "reweighted", "supporting"]

SEED_FIELD = "spec.generation.seed.uri"
IMPUTE_FIELD = "spec.generation.impute.uri"
REBALANCE_FIELD = "spec.generation.rebalance"
MAX_GIVEN_ROWS = 10_000_000


@dataclass
class Plan:
    """What the generate stage draws, decided before it draws."""

    requested: list[str]
    rows: int | None = None
    """Output rows fixed by the control (``len(given)``), else ``None``."""
    given: pd.DataFrame | None = None
    """Given cells over the model's modelled columns (data space; combinations unmerged)."""
    fill: tuple[str, ...] = ()
    temperature: float | None = None
    table: pd.DataFrame | None = None
    """The seed or impute table as read: its other columns (identifiers, personal data)
    are copied into the output where present."""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def conditioned(self) -> bool:
        """True when each output row answers a given row."""
        return self.given is not None


def supporting(control: str) -> list[str]:
    """Generators that serve ``control``."""
    return sorted(k.value for k, served in CONTROLS.items() if control in served)


def read_given_table(ref: TableRef, field: str, reader: Reader) -> pd.DataFrame:
    """Read a seed or impute table with the source's identity.

    Raises:
        UserInputError: naming ``field`` when the file is missing, unreadable or empty.
    """
    from tabular_runner.storage.tables import read_table

    frame = read_table(
        ref.uri, ref.resolved_format(), base_dir=reader.base_dir, s3=reader.s3, field=field
    )
    if frame.empty:
        raise UserInputError(field, "holds no rows", "give a table with at least one row")
    if len(frame) > MAX_GIVEN_ROWS:
        raise UserInputError(field, f"holds {len(frame)} rows", f"at most {MAX_GIVEN_ROWS}")
    return frame


def plan(
    generation: GenerationSpec,
    generator: GeneratorType,
    analysis: TableAnalysis,
    modelled: list[str],
    real: pd.DataFrame,
    rows: int,
    combos: list[Combination],
    reader: Reader,
    seed: int,
) -> Plan:
    """Check ``generation`` against the model and return what to draw.

    Raises:
        UserInputError: a control the generator lacks, an unknown column or category, a
            seed that splits a fixed combination, a non-categorical column where the
            generator conditions by rejection.
    """
    requested = generation.requested
    check_controls(generator, requested)
    result = Plan(requested=requested, temperature=generation.temperature)
    if generation.seed is not None:
        table = read_given_table(generation.seed, SEED_FIELD, reader)
        _known_columns(table, analysis, SEED_FIELD)
        given = _like_real(table[[c for c in table.columns if c in modelled]], real)
        if given.shape[1] == 0:
            raise UserInputError(
                SEED_FIELD,
                "names only identifier or personal-data columns, which are generated as "
                "fakes and cannot steer the model",
                f"seed with modelled columns ({', '.join(modelled[:8])}…)",
            )
        _known_categories(given, analysis, real, SEED_FIELD)
        result.table, result.given, result.rows = table, given, len(table)
    elif generation.impute is not None:
        table = read_given_table(generation.impute, IMPUTE_FIELD, reader)
        _known_columns(table, analysis, IMPUTE_FIELD)
        given = _like_real(table.reindex(columns=modelled), real)
        _known_categories(given, analysis, real, IMPUTE_FIELD)
        result.fill = tuple(c for c in modelled if given[c].isna().any())
        result.table, result.given, result.rows = table, given, len(table)
        result.notes["cellsMissing"] = {c: int(given[c].isna().sum()) for c in result.fill}
    elif generation.rebalance is not None:
        given = _rebalanced(generation.rebalance, analysis, modelled, real, rows, seed)
        result.given, result.rows = given, len(given)
    if result.given is not None:
        _whole_combinations(result.given, combos, result.fill)
        if generator in CATEGORICAL_ONLY:
            _categorical_only(result.given, analysis, generator)
    return result


def model_space(given: pd.DataFrame, combos: list[Combination]) -> pd.DataFrame:
    """``given`` with each fixed combination folded into its joint column (as trained).

    A row gives the joint value only where it gives every column of the combination.
    """
    from tabular_runner.constraints import _encode_cell

    out = given.copy()
    for combo in combos:
        parts = list(combo.columns)
        if not set(parts) <= set(out.columns):
            continue
        complete = out[parts].notna().all(axis=1)
        joint = [
            json.dumps([_encode_cell(plain_value(v)) for v in row]) if ok else None
            for ok, row in zip(complete, out[parts].itertuples(index=False, name=None), strict=True)
        ]
        out = out.drop(columns=parts)
        out[combo.name] = pd.Series(joint, index=out.index, dtype=object)
    return out


# ---------------------------------------------------------------------------------------
# Checks


def _known_columns(table: pd.DataFrame, analysis: TableAnalysis, field: str) -> None:
    known = analysis.column_names
    unknown = [str(c) for c in table.columns if c not in set(known)]
    if unknown:
        raise UserInputError(
            field,
            f"has column(s) the model does not know: {', '.join(unknown[:10])}",
            f"use the model's columns ({', '.join(known[:12])}{'…' if len(known) > 12 else ''})",
        )


def _like_real(given: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """Given cells with the real column's type (a CSV of numbers read as numbers, etc.)."""
    out = given.copy()
    for column in out.columns:
        if column not in real.columns:
            continue
        target = real[column].dtype
        values = out[column]
        if pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
            numeric = pd.to_numeric(values, errors="coerce")
            bad = values.notna() & numeric.isna()
            if bad.any():
                raise UserInputError(
                    f"spec.generation: column {column}",
                    f"holds non-numbers ({values[bad].iloc[0]!r}) where the data has numbers",
                    "give numbers or leave the cell empty",
                )
            out[column] = numeric
        elif pd.api.types.is_datetime64_any_dtype(target):
            out[column] = pd.to_datetime(values, errors="coerce")
        elif pd.api.types.is_bool_dtype(target):
            out[column] = values.map(
                lambda v: v if not isinstance(v, str) else v.strip().lower() in ("true", "1")
            )
        else:
            out[column] = values.astype(object).where(values.notna(), None)
            if pd.api.types.is_object_dtype(target):
                out[column] = out[column].map(lambda v: v if v is None else str(v))
    return out


def _categorical_columns(analysis: TableAnalysis) -> set[str]:
    return set(analysis.columns_of_kind("categorical")) | set(analysis.columns_of_kind("boolean"))


def _known_categories(
    given: pd.DataFrame, analysis: TableAnalysis, real: pd.DataFrame, field: str
) -> None:
    for column in sorted(_categorical_columns(analysis) & set(given.columns)):
        seen = {_key(v) for v in real[column].dropna().unique()}
        asked = given[column].dropna()
        new = [v for v in asked.unique() if _key(v) not in seen]
        if new:
            examples = ", ".join(repr(v) for v in sorted(seen, key=str)[:8])
            raise UserInputError(
                f"{field} (column {column})",
                f"holds categories the model never saw: {', '.join(map(repr, new[:5]))}",
                f"use the column's categories ({examples}…)",
            )


def _whole_combinations(
    given: pd.DataFrame, combos: list[Combination], fill: tuple[str, ...]
) -> None:
    for combo in combos:
        parts = set(combo.columns)
        named = parts & set(given.columns)
        if named and named != parts and not fill:
            raise UserInputError(
                "spec.generation",
                f"gives {', '.join(sorted(named))} without "
                f"{', '.join(sorted(parts - named))}, which the model learnt jointly "
                "(a fixedCombinations constraint)",
                f"give all of {', '.join(combo.columns)}, or none of them",
            )


def _categorical_only(
    given: pd.DataFrame, analysis: TableAnalysis, generator: GeneratorType
) -> None:
    other = [c for c in given.columns if c not in _categorical_columns(analysis)]
    if other:
        raise UserInputError(
            "spec.generation",
            f"{generator.value} conditions by drawing rows and keeping those that match, which "
            f"works for categorical columns only; {', '.join(other[:5])} "
            f"{'is' if len(other) == 1 else 'are'} not categorical",
            "give categorical columns only, or use gaussian_copula or tabularargn, which "
            "condition on any column",
        )


def _key(value: Any) -> str:
    return str(plain_value(value))


def _rebalanced(
    spec: RebalanceSpec,
    analysis: TableAnalysis,
    modelled: list[str],
    real: pd.DataFrame,
    rows: int,
    seed: int,
) -> pd.DataFrame:
    column = spec.column
    if column not in modelled:
        raise UserInputError(
            f"{REBALANCE_FIELD}.column",
            f"{column!r} is not a column the model generates",
            f"choose one of {', '.join(sorted(_categorical_columns(analysis) & set(modelled)))}",
        )
    if column not in _categorical_columns(analysis):
        raise UserInputError(
            f"{REBALANCE_FIELD}.column",
            f"{column!r} is not categorical (rebalancing draws categories in shares)",
            f"choose one of {', '.join(sorted(_categorical_columns(analysis) & set(modelled)))}",
        )
    values = {_key(v): v for v in real[column].dropna().unique()}
    unknown = [k for k in spec.shares if k not in values]
    if unknown:
        shown = ", ".join(repr(k) for k in sorted(values)[:10])
        raise UserInputError(
            f"{REBALANCE_FIELD}.shares",
            f"names categories {column} does not have: {', '.join(map(repr, unknown[:5]))}",
            f"use its categories ({shown})",
        )
    counts = exact_counts(spec.shares, rows)
    cells: list[Any] = []
    for name, count in counts.items():
        cells.extend([values[name]] * count)
    order = np.random.default_rng(seed).permutation(len(cells))
    column_values = pd.Series(cells, dtype=real[column].dtype).iloc[order].reset_index(drop=True)
    return pd.DataFrame({column: column_values})


def exact_counts(shares: dict[str, float], rows: int) -> dict[str, int]:
    """Rows per category: ``shares × rows`` rounded by largest remainder (sums to ``rows``)."""
    raw = {k: v * rows for k, v in shares.items()}
    counts = {k: math.floor(v) for k, v in raw.items()}
    left = rows - sum(counts.values())
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:left]:
        counts[k] += 1
    return counts


# ---------------------------------------------------------------------------------------
# What came out (validate stage)


def reweighted(
    train: pd.DataFrame, column: str, shares: dict[str, float], seed: int
) -> pd.DataFrame:
    """Real rows drawn so that ``column`` has the asked shares.

    Within each category the real rows keep their own distribution: the honest reference
    for a rebalanced output.
    """
    rng = np.random.default_rng(seed)
    keys = train[column].map(_key)
    n = len(train)
    parts = []
    for name, count in exact_counts(shares, n).items():
        pool = np.flatnonzero((keys == name).to_numpy())
        if count == 0 or len(pool) == 0:
            continue
        parts.append(train.iloc[rng.choice(pool, size=count, replace=len(pool) < count)])
    return pd.concat(parts).reset_index(drop=True)


def evaluate(
    generation: GenerationSpec,
    synthetic: pd.DataFrame,
    real: pd.DataFrame,
    reader: Reader,
) -> dict[str, Any]:
    """What was asked and what came out, per control (``report.json`` ``generation``)."""
    out: dict[str, Any] = {"requested": generation.requested}
    if generation.temperature is not None:
        out["temperature"] = generation.temperature
    if generation.seed is not None:
        table = read_given_table(generation.seed, SEED_FIELD, reader)
        columns = [c for c in table.columns if c in synthetic.columns]
        honoured = _matches(table[columns], synthetic[columns]).all(axis=1)
        out["seed"] = {
            "rows": len(table),
            "columns": columns,
            "rowsHonoured": int(honoured.sum()),
            "honouredShare": round(float(honoured.mean()), 6),
        }
    if generation.rebalance is not None:
        spec = generation.rebalance
        achieved = synthetic[spec.column].map(_key).value_counts(normalize=True)
        rows = {k: round(float(achieved.get(k, 0.0)), 6) for k in spec.shares}
        other = round(float(1 - sum(rows.values())), 6)
        out["rebalance"] = {
            "column": spec.column,
            "target": dict(spec.shares),
            "achieved": rows,
            "otherCategories": max(other, 0.0),
            "maxDeviationPoints": round(
                100 * max(abs(rows[k] - v) for k, v in spec.shares.items()), 4
            ),
        }
    if generation.impute is not None:
        table = read_given_table(generation.impute, IMPUTE_FIELD, reader)
        columns = [c for c in table.columns if c in synthetic.columns]
        holes = table[columns].isna()
        kept = _matches(table[columns], synthetic[columns]) | holes
        filled_cols = [c for c in columns if holes[c].any()]
        absent = [c for c in synthetic.columns if c not in table.columns]
        out["impute"] = {
            "rows": len(table),
            "cellsMissing": int(holes.to_numpy().sum()),
            "cellsFilled": int((holes & synthetic[columns].notna()).to_numpy().sum()),
            "presentCellsChanged": int((~kept).to_numpy().sum()),
            "columnsGenerated": absent,
            "filledColumns": {
                c: {
                    "cellsFilled": int((holes[c] & synthetic[c].notna()).sum()),
                    "columnShape": _column_shape(real[c], synthetic[c][holes[c]]),
                }
                for c in filled_cols
                if c in real.columns
            },
        }
    return out


def _matches(given: pd.DataFrame, produced: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell: does the produced value equal the given one (empty equals empty)?"""
    result = pd.DataFrame(index=given.index)
    produced = produced.reset_index(drop=True)
    given = given.reset_index(drop=True)
    for column in given.columns:
        a, b = given[column], produced[column]
        both_empty = a.isna() & b.isna()
        na, nb = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        numeric = na.notna() & nb.notna()
        close = pd.Series(
            np.isclose(na.fillna(0).to_numpy(float), nb.fillna(0).to_numpy(float), rtol=1e-9),
            index=a.index,
        )
        text = a.map(_key) == b.map(_key)
        result[column] = both_empty | (numeric & close) | (~numeric & a.notna() & text)
    return result


def _column_shape(real: pd.Series, filled: pd.Series) -> float | None:
    """SDMetrics column shape of the filled cells against the real column."""
    from tabular_runner.quality.fidelity import column_shape

    score = column_shape(real, filled)
    return None if score is None else round(score, 6)
