"""The single-table synthesis pipeline: ``train → generate → validate`` over ports.

Each stage is a function of (job, store, context) that reads its inputs from the
:class:`~tabular_runner.storage.base.ArtifactStore` and writes its outputs back there, so the
three stages can run in one process (``tabular-runner run``) or as three Kubernetes Jobs that
share nothing but the store (``tabular-runner stage …``). A stage returns a compact,
JSON-ready result dict — the stage protocol — that the operator reads from the pod's
termination message.

Artifacts under the store's root::

    analysis.json        detected schema (train)
    model.pkl            the trained generator (train)
    stages/<stage>.json  each stage's result
    stages/plan.json     ``auto``'s choice, when it belongs to another engine (train)
    output.<format>      the synthetic table (generate)
    constraints.json     rows repaired / rejected (generate)
    report.json          scores, gate, timings, everything (validate)
    report.html          the human-readable report (validate)

Engines (:mod:`tabular_runner.engines`): train and generate run in the engine of the job's
generator, validate always in ``core``. :func:`run_all` runs a stage of another engine through
``StageContext.run_in_engine`` (a subprocess in that engine's environment); a stage itself
never crosses engines, except that ``auto``'s train stage, when it picks another engine's
generator, stores the pick and returns ``{"handoff": engine}`` instead of training.

The real data never goes into the store: the validate stage re-reads the source and
re-derives the same train/holdout split from the job's seed. ``stages/train.json`` records
the source (``uri``, ``format``), which is what a ``fromModel`` job without a source of its
own reads (:mod:`tabular_runner.from_model`: such a job has no train stage; generate first
copies the earlier job's model into the store).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabular_runner import engines
from tabular_runner.errors import EngineError, GateFailedError, TabularError, UserInputError
from tabular_runner.profiles import resolve_profile as resolve_profile
from tabular_runner.spec import (
    DataFormat,
    GeneratorSpec,
    GeneratorType,
    SourceSpec,
    SynthesisJob,
    SynthesisJobSpec,
)
from tabular_runner.storage.base import get_json as _get_json
from tabular_runner.storage.base import put_json as _put_json

if TYPE_CHECKING:
    import pandas as pd

    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.constraints import Combination
    from tabular_runner.storage.base import ArtifactStore
    from tabular_runner.storage.s3 import S3Settings

STAGES = ("train", "generate", "validate")

ProgressFn = Callable[[str, int, int, str], None]
"""``progress(stage, done, total, message)``."""

EngineRunner = Callable[[str, str, "SynthesisJob", "ArtifactStore"], dict[str, Any]]
"""``run_in_engine(engine, stage, job, store) -> result``: one stage in another engine."""


def _no_progress(stage: str, done: int, total: int, message: str) -> None:
    """Progress sink that ignores everything."""


@dataclass
class StageContext:
    """What a stage needs besides the job and the store."""

    base_dir: Path = field(default_factory=Path.cwd)
    """Folder that relative ``file://`` uris resolve against (the manifest's folder)."""
    s3: S3Settings | None = None
    """The artifact store's identity (models of ``fromModel`` included)."""
    source_s3: S3Settings | None = None
    """The identity that reads ``s3://`` sources; from the environment when ``None``."""
    progress: ProgressFn = _no_progress
    clock: Callable[[], float] = time.perf_counter
    run_in_engine: EngineRunner | None = None
    """Runs a stage whose engine is not this process's (``None``: such a stage fails)."""


# ---------------------------------------------------------------------------------------
# Pure helpers


def target_rows(spec: SynthesisJobSpec, source_rows: int) -> int:
    """Rows to generate: ``rows``, else ``scale`` × source rows, else the source's row count."""
    if spec.rows is not None:
        return spec.rows
    if spec.scale is not None:
        return max(1, round(spec.scale * source_rows))
    return source_rows


def split_indices(n_rows: int, holdout_fraction: float, seed: int) -> tuple[Any, Any]:
    """Deterministic train/holdout split of ``range(n_rows)`` (numpy index arrays)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    n_holdout = int(round(n_rows * holdout_fraction))
    n_holdout = min(max(n_holdout, 1 if n_rows > 1 else 0), max(n_rows - 1, 0))
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def compact_result(result: dict[str, Any], limit: int = 4096) -> str:
    """Serialise a stage result for a termination message (Kubernetes keeps 4096 bytes)."""
    text = json.dumps(result, separators=(",", ":"), sort_keys=True, default=str)
    if len(text.encode()) <= limit:
        return text
    # Drop bulky detail, largest first, until it fits; the full result is in the store.
    slim = dict(result, truncated=True)
    bulky = sorted(
        (k for k, v in result.items() if isinstance(v, dict | list)),
        key=lambda k: len(json.dumps(result[k], default=str)),
        reverse=True,
    )
    for key in bulky:
        del slim[key]
        text = json.dumps(slim, separators=(",", ":"), sort_keys=True, default=str)
        if len(text.encode()) <= limit:
            return text
    return json.dumps(slim, separators=(",", ":"), sort_keys=True, default=str)[:limit]


# ---------------------------------------------------------------------------------------
# IO helpers


def _job_source(job: SynthesisJob, train_result: dict[str, Any] | None) -> SourceSpec:
    """The job's source, or for ``fromModel`` without one, the source the model was trained on."""
    from tabular_runner.from_model import recorded_source

    if job.spec.source is not None:
        return job.spec.source
    recorded = recorded_source(train_result) if train_result is not None else None
    if recorded is None:
        raise UserInputError(
            "spec.source",
            "is missing, and the model's stages/train.json records no source",
            "set spec.source to the data the model was trained on",
        )
    return recorded


def _recorded(source: SourceSpec, ctx: StageContext) -> dict[str, str]:
    """``source`` as ``stages/train.json`` records it: an absolute uri and the format."""
    from tabular_runner.storage import local_path

    uri = source.uri
    if uri.startswith("file://"):
        uri = local_path(uri, base_dir=ctx.base_dir, field="spec.source.uri").as_uri()
    return {"uri": uri, "format": source.resolved_format().value}


def _read_source(source: SourceSpec, ctx: StageContext) -> pd.DataFrame:
    from tabular_runner.analysis import check_data
    from tabular_runner.storage.tables import read_table

    frame = read_table(
        source.uri,
        source.resolved_format(),
        base_dir=ctx.base_dir,
        s3=ctx.source_s3,
        field="spec.source.uri",
    )
    check_data(frame, "spec.source")
    return frame


def _data_columns(modelled: list[str], combos: list[Combination]) -> set[str]:
    """The data columns behind the model's columns (a fixed combination's parts included)."""
    columns = set(modelled)
    for combo in combos:
        columns.discard(combo.name)
        columns.update(combo.columns)
    return columns


def _stored_plan(store: ArtifactStore) -> tuple[GeneratorSpec, str] | None:
    """``auto``'s choice stored by a train stage of another engine, if any."""
    try:
        plan = json.loads(store.get_bytes("stages/plan.json"))
    except FileNotFoundError:
        return None
    spec = GeneratorSpec(type=GeneratorType(plan["generator"]), params=plan["generatorParams"])
    return spec, str(plan["generatorReason"])


def _load_analysis(store: ArtifactStore) -> TableAnalysis:
    from tabular_runner.analysis import TableAnalysis

    return TableAnalysis.from_dict(_get_json(store, "analysis.json", "stage generate"))


# ---------------------------------------------------------------------------------------
# Stages


def stage_train(job: SynthesisJob, store: ArtifactStore, ctx: StageContext) -> dict[str, Any]:
    """Analyse the source, choose and train the generator, store the model."""
    from tabular_runner.analysis import analyze
    from tabular_runner.constraints import check_constraints, merge_combinations
    from tabular_runner.generators import check_params, create_synthesizer, resolve_auto
    from tabular_runner.generators.base import FitContext
    from tabular_runner.generators.device import cuda_available

    spec = job.spec
    if spec.from_model is not None:
        raise UserInputError(
            "spec.fromModel",
            "a fromModel job has no train stage: it re-samples an earlier job's model",
            "run its generate and validate stages",
        )
    if spec.source is None:
        raise UserInputError(
            "spec.source", "is missing", "set source (single table) or schemaRef (multi-table)"
        )
    started = ctx.clock()
    ctx.progress("train", 0, 3, "reading source")
    frame = _read_source(spec.source, ctx)
    ctx.progress("train", 1, 3, "analysing")
    analysis = analyze(frame, seed=spec.seed)
    check_constraints(spec.constraints, list(frame.columns), analysis)
    train_idx, holdout_idx = split_indices(len(frame), spec.validation.holdout_fraction, spec.seed)
    train = frame.iloc[train_idx][analysis.modelled_columns].reset_index(drop=True)
    if train.shape[1] == 0:
        raise UserInputError(
            "spec.source",
            "every column is an identifier or personal data, so there is nothing to model",
            "include at least one non-identifying column",
        )

    assert spec.generator is not None  # resolve_profile guarantees it
    generator = spec.generator
    use_gpu = bool(generator.params.get("useGpu", spec.resources.train.gpu > 0))
    reason = f"requested {generator.type.value}"
    if generator.type is GeneratorType.AUTO:
        plan = _stored_plan(store)
        if plan is not None:  # auto chose in another engine; follow that choice
            generator, reason = plan
        else:
            generator, reason = resolve_auto(
                generator,
                n_rows=len(train),
                n_columns=train.shape[1],
                privacy=spec.privacy,
                gpu=use_gpu and cuda_available(),
                argn=engines.auto_may_use(engines.ARGN),
            )
            generator, reason = _serving_controls(generator, reason, spec)
            engine = engines.engine_for(generator.type)
            if engine != engines.current_engine():
                handoff = {
                    "stage": "train",
                    "ok": True,
                    "handoff": engine,
                    "generator": generator.type.value,
                    "generatorParams": generator.params,
                    "generatorReason": reason,
                }
                _put_json(store, "stages/plan.json", handoff)
                ctx.progress("train", 3, 3, f"auto chose {generator.type.value} ({engine})")
                return handoff
    check_params(generator)
    if spec.generation is not None and spec.generation.requested:
        from tabular_runner.generators import check_controls

        check_controls(generator.type, spec.generation.requested)  # before training, not after

    synthesizer = create_synthesizer(generator, spec.privacy)
    # Fixed combinations are modelled as one joint column (see constraints.merge_combinations).
    model_frame, combos = merge_combinations(train, spec.constraints)
    folded = {c for combo in combos for c in combo.columns}

    def kind(name: str) -> list[str]:
        return [c for c in analysis.columns_of_kind(name) if c not in folded]

    fit_context = FitContext(
        seed=spec.seed,
        use_gpu=use_gpu,
        epsilon=spec.privacy.epsilon if spec.privacy else None,
        delta=spec.privacy.delta if spec.privacy else None,
        categorical_columns=kind("categorical") + [combo.name for combo in combos],
        numerical_columns=kind("numeric"),
        datetime_columns=kind("datetime"),
        boolean_columns=kind("boolean"),
        progress=lambda done, total, msg: ctx.progress("train", done, total, msg),
    )
    ctx.progress("train", 2, 3, f"training {generator.type.value}")
    fit_started = ctx.clock()
    synthesizer.fit(model_frame, fit_context)
    training_s = ctx.clock() - fit_started

    with tempfile.TemporaryDirectory(prefix="aumos-train-") as tmp:
        model_path = Path(tmp) / "model.pkl"
        synthesizer.save(model_path)
        store.put_file("model.pkl", model_path)
    _put_json(store, "analysis.json", analysis.to_dict())
    accounting = synthesizer.privacy
    result: dict[str, Any] = {
        "stage": "train",
        "ok": True,
        "generator": generator.type.value,
        "generatorReason": reason,
        "engine": engines.current_engine(),
        "device": getattr(synthesizer, "device", "cpu"),
        "rowsSource": len(frame),
        "rowsTrain": len(train_idx),
        "rowsHoldout": len(holdout_idx),
        "rowsTarget": target_rows(spec, len(frame)),
        "source": _recorded(spec.source, ctx),
        "modelledColumns": list(train.columns),
        "combinations": [combo.to_dict() for combo in combos],
        "trainingTimeS": round(training_s, 3),
        "stageTimeS": round(ctx.clock() - started, 3),
        "modelUri": f"{store.uri.rstrip('/')}/model.pkl",
    }
    if accounting is not None:
        result["epsilonSpent"] = accounting.epsilon_spent
        result["privacyAccounting"] = accounting.to_dict()
    _put_json(store, "stages/train.json", result)
    ctx.progress("train", 3, 3, "model stored")
    return result


def _serving_controls(
    generator: GeneratorSpec, reason: str, spec: SynthesisJobSpec
) -> tuple[GeneratorSpec, str]:
    """``auto``'s pick, or the generator that serves the job's generation controls."""
    from tabular_runner.generators import CONTROLS, TEMPERATURE

    requested = set(spec.generation.requested) if spec.generation is not None else set()
    if requested <= CONTROLS[generator.type]:
        return generator, reason
    argn = engines.auto_may_use(engines.ARGN)
    if spec.privacy is not None or TEMPERATURE in requested:
        if not argn:
            return generator, reason  # refused at training with the generators that serve it
        pick = GeneratorType.TABULARARGN
    else:
        pick = GeneratorType.GAUSSIAN_COPULA
    asked = ", ".join(sorted(requested - CONTROLS[generator.type]))
    params = {k: v for k, v in generator.params.items() if k == "useGpu"}
    return GeneratorSpec(type=pick, params=params), (
        f"{reason}; generation.{asked} needs a generator that serves it: {pick.value}"
    )


def stage_generate(job: SynthesisJob, store: ArtifactStore, ctx: StageContext) -> dict[str, Any]:
    """Sample the trained model, restore identifiers and PII as fakes, enforce constraints."""
    from tabular_runner.constraints import Combination, enforce, split_combinations
    from tabular_runner.from_model import check_source_fits, import_model
    from tabular_runner.generators import load_synthesizer
    from tabular_runner.generators.base import SampleRequest
    from tabular_runner.pii import regenerate_sensitive
    from tabular_runner.storage.tables import write_table

    spec = job.spec
    started = ctx.clock()
    if spec.from_model is not None:
        ctx.progress("generate", 0, 3, "copying the model of an earlier job")
        import_model(job, store, base_dir=ctx.base_dir, s3=ctx.s3)
    train_result = _get_json(store, "stages/train.json", "stage generate")
    analysis = _load_analysis(store)
    real = _read_source(_job_source(job, train_result), ctx)
    if spec.from_model is not None and spec.source is not None:
        check_source_fits(list(real.columns), analysis)
    if spec.rows is not None:
        rows = spec.rows
    elif spec.from_model is not None:
        rows = target_rows(spec, len(real))
    else:
        rows = int(train_result["rowsTarget"])
    ctx.progress("generate", 0, 3, "loading model")
    with tempfile.TemporaryDirectory(prefix="aumos-generate-") as tmp:
        model_path = store.get_file("model.pkl", Path(tmp) / "model.pkl")
        synthesizer = load_synthesizer(model_path)

    combos = [Combination.from_dict(c) for c in train_result.get("combinations", [])]
    modelled = list(train_result["modelledColumns"])
    drawn = {"calls": 0, "rows": 0}
    plan = None
    if spec.generation is not None and spec.generation.requested:
        from tabular_runner import controls

        plan = controls.plan(
            spec.generation,
            GeneratorType(train_result["generator"]),
            analysis,
            [c for c in analysis.column_names if c in _data_columns(modelled, combos)],
            real,
            rows,
            combos,
            controls.Reader(ctx.base_dir, ctx.source_s3),
            spec.seed,
        )
        rows = plan.rows if plan.rows is not None else rows
    temperature = plan.temperature if plan is not None else None

    def finish(sampled: pd.DataFrame, seed: int) -> pd.DataFrame:
        if combos:
            sampled = split_combinations(sampled, combos, modelled)
        batch = regenerate_sensitive(sampled, analysis, real, seed=seed, id_start=drawn["rows"])
        drawn["rows"] += len(batch)
        return batch

    def draw(n: int) -> pd.DataFrame:
        # Each batch gets its own seed and continues the id sequence of the ones before,
        # so resampled rows never repeat an identifier.
        drawn["calls"] += 1
        seed = spec.seed + drawn["calls"]
        if temperature is None:
            return finish(synthesizer.sample(n, seed=seed), seed)
        request = SampleRequest(temperature=temperature)
        return finish(synthesizer.sample_controlled(n, seed, request), seed)

    ctx.progress("generate", 1, 3, f"sampling {rows} rows")
    sample_started = ctx.clock()
    if plan is not None and plan.given is not None:
        from tabular_runner.constraints import enforce_rows
        from tabular_runner.controls import model_space

        given = model_space(plan.given, combos)
        fill = tuple(c for c in given.columns if c in plan.fill) + tuple(
            combo.name
            for combo in combos
            if combo.name in given.columns and set(combo.columns) & set(plan.fill)
        )
        table = plan.table

        def draw_given(positions: list[int], attempt: int) -> pd.DataFrame:
            drawn["calls"] += 1
            seed = spec.seed + drawn["calls"]
            request = SampleRequest(
                given=given.iloc[positions].reset_index(drop=True),
                fill=fill,
                temperature=temperature,
            )
            batch = finish(synthesizer.sample_controlled(len(positions), seed, request), seed)
            if table is not None:  # identifiers and personal data the table gives are kept
                rows_given = table.iloc[positions].reset_index(drop=True)
                for column in rows_given.columns:
                    if column in batch.columns and column not in given.columns:
                        present = rows_given[column].notna()
                        values = batch[column].astype(object)
                        values[present] = rows_given[column][present].astype(object)
                        batch[column] = values
            return batch

        synthetic = draw_given(list(range(rows)), 0)
        ctx.progress("generate", 2, 3, "enforcing constraints")
        synthetic, report = enforce_rows(
            synthetic, spec.constraints, real=real, regenerate=draw_given
        )
    else:
        synthetic = draw(rows)
        ctx.progress("generate", 2, 3, "enforcing constraints")
        synthetic, report = enforce(
            synthetic, spec.constraints, rows=rows, real=real, resample=draw
        )
    if len(synthetic) != rows:  # enforce() guarantees this; keep the promise visible.
        raise TabularError(f"generated {len(synthetic)} rows instead of {rows}")
    generation_s = ctx.clock() - sample_started
    key = f"output.{spec.output.format.value}"
    uri = write_table(synthetic, store, key, spec.output.format)
    constraints = report.to_dict()
    _put_json(store, "constraints.json", constraints)
    result: dict[str, Any] = {
        "stage": "generate",
        "ok": True,
        "rowsGenerated": len(synthetic),
        "generationTimeS": round(generation_s, 3),
        "stageTimeS": round(ctx.clock() - started, 3),
        "outputUri": uri,
        "outputFormat": spec.output.format.value,
        "constraints": constraints,
    }
    if plan is not None:
        result["generation"] = {
            "requested": plan.requested,
            "rows": rows,
            "filledColumns": list(plan.fill),
            **plan.notes,
        }
    if spec.from_model is not None:
        # The operator runs no train stage here: tell it what it would have learnt there.
        result["fromModel"] = train_result["fromModel"]
        result["generator"] = train_result["generator"]
        result["epsilonSpent"] = 0.0
    _put_json(store, "stages/generate.json", result)
    ctx.progress("generate", 3, 3, "output stored")
    return result


def stage_validate(job: SynthesisJob, store: ArtifactStore, ctx: StageContext) -> dict[str, Any]:
    """Score fidelity and privacy, apply the gate, write report.json and report.html.

    Raises:
        GateFailedError: after writing the reports, when the gate is not met.
    """
    from tabular_runner.from_model import check_source_fits
    from tabular_runner.quality import fidelity, gate, privacy
    from tabular_runner.report_html import render
    from tabular_runner.storage.tables import read_table

    spec = job.spec
    started = ctx.clock()
    train_result = _get_json(store, "stages/train.json", "stage validate")
    generate_result = _get_json(store, "stages/generate.json", "stage validate")
    analysis = _load_analysis(store)
    ctx.progress("validate", 0, 4, "reading data")
    real = _read_source(_job_source(job, train_result), ctx)
    if spec.from_model is not None and spec.source is not None:
        check_source_fits(list(real.columns), analysis)
    elif len(real) != int(train_result["rowsSource"]):
        raise UserInputError(
            "spec.source.uri",
            f"the source changed since training ({train_result['rowsSource']} rows then, "
            f"{len(real)} now)",
            "re-run the job from training",
        )
    key = f"output.{spec.output.format.value}"
    with tempfile.TemporaryDirectory(prefix="aumos-validate-") as tmp:
        local = store.get_file(key, Path(tmp) / key)
        synthetic = read_table(f"file://{local}", spec.output.format, base_dir=None, s3=None)
    train_idx, holdout_idx = split_indices(len(real), spec.validation.holdout_fraction, spec.seed)
    train, holdout = real.iloc[train_idx], real.iloc[holdout_idx]
    scored = analysis.modelled_columns
    sdtypes = {c: t for c, t in analysis.sdtypes().items() if c in scored}

    reference, quality_reference = train, "the real training rows"
    generation = spec.generation if spec.generation and spec.generation.requested else None
    if generation is not None and generation.rebalance is not None:
        from tabular_runner.controls import reweighted

        asked = generation.rebalance
        reference = reweighted(train, asked.column, asked.shares, spec.seed)
        quality_reference = (
            f"the real training rows reweighted to the asked shares of {asked.column} "
            "(each category keeps its own real rows)"
        )
    ctx.progress("validate", 1, 4, "fidelity (SDMetrics)")
    fid = fidelity.evaluate(
        reference[scored],
        synthetic[scored],
        sdtypes=sdtypes,
        sample_rows=spec.validation.quality_sample_rows,
        seed=spec.seed,
    )
    priv = None
    if spec.validation.privacy and len(holdout) >= 10:
        ctx.progress("validate", 2, 4, "privacy (Anonymeter, DCR)")
        priv = privacy.evaluate(
            train[scored],
            holdout[scored],
            synthetic[scored],
            sample_rows=spec.validation.privacy_sample_rows,
            attacks=spec.validation.attacks,
            seed=spec.seed,
        )
    ctx.progress("validate", 3, 4, "release gate")
    verdict = gate.evaluate(
        spec.quality_gate,
        fidelity=fid.score,
        diagnostic=fid.diagnostic_score,
        privacy_risk=priv.max_risk if priv else None,
        dcr_share=priv.dcr.share if priv else None,
    )
    report: dict[str, Any] = {
        "job": job.metadata.name,
        "generator": train_result["generator"],
        "generatorReason": train_result["generatorReason"],
        "device": train_result.get("device", "cpu"),
        "rowsGenerated": generate_result["rowsGenerated"],
        "rowsSource": len(real),
        "rowsTrain": len(train_idx),
        "rowsHoldout": len(holdout_idx),
        "fidelityScore": fid.score,
        "diagnosticScore": fid.diagnostic_score,
        "fidelity": fid.to_dict(),
        "privacy": priv.to_dict() if priv else {"computed": False},
        "privacyScore": priv.privacy_score if priv else None,
        "privacyRisk": priv.max_risk if priv else None,
        "gate": verdict.to_dict(),
        "qualityReference": quality_reference,
        "analysis": analysis.to_dict(),
        "constraints": generate_result["constraints"],
        "output": {"uri": generate_result["outputUri"], "format": spec.output.format.value},
        "seed": spec.seed,
    }
    if generation is not None:
        from tabular_runner.controls import Reader
        from tabular_runner.controls import evaluate as evaluate_generation

        reader = Reader(ctx.base_dir, ctx.source_s3)
        report["generation"] = evaluate_generation(generation, synthetic, real, reader)
    if "fromModel" in train_result:
        report["fromModel"] = train_result["fromModel"]
        report["epsilonSpent"] = 0.0
        report["originalEpsilonSpent"] = train_result.get("originalEpsilonSpent")
        if "privacyAccounting" in train_result:
            report["originalPrivacyAccounting"] = train_result["privacyAccounting"]
    elif "epsilonSpent" in train_result:
        report["epsilonSpent"] = train_result["epsilonSpent"]
        report["privacyAccounting"] = train_result["privacyAccounting"]
    trained_here = "fromModel" not in train_result  # else the timings are the original's
    report["timings"] = {
        "train": train_result["stageTimeS"] if trained_here else 0.0,
        "training": train_result["trainingTimeS"] if trained_here else 0.0,
        "generate": generate_result["stageTimeS"],
        "generation": generate_result["generationTimeS"],
        "fidelity": fid.seconds,
        "privacy": priv.seconds if priv else 0.0,
    }
    html_started = ctx.clock()
    html = render(report, train[scored], synthetic[scored])
    validation_s = ctx.clock() - started
    report["timings"]["htmlReport"] = round(ctx.clock() - html_started, 3)
    report["timings"]["validate"] = round(validation_s, 3)
    _put_json(store, "report.json", report)
    store.put_bytes("report.html", html.encode(), "text/html")
    result: dict[str, Any] = {
        "stage": "validate",
        "ok": verdict.passed,
        "fidelityScore": fid.score,
        "diagnosticScore": fid.diagnostic_score,
        "privacyScore": report["privacyScore"],
        "privacyRisk": report["privacyRisk"],
        "gatePassed": verdict.passed,
        "reportUri": f"{store.uri.rstrip('/')}/report.json",
        "stageTimeS": round(validation_s, 3),
    }
    _put_json(store, "stages/validate.json", result)
    ctx.progress("validate", 4, 4, "report stored")
    if not verdict.passed:
        raise GateFailedError(f"quality gate failed: {verdict.reason}")
    return result


STAGE_FUNCTIONS: dict[str, Callable[[SynthesisJob, ArtifactStore, StageContext], dict[str, Any]]]
STAGE_FUNCTIONS = {"train": stage_train, "generate": stage_generate, "validate": stage_validate}


def stage_engine(stage: str, job: SynthesisJob, store: ArtifactStore) -> str:
    """The engine ``stage`` of ``job`` runs in (generate follows what train trained)."""
    if stage == "validate":
        return engines.CORE
    if stage == "generate":
        trained = _get_json(store, "stages/train.json", "stage generate")
        return engines.engine_for(trained["generator"])
    assert job.spec.generator is not None  # resolve_profile guarantees it
    return engines.engine_for(job.spec.generator.type)


def _run_stage(
    engine: str, stage: str, job: SynthesisJob, store: ArtifactStore, ctx: StageContext
) -> dict[str, Any]:
    if engine == engines.current_engine():
        return STAGE_FUNCTIONS[stage](job, store, ctx)
    if ctx.run_in_engine is None:
        raise EngineError(
            f"the {stage} stage of this job runs in the {engine} engine, which is not "
            f"available here; run it with the {engine} runner image"
        )
    ctx.progress(stage, 0, 1, f"running in the {engine} engine")
    result = ctx.run_in_engine(engine, stage, job, store)
    ctx.progress(stage, 1, 1, f"done in the {engine} engine")
    return result


def run_all(job: SynthesisJob, store: ArtifactStore, ctx: StageContext) -> dict[str, Any]:
    """Run the three stages, each in its engine (see the module docstring); return the report.

    A ``fromModel`` job trains nothing: the earlier job's model is copied into ``store``
    first (so that generate runs in the model's engine), then generate and validate run.
    """
    stages: tuple[str, ...] = STAGES
    if job.spec.from_model is not None:
        from tabular_runner.from_model import import_model

        ctx.progress("train", 0, 1, "copying the model of an earlier job")
        import_model(job, store, base_dir=ctx.base_dir, s3=ctx.s3)
        ctx.progress("train", 1, 1, "model copied (no training)")
        stages = STAGES[1:]
    for stage in stages:
        result = _run_stage(stage_engine(stage, job, store), stage, job, store, ctx)
        if stage == "train" and result.get("handoff"):
            _run_stage(str(result["handoff"]), stage, job, store, ctx)
    return _get_json(store, "report.json", "run")


OUTPUT_FORMATS = tuple(f.value for f in DataFormat)
