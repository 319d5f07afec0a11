"""Statistical fidelity of synthetic data: SDMetrics quality and diagnostic reports.

``evaluate`` runs the SDMetrics 0.32 *unified* ``QualityReport`` (Column Shapes, Column Pair
Trends) and ``DiagnosticReport`` (Data Validity, Data Structure) on seeded samples of both
tables, so the cost is bounded whatever the table size.

Which columns are scored: numerical, categorical, boolean and datetime ones. Identifiers,
personal data and free text are left out (and listed in ``excludedColumns`` with the reason):
the generator never models them (they are regenerated as fakes), so comparing their values
would only measure the faker and drag the score down for no information. Column kinds come
from the ``sdtypes`` hints of the analyze stage; without a hint a column's kind is guessed
from its dtype, and a text column where nearly every value is distinct is taken for an id.

Note on Column Pair Trends: since SDMetrics 0.2x only pairs whose *real* correlation or
association is strong enough (0.5 / 0.3) count towards the property score; other pairs are
still reported (``contributes: false``). With no contributing pair the property is ``None``
and the quality score is the Column Shapes score alone (SDMetrics averages what exists).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

TABLE = "table"
SCORED_SDTYPES = frozenset({"numerical", "categorical", "boolean", "datetime"})
_ALIASES = {
    "numeric": "numerical",
    "number": "numerical",
    "integer": "numerical",
    "float": "numerical",
    "bool": "boolean",
    "category": "categorical",
    "date": "datetime",
    "timestamp": "datetime",
}
# A text column with more distinct values than this share of its rows is taken for an id.
ID_LIKE_UNIQUE_FRACTION = 0.9
ID_LIKE_MIN_DISTINCT = 50
WORST_PAIRS = 10


@dataclass(frozen=True)
class ColumnScore:
    """Score of one column under one SDMetrics metric."""

    column: str
    metric: str
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {"column": self.column, "metric": self.metric, "score": self.score}


@dataclass(frozen=True)
class PairScore:
    """Column Pair Trends score of two columns."""

    column_1: str
    column_2: str
    metric: str
    score: float | None
    real_correlation: float | None = None
    synthetic_correlation: float | None = None
    contributes: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "column1": self.column_1,
            "column2": self.column_2,
            "metric": self.metric,
            "score": self.score,
            "realCorrelation": self.real_correlation,
            "syntheticCorrelation": self.synthetic_correlation,
            "contributes": self.contributes,
        }


@dataclass(frozen=True)
class FidelityResult:
    """SDMetrics quality and diagnostic scores of a synthetic table (0..1, higher is better)."""

    score: float | None
    column_shapes: float | None
    column_pair_trends: float | None
    diagnostic_score: float | None
    data_validity: float | None
    data_structure: float | None
    column_scores: list[ColumnScore] = field(default_factory=list)
    pair_scores: list[PairScore] = field(default_factory=list)
    validity_scores: list[ColumnScore] = field(default_factory=list)
    sdtypes: dict[str, str] = field(default_factory=dict)
    excluded_columns: dict[str, str] = field(default_factory=dict)
    real_rows: int = 0
    synthetic_rows: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def worst_columns(self, k: int | None = None) -> list[ColumnScore]:
        """Column Shapes scores, worst first (unscored columns last)."""
        ordered = sorted(self.column_scores, key=lambda c: (c.score is None, c.score or 0.0))
        return ordered if k is None else ordered[:k]

    def worst_pairs(self, k: int = WORST_PAIRS) -> list[PairScore]:
        """Scored pairs that count towards Column Pair Trends, worst first."""
        scored = [p for p in self.pair_scores if p.contributes and p.score is not None]
        return sorted(scored, key=lambda p: p.score or 0.0)[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form (goes into ``report.json``)."""
        return {
            "score": self.score,
            "columnShapes": self.column_shapes,
            "columnPairTrends": self.column_pair_trends,
            "diagnosticScore": self.diagnostic_score,
            "dataValidity": self.data_validity,
            "dataStructure": self.data_structure,
            "columnScores": [c.to_dict() for c in self.worst_columns()],
            "worstPairs": [p.to_dict() for p in self.worst_pairs()],
            # Only scored pairs: unscored ones (weak real association) carry no score, and
            # listing every pair of a wide table would bloat report.json quadratically.
            "pairScores": [p.to_dict() for p in self.pair_scores if p.score is not None],
            "pairsTotal": len(self.pair_scores),
            "validityScores": [c.to_dict() for c in self.validity_scores],
            "sdtypes": dict(self.sdtypes),
            "excludedColumns": dict(self.excluded_columns),
            "sampleRows": {"real": self.real_rows, "synthetic": self.synthetic_rows},
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def _number(value: Any) -> float | None:
    """A finite float, or ``None`` for missing/NaN (JSON has no NaN)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _normalise_sdtype(sdtype: str) -> str:
    lowered = sdtype.strip().lower()
    return _ALIASES.get(lowered, lowered)


def guess_sdtype(series: pd.Series) -> str:
    """Kind of a column without a hint from the analyze stage."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        return "numerical"
    non_null = series.dropna()
    distinct = int(non_null.nunique())
    if distinct >= ID_LIKE_MIN_DISTINCT and distinct > ID_LIKE_UNIQUE_FRACTION * len(non_null):
        return "id"
    return "categorical"


def _column_kinds(
    real: pd.DataFrame, synthetic: pd.DataFrame, sdtypes: dict[str, str] | None
) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({column: sdtype} of scored columns, {column: reason} of excluded ones)."""
    hints = {name: _normalise_sdtype(kind) for name, kind in (sdtypes or {}).items()}
    scored: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for name in real.columns:
        column = str(name)
        sdtype = hints.get(column) or guess_sdtype(real[name])
        if sdtype not in SCORED_SDTYPES:
            what = {"id": "an identifier", "text": "free text"}.get(sdtype, "personal data")
            excluded[column] = f"sdtype {sdtype!r}: {what} is regenerated, not modelled"
        elif real[name].isna().all():
            excluded[column] = "every real value is missing"
        elif name not in synthetic.columns:
            excluded[column] = "missing from the synthetic data"
        else:
            scored[column] = sdtype
    return scored, excluded


def _coerce(series: pd.Series, sdtype: str) -> pd.Series:
    """Bring a column to the dtype SDMetrics expects for its sdtype."""
    if sdtype == "numerical" and not pd.api.types.is_numeric_dtype(series):
        return pd.to_numeric(series, errors="coerce")
    if sdtype == "numerical" and pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if sdtype == "datetime":
        values = pd.to_datetime(series, errors="coerce", utc=True)
        return values.dt.tz_localize(None)
    if sdtype == "categorical" and isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(object)
    return series


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True)


def _property_scores(report: Any) -> dict[str, float | None]:
    props = report.get_properties()
    return {str(row["Property"]): _number(row["Score"]) for _, row in props.iterrows()}


def _column_details(report: Any, prop: str) -> list[ColumnScore]:
    details = report.get_details(prop, TABLE)
    if "Column" not in details.columns:
        return []
    return [
        ColumnScore(str(row["Column"]), str(row["Metric"]), _number(row["Score"]))
        for _, row in details.iterrows()
    ]


def _pair_details(report: Any) -> list[PairScore]:
    details = report.get_details("Column Pair Trends", TABLE)
    pairs: list[PairScore] = []
    for _, row in details.iterrows():
        real_corr = _number(row.get("Real Correlation"))
        if real_corr is None:
            real_corr = _number(row.get("Real Association"))
        meets = row.get("Meets Threshold?")
        pairs.append(
            PairScore(
                column_1=str(row["Column 1"]),
                column_2=str(row["Column 2"]),
                metric=str(row["Metric"]),
                score=_number(row["Score"]),
                real_correlation=real_corr,
                synthetic_correlation=_number(row.get("Synthetic Correlation")),
                contributes=True if meets is None or pd.isna(meets) else bool(meets),
            )
        )
    return pairs


def evaluate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    sdtypes: dict[str, str] | None,
    sample_rows: int,
    seed: int,
) -> FidelityResult:
    """Score how faithfully ``synthetic`` reproduces ``real`` with SDMetrics.

    Args:
        real: The real table (training data or all of it).
        synthetic: The generated table.
        sdtypes: ``{column: sdtype}`` hints from the analyze stage (SDV sdtypes such as
            ``numerical``, ``categorical``, ``id``, ``email``; analysis kinds such as
            ``numeric`` are accepted too). Only numerical, categorical, boolean and datetime
            columns are scored. Columns without a hint are typed from their dtype.
        sample_rows: At most this many rows of each table are scored (seeded sample).
        seed: Seed of the samples.

    Returns:
        The scores. A report SDMetrics cannot compute leaves its scores ``None`` and says why
        in ``notes``; this function does not raise for bad data.
    """
    from sdmetrics.reports import DiagnosticReport, QualityReport

    started = time.perf_counter()

    kinds, excluded = _column_kinds(real, synthetic, sdtypes)
    real_s = _sample(real, sample_rows, seed)
    synth_s = _sample(synthetic, sample_rows, seed + 1)
    notes: list[str] = []
    if real_s.empty or synth_s.empty:
        notes.append("nothing to score: the real or the synthetic table has no rows")
        kinds = {}

    columns = list(kinds)
    real_q = pd.DataFrame({c: _coerce(real_s[c], kinds[c]) for c in columns})
    synth_q = pd.DataFrame({c: _coerce(synth_s[c], kinds[c]) for c in columns})
    metadata = {
        "tables": {TABLE: {"columns": {c: {"sdtype": kinds[c]} for c in columns}}},
    }
    quality: dict[str, float | None] = {}
    column_scores: list[ColumnScore] = []
    pair_scores: list[PairScore] = []
    if columns:
        try:
            report = QualityReport()
            report.generate({TABLE: real_q}, {TABLE: synth_q}, metadata, verbose=False)
            quality = _property_scores(report)
            quality["score"] = _number(report.get_score())
            column_scores = _column_details(report, "Column Shapes")
            pair_scores = _pair_details(report) if len(columns) > 1 else []
        except Exception as exc:  # noqa: BLE001 - reported, and the gate fails on None
            notes.append(f"quality report failed: {type(exc).__name__}: {exc}")
    elif not notes:
        notes.append("no column can be scored (all are identifiers, personal data or empty)")

    # The diagnostic also sees synthetic columns the real table lacks (and real columns the
    # synthetic table lacks): Data Structure is the property that should catch them.
    diagnostic: dict[str, float | None] = {}
    validity: list[ColumnScore] = []
    missing = [c for c in excluded if excluded[c] == "missing from the synthetic data"]
    extra = [str(c) for c in synth_s.columns if c not in real_s.columns]
    if columns or missing:
        diag_columns = {c: {"sdtype": kinds[c]} for c in columns}
        diag_columns.update({c: {"sdtype": "categorical"} for c in missing})
        real_d = real_q.assign(**{c: real_s[c].astype(str) for c in missing})
        synth_d = synth_q.assign(**{c: synth_s[c] for c in extra})
        try:
            report = DiagnosticReport()
            report.generate(
                {TABLE: real_d},
                {TABLE: synth_d},
                {"tables": {TABLE: {"columns": diag_columns}}},
                verbose=False,
            )
            diagnostic = _property_scores(report)
            diagnostic["score"] = _number(report.get_score())
            validity = _column_details(report, "Data Validity")
        except Exception as exc:  # noqa: BLE001 - reported, and the gate fails on None
            notes.append(f"diagnostic report failed: {type(exc).__name__}: {exc}")

    return FidelityResult(
        score=quality.get("score"),
        column_shapes=quality.get("Column Shapes"),
        column_pair_trends=quality.get("Column Pair Trends"),
        diagnostic_score=diagnostic.get("score"),
        data_validity=diagnostic.get("Data Validity"),
        data_structure=diagnostic.get("Data Structure"),
        column_scores=column_scores,
        pair_scores=pair_scores,
        validity_scores=validity,
        sdtypes=kinds,
        excluded_columns=excluded,
        real_rows=len(real_s),
        synthetic_rows=len(synth_s),
        seconds=round(time.perf_counter() - started, 3),
        notes=notes,
    )


def column_shape(real: pd.Series, synthetic: pd.Series, sdtype: str | None = None) -> float | None:
    """SDMetrics column shape of one column: KSComplement (numeric, datetime) or TVComplement.

    ``None`` when either side holds no value.
    """
    from sdmetrics.single_column import KSComplement, TVComplement

    kind = _normalise_sdtype(sdtype) if sdtype else guess_sdtype(real)
    real, synthetic = real.dropna(), synthetic.dropna()
    if real.empty or synthetic.empty:
        return None
    if kind in ("numerical", "datetime"):
        real, synthetic = _coerce(real, kind), _coerce(synthetic, kind)
        return float(KSComplement.compute(real, synthetic))
    return float(TVComplement.compute(real.astype(str), synthetic.astype(str)))
