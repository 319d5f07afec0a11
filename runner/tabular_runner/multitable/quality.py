"""Scores of a synthetic database: SDMetrics multi-table reports, per table, per relationship.

* **Cardinality** per relationship: :func:`~.cardinality.shape_similarity` on *all* rows
  (counts per parent are cheap), composite keys included. SDMetrics' own breakdown is keyed
  by (parent, child), so two relationships between the same tables (flights → airports as
  origin and as dest) would overwrite each other there; this one is keyed by relationship.
* **SDMetrics multi-table QualityReport** (Column Shapes, Column Pair Trends, Cardinality,
  Intertable Trends) and **DiagnosticReport** (Data Validity, Data Structure, Relationship
  Validity) on a *consistent subsample*: parents first, each table sampled to at most
  ``sample_rows`` rows among those whose parents were kept, so the sample has no orphan
  that the full data lacks. SDMetrics metadata has no composite keys: a composite key is
  scored through one column of its joined parts (:func:`with_joined_keys`).
* **Per table**: :func:`tabular_runner.quality.fidelity.evaluate` (the single-table quality
  score of every table), and :func:`tabular_runner.quality.privacy.evaluate` on the table's
  non-key columns against a holdout the table's model did not see.

``fidelityScore`` of the database is the SDMetrics multi-table quality score; when that
report cannot run, the mean of the per-table scores.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.multitable.cardinality import children_per_parent, shape_similarity
from tabular_runner.multitable.graph import SchemaGraph
from tabular_runner.multitable.integrity import key_strings

_SDMETRICS_SDTYPES = frozenset({"numerical", "categorical", "boolean", "datetime", "id"})


def cardinality_scores(
    real: Mapping[str, pd.DataFrame], synthetic: Mapping[str, pd.DataFrame], graph: SchemaGraph
) -> list[dict[str, Any]]:
    """Per relationship: children-per-parent shape similarity and summary statistics."""
    out: list[dict[str, Any]] = []
    for rel in graph.relations:
        r = children_per_parent(real[rel.parent], rel.parent_key, real[rel.child], rel.child_key)
        s = children_per_parent(
            synthetic[rel.parent], rel.parent_key, synthetic[rel.child], rel.child_key
        )
        out.append(
            {
                "relationship": rel.name,
                "shapeSimilarity": shape_similarity(r, s),
                "realMeanChildren": round(float(r.mean()), 4) if len(r) else None,
                "syntheticMeanChildren": round(float(s.mean()), 4) if len(s) else None,
                "realMaxChildren": int(r.max()) if len(r) else None,
                "syntheticMaxChildren": int(s.max()) if len(s) else None,
            }
        )
    return out


def consistent_sample(
    frames: Mapping[str, pd.DataFrame], graph: SchemaGraph, rows: int, seed: int
) -> dict[str, pd.DataFrame]:
    """Sample each table to at most ``rows`` rows, keeping only rows whose parents were kept."""
    out: dict[str, pd.DataFrame] = {}
    for i, table in enumerate(graph.order):
        frame = frames[table].reset_index(drop=True)
        keep = np.ones(len(frame), dtype=bool)
        for rel in graph.parents_of(table):
            child = key_strings(frame, rel.child_key)
            kept = set(key_strings(out[rel.parent], rel.parent_key).dropna().tolist())
            keep &= (child.isna() | child.isin(kept)).to_numpy()
        frame = frame.loc[keep]
        if len(frame) > rows:
            frame = frame.sample(n=rows, random_state=seed + i)
        out[table] = frame.reset_index(drop=True)
    return out


def _joined_key(key: tuple[str, ...]) -> str:
    """The column that stands for a composite key in SDMetrics' tables: ``(origin,time_hour)``."""
    return "(" + ",".join(key) + ")"


def _scored_relations(graph: SchemaGraph) -> list[Any]:
    """Relationships SDMetrics can score: those that reference their parent's primary key."""
    return [r for r in graph.relations if graph.primary_keys.get(r.parent) == r.parent_key]


def with_joined_keys(
    frames: Mapping[str, pd.DataFrame], graph: SchemaGraph
) -> dict[str, pd.DataFrame]:
    """The frames with one column per composite key (its parts joined), for SDMetrics.

    SDMetrics metadata has single-column keys only; a composite primary key and each foreign
    key referencing it become one string column (:func:`_joined_key`), so composite
    relationships are scored like the others (Cardinality, Intertable Trends).
    """
    out = {t: frame.reset_index(drop=True) for t, frame in frames.items()}
    for rel in _scored_relations(graph):
        if not rel.composite:
            continue
        for table, key in ((rel.parent, rel.parent_key), (rel.child, rel.child_key)):
            name = _joined_key(key)
            if name not in out[table].columns:
                out[table] = out[table].assign(**{name: key_strings(out[table], key)})
    return out


def _sdmetrics_metadata(
    graph: SchemaGraph, sdtypes: Mapping[str, Mapping[str, str]], frames: Mapping[str, pd.DataFrame]
) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for table in graph.tables:
        keys = graph.key_columns(table) | {
            c for r in graph.children_of(table) for c in r.parent_key
        }
        keys |= {_joined_key(r.parent_key) for r in graph.children_of(table) if r.composite}
        keys |= {_joined_key(r.child_key) for r in graph.parents_of(table) if r.composite}
        columns: dict[str, Any] = {}
        for column in frames[table].columns:
            name = str(column)
            sdtype = "id" if name in keys else sdtypes.get(table, {}).get(name, "")
            if sdtype in _SDMETRICS_SDTYPES:
                columns[name] = {"sdtype": sdtype}
        entry: dict[str, Any] = {"columns": columns}
        primary = graph.primary_keys.get(table, ())
        if len(primary) == 1:
            entry["primary_key"] = primary[0]
        elif primary and _joined_key(primary) in columns:
            entry["primary_key"] = _joined_key(primary)
        tables[table] = entry
    relationships = [
        {
            "parent_table_name": r.parent,
            "parent_primary_key": tables[r.parent]["primary_key"],
            "child_table_name": r.child,
            "child_foreign_key": r.child_key[0] if not r.composite else _joined_key(r.child_key),
        }
        for r in _scored_relations(graph)
        if "primary_key" in tables[r.parent]
    ]
    return {"tables": tables, "relationships": relationships}


def _coerce(frame: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """Only the described columns, with dtypes SDMetrics accepts."""
    out = {}
    for name, info in columns.items():
        values = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
        if info["sdtype"] == "numerical":
            values = pd.to_numeric(values, errors="coerce").astype(float)
        elif info["sdtype"] == "datetime":
            values = pd.to_datetime(
                values, errors="coerce", utc=True, format="mixed"
            ).dt.tz_localize(None)
        elif info["sdtype"] == "id":
            values = key_strings(pd.DataFrame({name: values}), (name,)).astype(object)
        elif info["sdtype"] == "categorical" and isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        out[name] = values.reset_index(drop=True)
    return pd.DataFrame(out)


def intertable_trends(report: Any, graph: SchemaGraph) -> list[dict[str, Any]]:
    """SDMetrics' Intertable Trends per relationship: the mean over its column pairs.

    Each pair is a parent column and a child column, compared in the child joined with its
    parent (correlation or contingency similarity); SDMetrics' property averages over every
    relationship, which hides a relationship whose child ignores its parent.
    """
    try:
        details = report.get_details("Intertable Trends")
    except Exception:  # noqa: BLE001 - no relationship scored: nothing to break down
        return []
    needed = {"Parent Table", "Child Table", "Foreign Key", "Score"}
    if details is None or details.empty or not needed <= set(details.columns):
        return []
    out: list[dict[str, Any]] = []
    for rel in graph.relations:
        foreign = rel.child_key[0] if not rel.composite else _joined_key(rel.child_key)
        rows = details[
            (details["Parent Table"] == rel.parent)
            & (details["Child Table"] == rel.child)
            & (details["Foreign Key"] == foreign)
        ]
        scores = pd.to_numeric(rows["Score"], errors="coerce").dropna()
        if scores.empty:
            continue
        out.append(
            {
                "relationship": rel.name,
                "score": round(float(scores.mean()), 6),
                "columnPairs": len(scores),
            }
        )
    return out


def _properties(report: Any) -> dict[str, float | None]:
    props = report.get_properties()
    return {str(row["Property"]): _finite(row["Score"]) for _, row in props.iterrows()}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) or np.isinf(number) else round(number, 6)


def sdmetrics_reports(
    real: Mapping[str, pd.DataFrame],
    synthetic: Mapping[str, pd.DataFrame],
    graph: SchemaGraph,
    sdtypes: Mapping[str, Mapping[str, str]],
    *,
    sample_rows: int,
    seed: int,
) -> dict[str, Any]:
    """SDMetrics multi-table QualityReport and DiagnosticReport on consistent samples."""
    from sdmetrics.reports.multi_table import DiagnosticReport, QualityReport

    started = time.perf_counter()
    real_s = with_joined_keys(consistent_sample(real, graph, sample_rows, seed), graph)
    synth_s = with_joined_keys(consistent_sample(synthetic, graph, sample_rows, seed + 1), graph)
    metadata = _sdmetrics_metadata(graph, sdtypes, real_s)
    real_q = {t: _coerce(real_s[t], metadata["tables"][t]["columns"]) for t in graph.tables}
    synth_q = {t: _coerce(synth_s[t], metadata["tables"][t]["columns"]) for t in graph.tables}
    out: dict[str, Any] = {
        "sampleRows": {
            t: {"real": len(real_s[t]), "synthetic": len(synth_s[t])} for t in graph.tables
        },
        "relationshipsScored": len(metadata["relationships"]),
        "notes": [],
    }
    left_out = len(graph.relations) - len(metadata["relationships"])
    if left_out:
        out["notes"].append(
            f"{left_out} relationship(s) referencing a parent column that is not its primary "
            "key are not in the SDMetrics reports; see cardinality"
        )
    for label, cls in (("quality", QualityReport), ("diagnostic", DiagnosticReport)):
        try:
            report = cls()
            report.generate(real_q, synth_q, metadata, verbose=False)
            out[label] = {"score": _finite(report.get_score()), "properties": _properties(report)}
            if label == "quality":
                out["intertableTrends"] = intertable_trends(report, graph)
        except Exception as exc:  # noqa: BLE001 - reported; the score is then None
            out[label] = {"score": None, "properties": {}}
            out["notes"].append(f"{label} report failed: {type(exc).__name__}: {exc}")
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out
