"""``run_multitable``: a MultiTableSchema and a SynthesisJob in, a synthetic database out.

One call does what the single-table pipeline's three stages do, for a whole schema::

    read every table → check keys → resolve orphans → choose the strategy → fit → sample
    → check every foreign and primary key → write <table>.<format> → score → gate
    → report.json + report.html

Nothing is written as output before the keys are checked: a database with a foreign-key
violation or a duplicate primary key fails the job (``EngineError``) with ``report.json``
saying where, and no table files. The gate is applied last, after everything is written,
like the single-table ``validate`` stage.

Artifacts under the store's root::

    <table>.<format>     one synthetic table per schema table
    report.json          strategy and why, scores, keys checked, orphans, timings
    report.html          the same for people, with cardinality plots
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from tabular_runner.errors import EngineError, GateFailedError, UserInputError
from tabular_runner.multitable.graph import SchemaGraph, build_graph, check_keys
from tabular_runner.multitable.integrity import (
    foreign_key_violations,
    primary_key_duplicates,
    resolve_orphans,
)
from tabular_runner.multitable.strategies import (
    HmaStrategy,
    IndependentStrategy,
    StrategyChoice,
    choose_strategy,
)
from tabular_runner.spec import (
    DataFormat,
    GeneratorSpec,
    MultiTableSchema,
    SynthesisJob,
)

if TYPE_CHECKING:
    from tabular_runner.storage.base import ArtifactStore
    from tabular_runner.storage.s3 import S3Settings

STAGE = "multitable"


class RunContext(Protocol):
    """What ``run_multitable`` needs of the pipeline's ``StageContext`` (same fields)."""

    # Read-only members, so any object with these attributes fits (a dataclass included).
    @property
    def base_dir(self) -> Path:
        """Folder that relative ``file://`` uris resolve against."""

    @property
    def s3(self) -> S3Settings | None:
        """S3 settings for ``s3://`` sources, if any."""

    @property
    def progress(self) -> Callable[[str, int, int, str], None]:
        """``progress(stage, done, total, message)``."""

    @property
    def clock(self) -> Callable[[], float]:
        """Monotonic seconds."""


def check_job(schema: MultiTableSchema, job: SynthesisJob) -> GeneratorSpec:
    """Refuse job settings a multi-table run cannot honour; return the generator spec.

    Raises:
        UserInputError: naming the field (schemaRef, rows, constraints, generator).
    """
    spec = job.spec
    ref = spec.schema_ref
    if ref is not None and ref.name != schema.metadata.name:
        raise UserInputError(
            "spec.schemaRef.name",
            f"refers to MultiTableSchema {ref.name!r}, but the schema given is "
            f"{schema.metadata.name!r}",
            "add the MultiTableSchema document to the manifest or fix the name",
        )
    if spec.rows is not None:
        raise UserInputError(
            "spec.rows",
            "a multi-table job sizes the database by scale (root rows × scale), not rows",
            "remove rows and set scale (e.g. scale: 1.0)",
        )
    if spec.constraints:
        raise UserInputError(
            "spec.constraints",
            "constraints are not supported for multi-table jobs yet",
            "remove them; keys are always kept consistent",
        )
    if spec.from_model is not None:
        raise UserInputError(
            "spec.fromModel", "re-sampling a stored multi-table model is not supported yet"
        )
    if spec.generator is None:
        raise UserInputError(
            "spec.generator", "is missing", "set generator: {type: auto} (or resolve profileRef)"
        )
    return spec.generator


def load_tables(
    schema: MultiTableSchema, ctx: RunContext
) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, str]]]:
    """Read every table through ``read_table``; return frames and declared sdtype hints.

    Raises:
        UserInputError: unreadable sources, unusable tables, declared columns the data lacks.
    """
    from tabular_runner.analysis import check_data
    from tabular_runner.storage.tables import read_table

    frames: dict[str, pd.DataFrame] = {}
    hints: dict[str, dict[str, str]] = {}
    for i, table in enumerate(schema.spec.tables):
        where = f"spec.tables[{i}]"
        frame = read_table(
            table.source.uri,
            table.source.resolved_format(),
            base_dir=ctx.base_dir,
            s3=ctx.s3,
            field=f"{where}.source.uri",
        )
        frame.columns = [str(c) for c in frame.columns]
        check_data(frame, where)
        for j, column in enumerate(table.columns):
            if column.name not in frame.columns:
                raise UserInputError(
                    f"{where}.columns[{j}].name",
                    f"table {table.name!r} has no column {column.name!r}",
                    f"its columns: {', '.join(list(frame.columns)[:15])}",
                )
        frames[table.name] = frame
        hints[table.name] = {c.name: c.sdtype for c in table.columns if c.sdtype is not None}
    return frames, hints


def _put_json(store: ArtifactStore, key: str, payload: dict[str, Any]) -> None:
    store.put_bytes(key, json.dumps(payload, indent=2, default=str).encode(), "application/json")


def _round(value: float) -> float:
    return round(value, 3)


def run_multitable(
    schema: MultiTableSchema,
    job: SynthesisJob,
    out_store: ArtifactStore,
    ctx: RunContext,
) -> dict[str, Any]:
    """Synthesise a whole database and write its tables, ``report.json`` and ``report.html``.

    Args:
        schema: The MultiTableSchema (tables, keys, relationships, onOrphans).
        job: The SynthesisJob referencing it (``schemaRef``), with ``profileRef`` already
            resolved: generator (``auto``, ``hma`` or a single-table generator), ``scale``
            (multiplies the root tables' rows), ``seed``, ``validation``, ``qualityGate``,
            ``output.format``.
        out_store: Where the tables and reports go.
        ctx: The pipeline's ``StageContext`` (``base_dir`` for relative ``file://`` sources,
            ``s3``, ``progress``, ``clock``).

    Returns:
        The report (also in ``report.json``).

    Raises:
        UserInputError: bad schema, job or data (including orphans with ``onOrphans: error``).
        EngineError: a generator failed, or the output broke a key (report still written).
        GateFailedError: the quality gate failed (everything still written).
    """
    from tabular_runner.pipeline import split_indices
    from tabular_runner.storage.tables import write_table

    clock = ctx.clock
    progress = ctx.progress
    spec = job.spec
    timings: dict[str, float] = {}
    started = clock()

    generator = check_job(schema, job)
    graph = build_graph(schema.spec)
    progress(STAGE, 0, 6, "reading tables")
    frames, hints = load_tables(schema, ctx)
    check_keys(graph, frames)
    frames, orphan_actions = resolve_orphans(frames, graph)
    timings["read"] = _round(clock() - started)

    total_rows = sum(len(f) for f in frames.values())
    choice = choose_strategy(graph, generator, total_rows)
    scale = spec.scale if spec.scale is not None else 1.0
    splits = {
        t: split_indices(len(f), spec.validation.holdout_fraction, spec.seed)
        for t, f in frames.items()
    }
    train_rows = {t: s[0] for t, s in splits.items()}

    progress(STAGE, 1, 6, f"training ({choice.strategy})")
    step = clock()
    strategy: IndependentStrategy | HmaStrategy
    if choice.strategy == "hma":
        strategy = HmaStrategy(graph, seed=spec.seed, hints=hints)
    else:
        assert choice.table_generator is not None
        table_generator = GeneratorSpec(
            type=choice.table_generator,
            params=dict(generator.params) if generator.type is choice.table_generator else {},
        )
        strategy = IndependentStrategy(graph, table_generator, seed=spec.seed, hints=hints)
    strategy.fit(frames, train_rows)
    timings["training"] = _round(clock() - step)

    progress(STAGE, 2, 6, "generating")
    step = clock()
    synthetic = strategy.sample(scale, spec.seed)
    timings["generation"] = _round(clock() - step)

    progress(STAGE, 3, 6, "checking keys")
    step = clock()
    violations = foreign_key_violations(synthetic, graph)
    duplicates = primary_key_duplicates(synthetic, graph)
    timings["integrity"] = _round(clock() - step)

    report: dict[str, Any] = {
        "job": job.metadata.name,
        "schema": schema.metadata.name,
        "kind": "multi-table",
        "strategy": choice.strategy,
        "strategyReason": choice.reason,
        "generator": generator.type.value,
        "tableGenerator": choice.table_generator.value if choice.table_generator else None,
        "scale": scale,
        "seed": spec.seed,
        "graph": graph.to_dict(),
        "rowsSource": {t: len(frames[t]) for t in graph.order},
        "rowsGenerated": {t: len(synthetic[t]) for t in graph.order},
        "orphans": [a.to_dict() for a in orphan_actions],
        "foreignKeyViolations": {v.relation.name: v.violations for v in violations},
        "foreignKeyChecks": [v.to_dict() for v in violations],
        "primaryKeyDuplicates": duplicates,
        "strategyDetails": strategy.details(),
    }
    broken = sum(v.violations for v in violations) + sum(duplicates.values())
    if broken:
        report["timings"] = timings
        _put_json(out_store, "report.json", report)
        raise EngineError(
            f"the synthetic database breaks {broken} key(s): "
            + ", ".join(f"{v.relation.name}: {v.violations}" for v in violations if v.violations)
            + (f"; duplicate primary keys {duplicates}" if sum(duplicates.values()) else "")
            + "; no table was written"
        )

    progress(STAGE, 4, 6, "writing tables")
    step = clock()
    fmt = DataFormat(spec.output.format)
    report["output"] = {
        "format": fmt.value,
        "tables": {
            t: write_table(synthetic[t], out_store, f"{t}.{fmt.value}", fmt) for t in graph.order
        },
    }
    timings["write"] = _round(clock() - step)

    progress(STAGE, 5, 6, "scoring")
    step = clock()
    scores = _score(frames, synthetic, splits, graph, strategy, choice, job)
    report.update(scores)
    timings["validate"] = _round(clock() - step)
    timings["total"] = _round(clock() - started)
    report["timings"] = timings

    from tabular_runner.quality import gate

    verdict = gate.evaluate(
        spec.quality_gate,
        fidelity=report["fidelityScore"],
        diagnostic=report["diagnosticScore"],
        privacy_risk=report["privacyRisk"],
        dcr_share=report["dcrShare"],
    )
    report["gate"] = verdict.to_dict()
    _put_json(out_store, "report.json", report)
    from tabular_runner.multitable.report_html import render_multitable

    html = render_multitable(report, frames, synthetic, graph)
    out_store.put_bytes("report.html", html.encode(), "text/html")
    progress(STAGE, 6, 6, "report stored")
    if not verdict.passed:
        raise GateFailedError(f"quality gate failed: {verdict.reason}")
    return report


def _score(
    real: dict[str, pd.DataFrame],
    synthetic: dict[str, pd.DataFrame],
    splits: dict[str, tuple[Any, Any]],
    graph: SchemaGraph,
    strategy: IndependentStrategy | HmaStrategy,
    choice: StrategyChoice,
    job: SynthesisJob,
) -> dict[str, Any]:
    """Cardinality, SDMetrics multi-table reports, per-table fidelity and privacy."""
    from tabular_runner.multitable.quality import cardinality_scores, sdmetrics_reports
    from tabular_runner.multitable.strategies import table_analysis
    from tabular_runner.quality import fidelity, privacy

    validation = job.spec.validation
    seed = job.spec.seed
    sdtypes: dict[str, dict[str, str]] = {}
    tables: dict[str, Any] = {}
    for table in graph.order:
        analysis = (
            strategy.plans[table].analysis
            if isinstance(strategy, IndependentStrategy)
            else table_analysis(real[table], {}, seed)
        )
        sdtypes[table] = analysis.sdtypes()
        keys = graph.key_columns(table) | {
            c for r in graph.children_of(table) for c in r.parent_key
        }
        scored = [c for c in analysis.modelled_columns if c not in keys]
        train_idx, holdout_idx = splits[table]
        train = real[table].iloc[train_idx]
        entry: dict[str, Any] = {"scoredColumns": scored}
        if scored:
            fid = fidelity.evaluate(
                train[scored],
                synthetic[table][scored],
                sdtypes={c: t for c, t in sdtypes[table].items() if c in scored},
                sample_rows=validation.quality_sample_rows,
                seed=seed,
            )
            entry["fidelityScore"] = fid.score
            entry["diagnosticScore"] = fid.diagnostic_score
            entry["columnShapes"] = fid.column_shapes
            entry["columnPairTrends"] = fid.column_pair_trends
            entry["fidelity"] = fid.to_dict()
        else:
            entry["fidelityScore"] = None
        if not validation.privacy or not scored:
            entry["privacy"] = {"computed": False, "reason": "disabled or no non-key column"}
        elif choice.strategy == "hma":
            entry["privacy"] = {
                "computed": False,
                "reason": "HMA trains on every row (a parent row cannot be held out without "
                "orphaning its children), so there is no holdout to compare against",
            }
        elif len(holdout_idx) < 10:
            entry["privacy"] = {"computed": False, "reason": "fewer than 10 holdout rows"}
        else:
            priv = privacy.evaluate(
                train[scored],
                real[table].iloc[holdout_idx][scored],
                synthetic[table][scored],
                sample_rows=validation.privacy_sample_rows,
                attacks=validation.attacks,
                seed=seed,
            )
            entry["privacy"] = priv.to_dict()
        tables[table] = entry

    multi = sdmetrics_reports(
        real, synthetic, graph, sdtypes, sample_rows=validation.quality_sample_rows, seed=seed
    )
    cardinality = cardinality_scores(real, synthetic, graph)
    per_table = [t["fidelityScore"] for t in tables.values() if t.get("fidelityScore") is not None]
    quality_score = multi["quality"]["score"]
    fidelity_score = (
        quality_score
        if quality_score is not None
        else (round(float(np.mean(per_table)), 6) if per_table else None)
    )
    risks = [
        t["privacy"].get("maxRisk")
        for t in tables.values()
        if t["privacy"].get("maxRisk") is not None
    ]
    shares = [
        t["privacy"].get("dcrShare")
        for t in tables.values()
        if t["privacy"].get("dcrShare") is not None
    ]
    similarities = [c["shapeSimilarity"] for c in cardinality if c["shapeSimilarity"] is not None]
    return {
        "fidelityScore": fidelity_score,
        "diagnosticScore": multi["diagnostic"]["score"],
        "cardinalityShapeSimilarity": (
            round(float(np.mean(similarities)), 6) if similarities else None
        ),
        "cardinality": cardinality,
        "sdmetrics": multi,
        "tables": tables,
        "privacyRisk": max(risks) if risks else None,
        "privacyScore": (1.0 - max(risks)) if risks else None,
        "dcrShare": max(shares) if shares else None,
    }


__all__ = ["RunContext", "check_job", "load_tables", "run_multitable"]
