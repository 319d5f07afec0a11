"""Constraints of a SynthesisJob, enforced on the generated rows.

Generators learn distributions, not rules, so the rules in ``spec.constraints`` are applied
after sampling, in two ways:

* **repair** what can be repaired without inventing information: ``range`` clamps a value to
  its bounds; ``inequality`` swaps ``low`` and ``high`` when they are the wrong way round (and,
  when ``strict`` and equal, raises ``high`` by one step: 1 for integers, one day for dates,
  the next float otherwise);
* **reject** rows that cannot be repaired (``regex``, ``unique``, ``fixedCombinations``, and
  any row a repair could not fix) and replace them with freshly sampled rows, to which the
  same treatment applies, until exactly ``rows`` rows hold every constraint.

Missing values satisfy every constraint (as in SQL: NULL is not a duplicate, not out of range).

:func:`check_constraints` refuses constraints that can never work (an unknown column, a range
on a text column) before anything is trained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.spec import (
    Constraint,
    FixedCombinationsConstraint,
    InequalityConstraint,
    RangeConstraint,
    RegexConstraint,
    UniqueConstraint,
    constraint_columns,
)

# Columns listed in an "unknown column" message when there are at most this many.
LIST_COLUMNS_MAX = 20
# Resample at most this many times the rows still missing in one round.
OVERSAMPLE_MAX = 4.0
# Give up early after this many rounds in a row that kept no new row.
STALLED_ROUNDS_MAX = 3


class ColumnKinds(Protocol):
    """What :func:`check_constraints` needs of a table analysis (``TableAnalysis`` fits)."""

    @property
    def kinds(self) -> Mapping[str, str]:
        """``{column: kind}`` with kinds such as ``numeric``, ``categorical``, ``datetime``."""
        ...


# ---------------------------------------------------------------------------------------
# Static checks


def _attribute_of(constraint: Constraint, column: str) -> str:
    if isinstance(constraint, RangeConstraint | RegexConstraint):
        return "column"
    if isinstance(constraint, InequalityConstraint):
        return "low" if column == constraint.low else "high"
    return "columns"


def _unknown_column_hint(columns: Sequence[str]) -> str:
    if len(columns) <= LIST_COLUMNS_MAX:
        return f"columns are: {', '.join(columns)}"
    return "check the spelling against the source's header"


def check_constraints(
    constraints: Sequence[Constraint],
    columns: Sequence[str],
    analysis: ColumnKinds | None = None,
) -> None:
    """Refuse constraints that name unknown columns or do not fit the columns' kinds.

    Args:
        constraints: ``spec.constraints``.
        columns: Columns of the source table.
        analysis: The table's analysis (column kinds); kind checks are skipped without it.

    Raises:
        UserInputError: naming ``spec.constraints[i]`` and the attribute at fault.
    """
    known = set(columns)
    kinds = dict(analysis.kinds) if analysis is not None else {}
    for i, constraint in enumerate(constraints):
        where = f"spec.constraints[{i}]"
        for column in constraint_columns(constraint):
            if column not in known:
                raise UserInputError(
                    f"{where}.{_attribute_of(constraint, column)}",
                    f"unknown column {column!r}",
                    _unknown_column_hint(list(columns)),
                )
        if isinstance(constraint, RangeConstraint):
            kind = kinds.get(constraint.column)
            if kind is not None and kind != "numeric":
                raise UserInputError(
                    f"{where}.column",
                    f"a range needs a numeric column, but {constraint.column!r} is {kind}",
                    "use a regex or fixedCombinations constraint for non-numeric columns",
                )
        elif isinstance(constraint, InequalityConstraint):
            if constraint.low == constraint.high:
                raise UserInputError(
                    f"{where}.high",
                    f"low and high are the same column {constraint.low!r}",
                    "name two different columns",
                )
            low_kind, high_kind = kinds.get(constraint.low), kinds.get(constraint.high)
            for attribute, column, kind in (
                ("low", constraint.low, low_kind),
                ("high", constraint.high, high_kind),
            ):
                if kind is not None and kind not in ("numeric", "datetime"):
                    raise UserInputError(
                        f"{where}.{attribute}",
                        f"an inequality needs numeric or datetime columns, but {column!r} is "
                        f"{kind}",
                        "compare two numeric or two datetime columns",
                    )
            if low_kind is not None and high_kind is not None and low_kind != high_kind:
                raise UserInputError(
                    f"{where}.high",
                    f"{constraint.low!r} is {low_kind} but {constraint.high!r} is {high_kind}",
                    "compare two numeric or two datetime columns",
                )
        elif isinstance(constraint, UniqueConstraint | FixedCombinationsConstraint):
            repeated = sorted({c for c in constraint.columns if constraint.columns.count(c) > 1})
            if repeated:
                raise UserInputError(
                    f"{where}.columns",
                    f"column {repeated[0]!r} is listed twice",
                    "list each column once",
                )


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class ConstraintOutcome:
    """What one constraint did to the generated rows."""

    index: int
    type: str
    columns: list[str]
    action: str
    repaired: int = 0
    rejected: int = 0
    details: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        out: dict[str, Any] = {
            "index": self.index,
            "type": self.type,
            "columns": list(self.columns),
            "action": self.action,
            "repaired": self.repaired,
            "rejected": self.rejected,
        }
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass
class ConstraintReport:
    """What :func:`enforce` did, per constraint and in total."""

    constraints: list[ConstraintOutcome]
    rows: int = 0
    rounds: int = 0
    rows_sampled: int = 0
    rows_rejected: int = 0
    rows_surplus: int = 0

    @property
    def total_repaired(self) -> int:
        """Values (range) and rows (inequality) repaired."""
        return sum(c.repaired for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form for ``constraints.json`` and the report."""
        return {
            "constraints": [c.to_dict() for c in self.constraints],
            "rows": self.rows,
            "rounds": self.rounds,
            "rowsSampled": self.rows_sampled,
            "rowsRejected": self.rows_rejected,
            "rowsSurplus": self.rows_surplus,
            "totalRepaired": self.total_repaired,
            "totalRejected": self.rows_rejected,
        }


_ACTIONS = {
    "range": "clamp to [min, max]",
    "inequality": "swap low and high when reversed; raise high by one step when strict and equal",
    "regex": "reject rows that do not fully match",
    "unique": "reject repeated combinations",
    "fixedCombinations": "reject combinations absent from the real data",
}


# ---------------------------------------------------------------------------------------
# Repairs and checks on one batch


def _strings(values: Any) -> pd.Series:
    """``values`` as a Series of ``str`` (typed loosely: pandas-stubs mistype ``astype(str)``)."""
    return pd.Series(values, dtype=object).astype(str)


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _clamp(frame: pd.DataFrame, c: RangeConstraint, outcome: ConstraintOutcome) -> None:
    values = frame[c.column]
    low, high = c.min, c.max
    if pd.api.types.is_integer_dtype(values.dtype):
        # Integer columns keep their dtype: round the bounds inwards.
        low = math.ceil(low) if low is not None else None
        high = math.floor(high) if high is not None else None
    outside = pd.Series(False, index=frame.index)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    count = int(outside.sum())
    if count:
        frame[c.column] = values.clip(lower=low, upper=high)
        outcome.repaired += count


def _range_holds(frame: pd.DataFrame, c: RangeConstraint) -> pd.Series:
    values = frame[c.column]
    ok = pd.Series(True, index=frame.index)
    if c.min is not None:
        ok &= values.isna() | (values >= c.min)
    if c.max is not None:
        ok &= values.isna() | (values <= c.max)
    return ok


def _step(values: pd.Series) -> Any:
    """Smallest sensible increment of a column's values."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return 1
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        clean = values.dropna()
        if not clean.empty and bool((clean == clean.dt.normalize()).all()):
            return pd.Timedelta(days=1)
        return pd.Timedelta(seconds=1)
    numbers = values.dropna().to_numpy(dtype=float)
    if numbers.size and bool(np.all(np.mod(numbers, 1) == 0)):
        return 1.0
    return None  # floats: use the next representable value


def _comparable(values: pd.Series) -> pd.Series:
    """Values as numbers or timestamps; datetime strings (as generators return them) parsed."""
    if _is_number(values) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    return pd.to_datetime(values, errors="coerce", format="mixed")


def _native(values: pd.Series) -> bool:
    return _is_number(values) or pd.api.types.is_datetime64_any_dtype(values.dtype)


def _violates(low: pd.Series, high: pd.Series, strict: bool) -> pd.Series:
    low, high = _comparable(low), _comparable(high)
    both = low.notna() & high.notna()
    wrong = (low >= high) if strict else (low > high)
    return both & wrong.fillna(False).astype(bool)


def _repair_inequality(
    frame: pd.DataFrame, c: InequalityConstraint, outcome: ConstraintOutcome
) -> None:
    low, high = frame[c.low], frame[c.high]
    bad = _violates(low, high, c.strict)
    if not bool(bad.any()):
        return
    reversed_rows = bad & (_comparable(low) > _comparable(high)).fillna(False).astype(bool)
    if bool(reversed_rows.any()):
        # Swap the stored values (strings stay strings): both were plausible on their own.
        lows, highs = low[reversed_rows].copy(), high[reversed_rows].copy()
        frame.loc[reversed_rows, c.low] = highs.to_numpy()
        frame.loc[reversed_rows, c.high] = lows.to_numpy()
        outcome.details["swapped"] = outcome.details.get("swapped", 0) + int(reversed_rows.sum())
    # Raising high needs arithmetic on the values: numbers and native datetimes only; other
    # equal pairs stay as they are and are rejected by the check that follows.
    if c.strict and _native(frame[c.low]) and _native(frame[c.high]):
        equal = bad & ~reversed_rows
        if bool(equal.any()):
            step = _step(frame[c.high])
            base = frame.loc[equal, c.low]
            raised = (
                np.nextafter(base.to_numpy(dtype=float), np.inf) if step is None else base + step
            )
            frame.loc[equal, c.high] = raised
            outcome.details["raised"] = outcome.details.get("raised", 0) + int(equal.sum())
            outcome.repaired += int(equal.sum())
    outcome.repaired += int(reversed_rows.sum())


def _regex_holds(frame: pd.DataFrame, c: RegexConstraint) -> pd.Series:
    values = frame[c.column]
    present = values.notna().to_numpy()
    ok = np.ones(len(frame), dtype=bool)
    if present.any():
        pattern = re.compile(c.pattern)
        ok[present] = [pattern.fullmatch(str(v)) is not None for v in values[present]]
    return pd.Series(ok, index=frame.index)


def _combination_keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """Hashable row keys; all missing values become one ``None`` so NaN equals NaN."""
    parts = []
    for column in columns:
        values = frame[column].astype(object)
        parts.append(values.where(values.notna(), None).tolist())
    return list(zip(*parts, strict=True))


def _fixed_holds(
    frame: pd.DataFrame, allowed: set[tuple[Any, ...]], columns: list[str]
) -> pd.Series:
    keys = _combination_keys(frame, columns)
    return pd.Series([k in allowed for k in keys], index=frame.index, dtype=bool)


# ---------------------------------------------------------------------------------------
# Enforcement


ResampleFn = Callable[[int], pd.DataFrame]


def _check_present(
    constraints: Sequence[Constraint], frame: pd.DataFrame, real: pd.DataFrame
) -> None:
    check_constraints(constraints, [str(c) for c in frame.columns])
    for i, constraint in enumerate(constraints):
        where = f"spec.constraints[{i}]"
        if isinstance(constraint, RangeConstraint) and not _is_number(frame[constraint.column]):
            raise UserInputError(
                f"{where}.column",
                f"a range needs a numeric column, but {constraint.column!r} holds "
                f"{frame[constraint.column].dtype}",
                "use a regex or fixedCombinations constraint for non-numeric columns",
            )
        if isinstance(constraint, FixedCombinationsConstraint):
            missing = [c for c in constraint.columns if c not in real.columns]
            if missing:
                raise UserInputError(
                    f"{where}.columns",
                    f"column {missing[0]!r} is not in the real data",
                    _unknown_column_hint([str(c) for c in real.columns]),
                )


def _prepare(
    constraints: Sequence[Constraint], df: pd.DataFrame, real: pd.DataFrame
) -> tuple[list[ConstraintOutcome], dict[int, set[tuple[Any, ...]]]]:
    """Check the columns; return an empty outcome per constraint and the allowed combinations."""
    _check_present(constraints, df, real)
    outcomes = [
        ConstraintOutcome(
            index=i,
            type=c.type,
            columns=constraint_columns(c),
            action=_ACTIONS[c.type],
        )
        for i, c in enumerate(constraints)
    ]
    allowed = {
        i: set(_combination_keys(real, list(c.columns)))
        for i, c in enumerate(constraints)
        if isinstance(c, FixedCombinationsConstraint)
    }
    return outcomes, allowed


def enforce(
    df: pd.DataFrame,
    constraints: Sequence[Constraint],
    *,
    rows: int,
    real: pd.DataFrame,
    resample: ResampleFn,
    max_rounds: int = 20,
) -> tuple[pd.DataFrame, ConstraintReport]:
    """Make ``rows`` generated rows satisfy every constraint.

    Args:
        df: Generated rows (any count; extra rows are dropped, missing ones resampled).
        constraints: ``spec.constraints``.
        rows: Exact number of rows to return.
        real: The real table (``fixedCombinations`` allows only its combinations).
        resample: ``resample(k)`` returns ``k`` fresh generated rows with ``df``'s columns;
            it must not repeat itself between calls (vary its seed).
        max_rounds: Most calls to ``resample``.

    Returns:
        Exactly ``rows`` rows (fresh index) and the report of what was repaired and rejected.

    Raises:
        UserInputError: naming the constraint that rejected most rows, when ``rows`` rows
            could not be made to satisfy the constraints within ``max_rounds``.
        EngineError: when ``resample`` returns rows without the expected columns.
    """
    columns = list(df.columns)
    outcomes, allowed = _prepare(constraints, df, real)
    report = ConstraintReport(constraints=outcomes, rows=rows)
    kept: list[pd.DataFrame] = []
    kept_rows = 0
    seen: dict[int, set[tuple[Any, ...]]] = {
        i: set() for i, c in enumerate(constraints) if isinstance(c, UniqueConstraint)
    }

    batch = df
    stalled = 0
    while True:
        report.rows_sampled += len(batch)
        accepted = _treat(batch.copy(), constraints, outcomes, allowed, seen)
        report.rows_rejected += len(batch) - len(accepted)
        take = accepted.iloc[: rows - kept_rows]
        if not take.empty:
            kept.append(take)
            kept_rows += len(take)
            # Remember only the unique keys actually kept; the surplus is discarded.
            for i, keys in seen.items():
                constraint = constraints[i]
                assert isinstance(constraint, UniqueConstraint)
                keys.update(_unique_keys(take, constraint.columns))
        report.rows_surplus += len(accepted) - len(take)
        stalled = 0 if not take.empty else stalled + 1
        missing = rows - kept_rows
        if missing == 0:
            break
        if report.rounds >= max_rounds or stalled >= STALLED_ROUNDS_MAX:
            _give_up(constraints, outcomes, kept_rows, rows, report.rounds)
        # Ask for enough rows to cover the acceptance rate seen so far.
        rate = max(kept_rows + report.rows_surplus, 1) / max(report.rows_sampled, 1)
        ask = int(math.ceil(missing * min(1.0 / max(rate, 1e-9), OVERSAMPLE_MAX) * 1.1)) + 1
        report.rounds += 1
        batch = resample(ask)
        absent = [c for c in columns if c not in batch.columns]
        if absent:
            raise EngineError(f"resampled rows lack columns {', '.join(map(repr, absent))}")
        batch = batch[columns]

    result = pd.concat(kept, ignore_index=True) if kept else df.iloc[:0].reset_index(drop=True)
    return result, report


ROW = "__aumos_row"


def enforce_rows(
    df: pd.DataFrame,
    constraints: Sequence[Constraint],
    *,
    real: pd.DataFrame,
    regenerate: Callable[[list[int], int], pd.DataFrame],
    max_rounds: int = 20,
) -> tuple[pd.DataFrame, ConstraintReport]:
    """:func:`enforce` for rows that answer given rows (a seed, a table with holes).

    Row ``i`` of the result stays the answer to given row ``i``: a row the constraints reject
    is drawn again from its own given cells (``regenerate(positions, round)`` returns one
    new row per position), never replaced by another row. Repairs (clamping, swapping) apply
    as in :func:`enforce`, also to given cells that break a constraint.

    Raises:
        UserInputError: naming the constraint, when some rows still break it after
            ``max_rounds`` rounds (e.g. the given cells themselves break it).
    """
    rows = len(df)
    columns = list(df.columns)
    outcomes, allowed = _prepare(constraints, df, real)
    seen: dict[int, set[tuple[Any, ...]]] = {
        i: set() for i, c in enumerate(constraints) if isinstance(c, UniqueConstraint)
    }
    report = ConstraintReport(constraints=outcomes, rows=rows)
    kept: list[pd.DataFrame] = []
    kept_rows = 0
    batch = df.reset_index(drop=True).assign(**{ROW: range(rows)})
    while True:
        report.rows_sampled += len(batch)
        accepted = _treat(batch.copy(), constraints, outcomes, allowed, seen)
        report.rows_rejected += len(batch) - len(accepted)
        kept.append(accepted)
        kept_rows += len(accepted)
        for i, keys in seen.items():
            constraint = constraints[i]
            assert isinstance(constraint, UniqueConstraint)
            keys.update(_unique_keys(accepted, constraint.columns))
        missing = sorted(set(batch[ROW]) - set(accepted[ROW]))
        if not missing:
            break
        if report.rounds >= max_rounds:
            _give_up(constraints, outcomes, kept_rows, rows, report.rounds)
        report.rounds += 1
        fresh = regenerate(missing, report.rounds).reset_index(drop=True)
        absent = [c for c in columns if c not in fresh.columns]
        if absent or len(fresh) != len(missing):
            raise EngineError(f"regenerated rows do not answer the {len(missing)} given rows")
        batch = fresh[columns].assign(**{ROW: missing})
    result = pd.concat(kept).sort_values(ROW).drop(columns=[ROW]).reset_index(drop=True)
    return result, report


def _unique_keys(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    complete = frame[columns].notna().all(axis=1)
    return _combination_keys(frame[complete], columns)


def _treat(
    frame: pd.DataFrame,
    constraints: Sequence[Constraint],
    outcomes: list[ConstraintOutcome],
    allowed: dict[int, set[tuple[Any, ...]]],
    seen: dict[int, set[tuple[Any, ...]]],
) -> pd.DataFrame:
    """Repair what can be repaired, then return the rows that satisfy every constraint."""
    frame = frame.reset_index(drop=True)
    ranges = [(i, r) for i, r in enumerate(constraints) if isinstance(r, RangeConstraint)]
    inequalities = [
        (i, q) for i, q in enumerate(constraints) if isinstance(q, InequalityConstraint)
    ]
    for i, r in ranges:
        _clamp(frame, r, outcomes[i])
    for i, q in inequalities:
        _repair_inequality(frame, q, outcomes[i])
    if inequalities:
        # A swap can move a value out of the other column's range: clamp again.
        for i, r in ranges:
            _clamp(frame, r, outcomes[i])

    # Each stateless check sees every row, so a rejection is charged to each rule it breaks.
    keep = pd.Series(True, index=frame.index)
    for i, c in enumerate(constraints):
        ok: pd.Series
        if isinstance(c, RangeConstraint):
            ok = _range_holds(frame, c)
        elif isinstance(c, InequalityConstraint):
            ok = ~_violates(frame[c.low], frame[c.high], c.strict)
        elif isinstance(c, RegexConstraint):
            ok = _regex_holds(frame, c)
        elif isinstance(c, FixedCombinationsConstraint):
            ok = _fixed_holds(frame, allowed[i], list(c.columns))
        else:
            continue
        outcomes[i].rejected += int((~ok).sum())
        keep &= ok

    # Uniqueness last, among rows that pass everything else, and against rows kept before.
    for i, u in enumerate(constraints):
        if not isinstance(u, UniqueConstraint):
            continue
        cols = list(u.columns)
        complete = frame[cols].notna().all(axis=1)
        keys = pd.Series(_combination_keys(frame, cols), index=frame.index, dtype=object)
        repeated = keys[keep & complete].duplicated()
        earlier = keys[keep & complete].isin(seen[i]) if seen[i] else repeated & False
        bad_index = repeated.index[(repeated | earlier).to_numpy()]
        outcomes[i].rejected += len(bad_index)
        keep[bad_index] = False
    return frame[keep]


def _give_up(
    constraints: Sequence[Constraint],
    outcomes: list[ConstraintOutcome],
    kept: int,
    rows: int,
    rounds: int,
) -> None:
    if not outcomes or max(o.rejected for o in outcomes) == 0:
        raise EngineError(
            f"the generator returned too few rows: {kept} of {rows} after {rounds} rounds"
        )
    worst = max(outcomes, key=lambda o: o.rejected)
    described = f"{worst.type} on {', '.join(worst.columns)}"
    raise UserInputError(
        f"spec.constraints[{worst.index}]",
        f"only {kept} of {rows} rows could be made to satisfy it ({described}; it rejected "
        f"{worst.rejected} rows over {rounds} resampling rounds)",
        "relax it or generate fewer rows",
    )


# ---------------------------------------------------------------------------------------
# Fixed combinations, modelled jointly
#
# Rejecting rows whose combination never occurred (``enforce``) keeps the promise but biases
# the marginals towards what the generator happens to get right: on UCI Adult, GaussianCopula
# invents most (education, education-num) pairs. Modelling each fixed combination as ONE
# categorical column before training — as SDV's FixedCombinations constraint does — makes
# every sampled combination a real one, so ``enforce`` rejects nothing and fidelity improves.

COMBINED_PREFIX = "__combination__"


@dataclass(frozen=True)
class Combination:
    """One fixedCombinations constraint folded into a single categorical column."""

    name: str
    columns: tuple[str, ...]
    dtypes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored with the train stage's result)."""
        return {"name": self.name, "columns": list(self.columns), "dtypes": list(self.dtypes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Combination:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["name"]), tuple(data["columns"]), tuple(data["dtypes"]))


def _encode_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def merge_combinations(
    frame: pd.DataFrame, constraints: Sequence[Constraint]
) -> tuple[pd.DataFrame, list[Combination]]:
    """Replace the columns of each fixedCombinations constraint by one joint column.

    Constraints whose columns overlap an earlier one's, or are not all in ``frame``, are left
    to :func:`enforce`.
    """
    import json

    merged = frame.copy()
    combos: list[Combination] = []
    taken: set[str] = set()
    for constraint in constraints:
        if not isinstance(constraint, FixedCombinationsConstraint):
            continue
        columns = tuple(constraint.columns)
        if taken & set(columns) or not set(columns) <= set(merged.columns):
            continue
        name = COMBINED_PREFIX + "|".join(columns)
        rows = merged[list(columns)].itertuples(index=False, name=None)
        merged[name] = [json.dumps([_encode_cell(v) for v in row]) for row in rows]
        dtypes = tuple(str(merged[c].dtype) for c in columns)
        merged = merged.drop(columns=list(columns))
        combos.append(Combination(name, columns, dtypes))
        taken |= set(columns)
    return merged, combos


def split_combinations(
    frame: pd.DataFrame, combos: Sequence[Combination], column_order: Sequence[str]
) -> pd.DataFrame:
    """Undo :func:`merge_combinations` on sampled rows, restoring dtypes and column order."""
    import json

    out = frame.copy()
    for combo in combos:
        decoded = [
            json.loads(v) if isinstance(v, str) else [None] * len(combo.columns)
            for v in out[combo.name]
        ]
        for position, (column, dtype) in enumerate(zip(combo.columns, combo.dtypes, strict=True)):
            values = pd.Series([row[position] for row in decoded], index=out.index)
            try:
                out[column] = values.astype(dtype)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                out[column] = values
        out = out.drop(columns=[combo.name])
    return out[[c for c in column_order if c in out.columns]]
