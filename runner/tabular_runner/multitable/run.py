"""Multi-table synthesis as three stages over an artifact store, like the single-table pipeline.

A MultiTableSchema and a SynthesisJob in, a synthetic database out::

    train     read every table → check keys → resolve orphans → choose the strategy → fit
              → model.pkl, analysis.json, stages/train.json
    generate  load the model → sample → check every foreign and primary key
              → <table>.<format> per table, stages/generate.json
    validate  re-read the tables → score → gate → report.json, report.html, stages/validate.json

``tabular-runner stage train|generate|validate`` runs one of them (on a cluster: one
Kubernetes Job each, sharing nothing but the store); :func:`run_multitable` (``tabular-runner
run``) runs the three in sequence, so both paths share one implementation.

Nothing is written as output before the keys are checked: a database with a foreign-key
violation or a duplicate primary key fails the generate stage (``EngineError``) with
``report.json`` saying where, and no table files. The gate is applied last, after everything
is written, like the single-table ``validate`` stage.

The real data never goes into the store: ``model.pkl`` is the fitted strategy (cloudpickle)
with the real tables detached — the independent strategy needs them to sample (fresh
identifiers, realistic fakes), so generate re-reads them, as validate does, with the same
orphan handling, and checks that they have not changed since training.

Artifacts under the store's root::

    model.pkl            the fitted strategy, real rows detached (train)
    analysis.json        per-table analyses of the independent strategy (train)
    stages/<stage>.json  each stage's result (the stage protocol)
    <table>.<format>     one synthetic table per schema table (generate)
    report.json          strategy and why, scores, keys checked, orphans, timings (validate)
    report.html          the same for people, with cardinality plots (validate)
"""

from __future__ import annotations

import dataclasses
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from tabular_runner.errors import EngineError, GateFailedError, TabularError, UserInputError
from tabular_runner.multitable.graph import Relation, SchemaGraph, build_graph, check_keys
from tabular_runner.multitable.integrity import (
    foreign_key_violations,
    primary_key_duplicates,
    resolve_orphans,
)
from tabular_runner.multitable.strategies import (
    HmaStrategy,
    IndependentStrategy,
    choose_strategy,
)
from tabular_runner.spec import (
    DataFormat,
    GeneratorSpec,
    GeneratorType,
    LocalRef,
    MultiTableSchema,
    MultiTableSchemaSpec,
    ObjectMeta,
    RelationshipSpec,
    SynthesisJob,
    TableSpec,
)
from tabular_runner.storage.base import get_json as _get_json
from tabular_runner.storage.base import put_json as _put_json

if TYPE_CHECKING:
    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.multitable.integrity import OrphanAction
    from tabular_runner.storage.base import ArtifactStore
    from tabular_runner.storage.s3 import S3Settings

MODEL_FORMAT = "aumos-multitable-model/1"
DERIVED_ENTITIES = "tabular.aumos.io/derived-entities"
"""Annotation of an internal schema: this table is the distinct entities of its child."""
HISTORY_TABLE = "output"
"""The events table of a single-table sequence job: written as ``output.<format>``."""
Strategy = IndependentStrategy | HmaStrategy


class RunContext(Protocol):
    """What ``run_multitable`` needs of the pipeline's ``StageContext`` (same fields)."""

    # Read-only members, so any object with these attributes fits (a dataclass included).
    @property
    def base_dir(self) -> Path:
        """Folder that relative ``file://`` uris resolve against."""

    @property
    def source_s3(self) -> S3Settings | None:
        """The identity that reads ``s3://`` sources; from the environment when ``None``."""

    @property
    def progress(self) -> Callable[[str, int, int, str], None]:
        """``progress(stage, done, total, message)``."""

    @property
    def clock(self) -> Callable[[], float]:
        """Monotonic seconds."""

    @property
    def run_in_engine(self) -> Callable[..., dict[str, Any]] | None:
        """Runs a stage in another engine's environment (``None``: not available here)."""


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
    if spec.privacy is not None:
        raise UserInputError(
            "spec.privacy",
            "differentially private multi-table synthesis (ε split across tables and keys) "
            "is not offered yet",
            "remove privacy, or synthesise one table at a time with a DP generator",
        )
    if spec.from_model is not None:
        raise UserInputError(
            "spec.fromModel",
            "re-sampling a stored multi-table model is not supported yet",
            "remove fromModel to train the schema again",
        )
    if spec.generator is None:
        raise UserInputError(
            "spec.generator", "is missing", "set generator: {type: auto} (or resolve profileRef)"
        )
    return spec.generator


def history_schema(job: SynthesisJob) -> tuple[MultiTableSchema, SynthesisJob]:
    """A single-table job with ``spec.sequence`` as the two-table job it runs as (pure).

    The entities (distinct ``entityColumn`` values, derived from the source; no file of
    their own) are the parent, the source's rows their ordered histories, written as
    ``output.<format>``: what MOSTLY AI does with a sequential table and its context key.

    Raises:
        UserInputError: ``rows`` set (a history job is sized by ``scale`` × entities).
    """
    spec = job.spec
    assert spec.sequence is not None and spec.source is not None
    if spec.rows is not None:
        raise UserInputError(
            "spec.rows",
            "a sequence job sizes its output by entities (scale × the real entities), not rows",
            "remove rows and set scale (e.g. scale: 1.0)",
        )
    entity, order_by = spec.sequence.entity_column, spec.sequence.order_by
    name = f"{job.metadata.name[:52].rstrip('-')}-histories"
    schema = MultiTableSchema(
        metadata=ObjectMeta(name=name, annotations={DERIVED_ENTITIES: "entities"}),
        spec=MultiTableSchemaSpec(
            tables=[
                TableSpec(name="entities", source=spec.source, primary_key=entity),
                TableSpec(name=HISTORY_TABLE, source=spec.source),
            ],
            relationships=[
                RelationshipSpec(
                    parent="entities",
                    parent_key=entity,
                    child=HISTORY_TABLE,
                    child_key=entity,
                    order_by=order_by,
                )
            ],
        ),
    )
    multi = job.model_copy(deep=True)
    multi.spec.source, multi.spec.sequence = None, None
    multi.spec.schema_ref = LocalRef(name=name)
    return schema, multi


def _derived(schema: MultiTableSchema) -> str | None:
    return schema.metadata.annotations.get(DERIVED_ENTITIES)


def _derive_entities(
    schema: MultiTableSchema, frames: dict[str, pd.DataFrame], table: str
) -> pd.DataFrame:
    """The distinct entities of ``table``'s child, checked with the job's own field names."""
    from tabular_runner.multitable.graph import suggest_column
    from tabular_runner.multitable.sequences import order_kind

    rel = next(r for r in schema.spec.relationships if r.parent == table)
    child = frames[rel.child]
    entity = str(rel.child_key)
    if entity not in child.columns:
        raise UserInputError(
            "spec.sequence.entityColumn",
            f"the source has no column {entity!r}",
            suggest_column(entity, [str(c) for c in child.columns]),
        )
    assert rel.order_by is not None
    order_kind(child, rel.order_by, "source", "spec.sequence.orderBy")
    if child[entity].isna().any():
        raise UserInputError(
            "spec.sequence.entityColumn",
            f"{int(child[entity].isna().sum())} row(s) of the source name no entity",
            "fill or drop them: every event belongs to an entity",
        )
    columns = entity_columns(child, entity, rel.order_by)
    return child[[entity, *columns]].drop_duplicates(subset=[entity]).reset_index(drop=True)


def entity_columns(frame: pd.DataFrame, entity: str, order_by: str | None) -> list[str]:
    """Columns of an event table that never change within an entity (a chick's diet).

    They describe the entity, not its events: a history job models them once per entity
    (the parent's columns, the histories' context) and writes them back on every event, so
    they stay constant within each synthetic history as in the real one.
    """
    others = [c for c in frame.columns if c not in (entity, order_by)]
    if not others or frame.empty:
        return []
    distinct = frame.groupby(entity, sort=False)[others].nunique(dropna=False).max()
    return [c for c in others if int(distinct[c]) <= 1]


def _entity_view(
    output: pd.DataFrame, rel: Relation, columns: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A written history table split back into its entities and its events."""
    entities = output[[*rel.child_key, *columns]].drop_duplicates(subset=list(rel.child_key))
    entities.columns = [*rel.parent_key, *columns]
    return entities.reset_index(drop=True), output.drop(columns=columns)


def _with_entity_columns(
    histories: pd.DataFrame, entities: pd.DataFrame, rel: Relation
) -> pd.DataFrame:
    """Events with their entity's columns, each placed right after the entity column."""
    columns = [c for c in entities.columns if c not in rel.parent_key]
    if not columns:
        return histories
    lookup = entities.rename(columns=dict(zip(rel.parent_key, rel.child_key, strict=True)))
    joined = histories.merge(lookup, on=list(rel.child_key), how="left")
    order = []
    for column in histories.columns:
        order.append(column)
        if column == rel.child_key[-1]:
            order.extend(columns)
    return joined[order]


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
            s3=ctx.source_s3,
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
    derived = _derived(schema)
    if derived is not None:
        frames[derived] = _derive_entities(schema, frames, derived)
        child = next(r.child for r in schema.spec.relationships if r.parent == derived)
        described = [str(c) for c in frames[derived].columns[1:]]  # after the entity key
        frames[child] = frames[child].drop(columns=described)
    return frames, hints


def _round(value: float) -> float:
    return round(value, 3)


def _read_database(
    schema: MultiTableSchema, graph: SchemaGraph, ctx: RunContext
) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, str]], list[OrphanAction]]:
    """Read every table, check the keys and apply ``onOrphans`` (the same in every stage)."""
    from tabular_runner.multitable.sequences import check_sequences

    frames, hints = load_tables(schema, ctx)
    check_keys(graph, frames)
    check_sequences(graph, frames)
    frames, orphan_actions = resolve_orphans(frames, graph)
    return frames, hints, orphan_actions


def _check_unchanged(frames: dict[str, pd.DataFrame], train_result: dict[str, Any]) -> None:
    """Refuse tables whose row counts moved since training (the model would not match)."""
    trained = train_result["rowsSource"]
    changed = [t for t, f in frames.items() if trained.get(t) != len(f)]
    if changed:
        raise UserInputError(
            "spec.tables",
            "the source changed since training: "
            + ", ".join(f"{t} had {trained.get(t)} rows, now {len(frames[t])}" for t in changed),
            "re-run the job from training",
        )


def _owners(
    frames: dict[str, pd.DataFrame], graph: SchemaGraph, strategy: str
) -> dict[str, Relation | None]:
    """Per table, the parent its rows are generated under (as the strategy picks it)."""
    from tabular_runner.multitable.strategies import context_relation, primary_relation

    rows = {t: len(f) for t, f in frames.items()}
    if strategy == "context":
        return {t: context_relation(graph, t, rows) for t in graph.order}
    return {t: primary_relation(graph, t) for t in graph.order}


def _splits(
    frames: dict[str, pd.DataFrame], job: SynthesisJob, graph: SchemaGraph, strategy: str
) -> dict[str, tuple[Any, Any]]:
    """Train/holdout rows per table; a child holds out the children of held-out parents.

    Roots are split by row (seeded). A child's holdout is every row whose primary parent is
    held out, so a held-out parent leaves training with its whole history (or all of its
    children), and the linked privacy evaluation compares against parents no model saw.
    """
    from tabular_runner.multitable.integrity import key_strings
    from tabular_runner.pipeline import split_indices

    validation, seed = job.spec.validation, job.spec.seed
    owners = _owners(frames, graph, strategy)
    out: dict[str, tuple[Any, Any]] = {}
    for table in graph.order:
        frame = frames[table]
        rel = owners[table]
        if rel is None:
            out[table] = split_indices(len(frame), validation.holdout_fraction, seed)
            continue
        parent = frames[rel.parent].iloc[out[rel.parent][1]]
        held = set(key_strings(parent, rel.parent_key).dropna().tolist())
        mask = key_strings(frame, rel.child_key).isin(held).to_numpy()
        if mask.sum() < MIN_HOLDOUT_ROWS or (~mask).sum() < MIN_HOLDOUT_ROWS:
            # Too few parents held out to hold out whole families (three origin airports
            # over the weather hours): split this table by row, as a root; the linked
            # privacy evaluation of this relationship then reports itself not computed.
            out[table] = split_indices(len(frame), validation.holdout_fraction, seed)
            continue
        out[table] = (np.flatnonzero(~mask), np.flatnonzero(mask))
    return out


MIN_HOLDOUT_ROWS = 10
"""Fewest held-out (and training) rows a whole-parent holdout needs."""


def _whole_parents_held_out(
    child: pd.DataFrame, parent: pd.DataFrame, rel: Relation, holdout_idx: Any, parent_held: Any
) -> bool:
    """True when the child's holdout is exactly the children of held-out parent rows."""
    from tabular_runner.multitable.integrity import key_strings

    held = set(key_strings(parent.iloc[parent_held], rel.parent_key).dropna().tolist())
    mask = key_strings(child, rel.child_key).isin(held).to_numpy()
    return bool(mask.sum() == len(holdout_idx) and mask[holdout_idx].all())


def _put_model(store: ArtifactStore, strategy: Strategy) -> str:
    """Store the fitted strategy as ``model.pkl``, without the real rows it keeps."""
    import cloudpickle

    stored: Strategy = strategy
    if isinstance(strategy, IndependentStrategy):
        stored = dataclasses.replace(
            strategy,
            plans={
                t: dataclasses.replace(plan, real=plan.real.iloc[0:0])
                for t, plan in strategy.plans.items()
            },
        )
    payload = cloudpickle.dumps({"format": MODEL_FORMAT, "strategy": stored})
    return store.put_bytes("model.pkl", payload)


def _load_model(store: ArtifactStore, frames: dict[str, pd.DataFrame] | None) -> Strategy:
    """Load ``model.pkl``; give the independent strategy its real rows back (``frames``)."""
    try:
        envelope = pickle.loads(store.get_bytes("model.pkl"))
    except FileNotFoundError:
        raise TabularError(
            f"stage generate: artifact 'model.pkl' is missing from {store.uri}; "
            "run the earlier stage first"
        ) from None
    if not isinstance(envelope, dict) or envelope.get("format") != MODEL_FORMAT:
        raise TabularError(f"model.pkl in {store.uri} is not a multi-table model of this runner")
    strategy: Strategy = envelope["strategy"]
    if isinstance(strategy, IndependentStrategy):
        assert frames is not None
        for table, plan in strategy.plans.items():
            plan.real = frames[table].reset_index(drop=True)
    return strategy


def _stage_progress(ctx: RunContext, stage: str) -> Callable[[int, int, str], None]:
    def report(done: int, total: int, message: str) -> None:
        ctx.progress(stage, done, total, message)

    return report


def stage_train(
    schema: MultiTableSchema, job: SynthesisJob, store: ArtifactStore, ctx: RunContext
) -> dict[str, Any]:
    """Read and check the tables, choose the strategy, fit it, store the model.

    Raises:
        UserInputError: bad schema, job or data (including orphans with ``onOrphans: error``).
        EngineError: a generator failed to fit.
    """
    clock, spec = ctx.clock, job.spec
    started = clock()
    generator = check_job(schema, job)
    from tabular_runner.generators import check_params

    check_params(generator)
    graph = build_graph(schema.spec)
    ctx.progress("train", 0, 3, "reading tables")
    frames, hints, orphan_actions = _read_database(schema, graph, ctx)
    read_s = clock() - started

    from tabular_runner import engines

    choice = choose_strategy(graph, generator)
    if choice.strategy == "context" and engines.current_engine() != engines.ARGN:
        # TabularARGN lives in the argn engine: the same stage runs again there.
        ctx.progress("train", 3, 3, f"{choice.strategy} strategy: continuing in the argn engine")
        return {
            "stage": "train",
            "ok": True,
            "kind": "multi-table",
            "handoff": engines.ARGN,
            "strategy": choice.strategy,
            "generator": GeneratorType.TABULARARGN.value,
            "generatorReason": choice.reason,
        }
    splits = _splits(frames, job, graph, choice.strategy)
    train_rows = {t: s[0] for t, s in splits.items()}
    ctx.progress("train", 1, 3, f"training ({choice.strategy})")
    step = clock()
    strategy: Strategy
    if choice.strategy == "hma":
        strategy = HmaStrategy(graph, seed=spec.seed, hints=hints)
    else:
        assert choice.table_generator is not None
        sequence_params = {"sequenceEpochs", "sequenceModel"}
        table_params = {k: v for k, v in generator.params.items() if k not in sequence_params}
        table_generator = GeneratorSpec(
            type=choice.table_generator,
            params=table_params if generator.type is choice.table_generator else {},
        )
        from tabular_runner.multitable.sequences import (
            DEFAULT_SEQUENCE_EPOCHS,
            SEQUENCE_MODELS,
            check_sequences,
        )

        sequence_model = str(generator.params.get("sequenceModel", "auto"))
        if sequence_model not in SEQUENCE_MODELS:
            raise UserInputError(
                "spec.generator.params.sequenceModel",
                f"unknown model of histories {sequence_model!r}",
                f"use one of: {', '.join(SEQUENCE_MODELS)}",
            )

        strategy = IndependentStrategy(
            graph,
            table_generator,
            seed=spec.seed,
            hints=hints,
            order_kinds=check_sequences(graph, frames),
            sequence_epochs=int(generator.params.get("sequenceEpochs", DEFAULT_SEQUENCE_EPOCHS)),
            sequence_model=sequence_model,
            context=choice.strategy == "context",
        )
    strategy.fit(frames, train_rows, progress=_stage_progress(ctx, "train"))
    training_s = clock() - step

    ctx.progress("train", 2, 3, "storing the model")
    model_uri = _put_model(store, strategy)
    if isinstance(strategy, IndependentStrategy):
        analyses = {t: plan.analysis.to_dict() for t, plan in strategy.plans.items()}
        _put_json(store, "analysis.json", {"tables": analyses})
    used = "hma" if choice.table_generator is None else choice.table_generator.value
    result: dict[str, Any] = {
        "stage": "train",
        "ok": True,
        "kind": "multi-table",
        "schema": schema.metadata.name,
        "generator": used,
        "generatorReason": choice.reason,
        "requestedGenerator": generator.type.value,
        "strategy": choice.strategy,
        "tableGenerator": choice.table_generator.value if choice.table_generator else None,
        "graph": graph.to_dict(),
        "rowsSource": {t: len(frames[t]) for t in graph.order},
        "orphans": [a.to_dict() for a in orphan_actions],
        "readTimeS": _round(read_s),
        "trainingTimeS": _round(training_s),
        "stageTimeS": _round(clock() - started),
        "modelUri": model_uri,
    }
    _put_json(store, "stages/train.json", result)
    ctx.progress("train", 3, 3, "model stored")
    return result


def _report(
    schema: MultiTableSchema,
    job: SynthesisJob,
    train_result: dict[str, Any],
    keys: dict[str, Any],
) -> dict[str, Any]:
    """The report's head: what was trained and what the generated keys look like."""
    return {
        "job": job.metadata.name,
        "schema": schema.metadata.name,
        "kind": "multi-table",
        "strategy": train_result["strategy"],
        "strategyReason": train_result["generatorReason"],
        "generator": train_result["requestedGenerator"],
        "tableGenerator": train_result["tableGenerator"],
        "scale": keys["scale"],
        "seed": job.spec.seed,
        "graph": train_result["graph"],
        "rowsSource": train_result["rowsSource"],
        "rowsGenerated": keys["tables"],
        "orphans": train_result["orphans"],
        "foreignKeyViolations": keys["foreignKeyViolations"],
        "foreignKeyChecks": keys["foreignKeyChecks"],
        "primaryKeyDuplicates": keys["primaryKeyDuplicates"],
        "strategyDetails": keys["strategyDetails"],
        "tableGenerators": keys.get("tableGenerators", {}),
        "relationshipStrategies": keys.get("relationshipStrategies", {}),
    }


def stage_generate(
    schema: MultiTableSchema, job: SynthesisJob, store: ArtifactStore, ctx: RunContext
) -> dict[str, Any]:
    """Sample the stored model, check every key, write one file per table.

    Raises:
        UserInputError: bad job, or tables that changed since training.
        EngineError: the output broke a key (``report.json`` says where; no table written).
    """
    from tabular_runner.storage.tables import write_table

    clock, spec = ctx.clock, job.spec
    started = clock()
    check_job(schema, job)
    graph = build_graph(schema.spec)
    train_result = _get_json(store, "stages/train.json", "stage generate")
    ctx.progress("generate", 0, 4, "loading the model")
    frames: dict[str, pd.DataFrame] | None = None
    if train_result["strategy"] != "hma":  # the independent strategy samples with real rows
        frames, _, _ = _read_database(schema, graph, ctx)
        _check_unchanged(frames, train_result)
    strategy = _load_model(store, frames)

    ctx.progress("generate", 1, 4, "generating")
    scale = spec.scale if spec.scale is not None else 1.0
    step = clock()
    synthetic = strategy.sample(scale, spec.seed, progress=_stage_progress(ctx, "generate"))
    generation_s = clock() - step
    empty = [t for t in graph.order if synthetic[t].empty and train_result["rowsSource"].get(t)]
    if empty:
        raise EngineError(
            f"the model generated no rows for {', '.join(empty)} (real: "
            + ", ".join(f"{train_result['rowsSource'][t]}" for t in empty)
            + "); train longer (generator.params maxEpochs / maxTrainingTimeSeconds) or use "
            "another generator; no table was written"
        )

    ctx.progress("generate", 2, 4, "checking keys")
    step = clock()
    violations = foreign_key_violations(synthetic, graph)
    duplicates = primary_key_duplicates(synthetic, graph)
    keys: dict[str, Any] = {
        "scale": scale,
        "tables": {t: len(synthetic[t]) for t in graph.order},
        "foreignKeyViolations": {v.relation.name: v.violations for v in violations},
        "foreignKeyChecks": [v.to_dict() for v in violations],
        "primaryKeyDuplicates": duplicates,
        "strategyDetails": strategy.details(),
        "tableGenerators": strategy.table_methods(),
        "relationshipStrategies": strategy.relationship_methods(),
        "integrityTimeS": _round(clock() - step),
    }
    broken = sum(v.violations for v in violations) + sum(duplicates.values())
    if broken:
        report = _report(schema, job, train_result, keys)
        report["timings"] = {
            "read": train_result["readTimeS"],
            "training": train_result["trainingTimeS"],
            "generation": _round(generation_s),
            "integrity": keys["integrityTimeS"],
        }
        _put_json(store, "report.json", report)
        raise EngineError(
            f"the synthetic database breaks {broken} key(s): "
            + ", ".join(f"{v.relation.name}: {v.violations}" for v in violations if v.violations)
            + (f"; duplicate primary keys {duplicates}" if sum(duplicates.values()) else "")
            + "; no table was written"
        )

    ctx.progress("generate", 3, 4, "writing tables")
    step = clock()
    fmt = DataFormat(spec.output.format)
    derived = _derived(schema)
    if derived is not None:  # the entities' own columns go back on their events
        (history,) = graph.children_of(derived)
        synthetic[history.child] = _with_entity_columns(
            synthetic[history.child], synthetic[derived], history
        )
    uris = {
        t: write_table(synthetic[t], store, f"{t}.{fmt.value}", fmt)
        for t in graph.order
        if t != derived  # derived entities are the histories' keys, not a file
    }
    result: dict[str, Any] = {
        "stage": "generate",
        "ok": True,
        "kind": "multi-table",
        "rowsGenerated": sum(keys["tables"].values()),
        "tables": keys["tables"],
        "generationTimeS": _round(generation_s),
        "writeTimeS": _round(clock() - step),
        "outputUri": store.uri,
        "outputFormat": fmt.value,
        "outputs": uris,
        **keys,
    }
    result["stageTimeS"] = _round(clock() - started)
    _put_json(store, "stages/generate.json", result)
    ctx.progress("generate", 4, 4, "tables stored")
    return result


def _read_synthetic(
    store: ArtifactStore,
    graph: SchemaGraph,
    fmt: DataFormat,
    derived: str | None,
    entity_cols: Sequence[str] = (),
) -> dict[str, pd.DataFrame]:
    from tabular_runner.storage.tables import read_table

    synthetic: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="aumos-validate-") as tmp:
        for table in graph.order:
            if table == derived:
                continue
            key = f"{table}.{fmt.value}"
            try:
                local = store.get_file(key, Path(tmp) / key)
            except FileNotFoundError:
                raise TabularError(
                    f"stage validate: artifact {key!r} is missing from {store.uri}; "
                    "run the earlier stage first"
                ) from None
            synthetic[table] = read_table(f"file://{local}", fmt, base_dir=None, s3=None)
    if derived is not None:  # the entities: the keys the histories name, and their columns
        (rel,) = graph.children_of(derived)
        synthetic[derived], synthetic[rel.child] = _entity_view(
            synthetic[rel.child], rel, list(entity_cols)
        )
    return synthetic


def stage_validate(
    schema: MultiTableSchema, job: SynthesisJob, store: ArtifactStore, ctx: RunContext
) -> dict[str, Any]:
    """Score the stored database, apply the gate, write ``report.json`` and ``report.html``.

    Raises:
        UserInputError: bad job, or tables that changed since training.
        GateFailedError: after writing the reports, when the gate is not met.
    """
    from tabular_runner.analysis import TableAnalysis
    from tabular_runner.multitable.report_html import render_multitable
    from tabular_runner.quality import gate

    clock, spec = ctx.clock, job.spec
    started = clock()
    check_job(schema, job)
    graph = build_graph(schema.spec)
    train_result = _get_json(store, "stages/train.json", "stage validate")
    generate_result = _get_json(store, "stages/generate.json", "stage validate")
    ctx.progress("validate", 0, 3, "reading tables")
    frames, _, _ = _read_database(schema, graph, ctx)
    _check_unchanged(frames, train_result)
    derived = _derived(schema)
    synthetic = _read_synthetic(
        store,
        graph,
        DataFormat(generate_result["outputFormat"]),
        derived,
        [str(c) for c in frames[derived].columns[1:]] if derived is not None else [],
    )
    analyses: dict[str, TableAnalysis] | None = None
    if train_result["strategy"] != "hma":
        stored = _get_json(store, "analysis.json", "stage validate")["tables"]
        analyses = {t: TableAnalysis.from_dict(a) for t, a in stored.items()}

    ctx.progress("validate", 1, 3, "scoring")
    step = clock()
    report = _report(schema, job, train_result, generate_result)
    report["output"] = {
        "format": generate_result["outputFormat"],
        "tables": generate_result["outputs"],
    }
    scores = _score(
        frames,
        synthetic,
        _splits(frames, job, graph, train_result["strategy"]),
        graph,
        analyses,
        train_result["strategy"],
        job,
    )
    report.update(scores)
    timings = {
        "read": train_result["readTimeS"],
        "training": train_result["trainingTimeS"],
        "generation": generate_result["generationTimeS"],
        "integrity": generate_result["integrityTimeS"],
        "write": generate_result["writeTimeS"],
        "scoring": _round(clock() - step),
        "train": train_result["stageTimeS"],
        "generate": generate_result["stageTimeS"],
    }
    ctx.progress("validate", 2, 3, "release gate and report")
    verdict = gate.evaluate(
        spec.quality_gate,
        fidelity=report["fidelityScore"],
        diagnostic=report["diagnosticScore"],
        privacy_risk=report["privacyRisk"],
        dcr_share=report["dcrShare"],
    )
    report["gate"] = verdict.to_dict()
    html_started = clock()
    report["timings"] = timings
    html = render_multitable(report, frames, synthetic, graph)
    timings["htmlReport"] = _round(clock() - html_started)
    # The whole validate stage (reading, scoring, gate, HTML), as the single-table report has it.
    validate_s = clock() - started
    timings["validate"] = _round(validate_s)
    timings["total"] = _round(timings["train"] + timings["generate"] + validate_s)
    _put_json(store, "report.json", report)
    store.put_bytes("report.html", html.encode(), "text/html")
    result: dict[str, Any] = {
        "stage": "validate",
        "ok": verdict.passed,
        "kind": "multi-table",
        "fidelityScore": report["fidelityScore"],
        "diagnosticScore": report["diagnosticScore"],
        "privacyScore": report["privacyScore"],
        "privacyRisk": report["privacyRisk"],
        "gatePassed": verdict.passed,
        "reportUri": f"{store.uri.rstrip('/')}/report.json",
        "stageTimeS": _round(clock() - started),
    }
    _put_json(store, "stages/validate.json", result)
    ctx.progress("validate", 3, 3, "report stored")
    if not verdict.passed:
        raise GateFailedError(f"quality gate failed: {verdict.reason}")
    return result


MultiTableStage = Callable[
    [MultiTableSchema, SynthesisJob, "ArtifactStore", RunContext], dict[str, Any]
]
MULTITABLE_STAGES: dict[str, MultiTableStage] = {
    "train": stage_train,
    "generate": stage_generate,
    "validate": stage_validate,
}
"""The multi-table stages by name, as ``tabular-runner stage`` runs them."""


def run_multitable(
    schema: MultiTableSchema,
    job: SynthesisJob,
    out_store: ArtifactStore,
    ctx: RunContext,
) -> dict[str, Any]:
    """Synthesise a whole database: the three stages in sequence; return the report.

    Args:
        schema: The MultiTableSchema (tables, keys, relationships, onOrphans).
        job: The SynthesisJob referencing it (``schemaRef``), with ``profileRef`` already
            resolved: generator (``auto``, ``hma`` or a single-table generator), ``scale``
            (multiplies the root tables' rows), ``seed``, ``validation``, ``qualityGate``,
            ``output.format``.
        out_store: Where the model, the tables and the reports go.
        ctx: The pipeline's ``StageContext`` (``base_dir`` for relative ``file://`` sources,
            ``s3``, ``progress``, ``clock``).

    Returns:
        The report (also in ``report.json``).

    Raises:
        UserInputError: bad schema, job or data (including orphans with ``onOrphans: error``).
        EngineError: a generator failed, or the output broke a key (report still written).
        GateFailedError: the quality gate failed (everything still written).
    """
    from tabular_runner import engines

    check_job(schema, job)
    for stage in ("train", "generate", "validate"):
        engine = stage_engine(stage, out_store)
        if engine == engines.current_engine():
            result = MULTITABLE_STAGES[stage](schema, job, out_store, ctx)
        else:
            result = _in_engine(ctx, engine, stage, job, out_store)
        if result.get("handoff"):
            _in_engine(ctx, str(result["handoff"]), stage, job, out_store)
    return _get_json(out_store, "report.json", "run")


def stage_engine(stage: str, store: ArtifactStore) -> str:
    """The engine a stage runs in.

    Train starts in core (it hands over when it picks the context strategy), generate
    follows what train trained, validate is always core.
    """
    from tabular_runner import engines

    if stage == "generate":
        trained = _get_json(store, "stages/train.json", "stage generate")
        return engines.engine_for(trained.get("generator", ""))
    return engines.CORE


def _in_engine(
    ctx: RunContext, engine: str, stage: str, job: SynthesisJob, store: ArtifactStore
) -> dict[str, Any]:
    if ctx.run_in_engine is None:
        raise EngineError(
            f"the {stage} stage of this job runs in the {engine} engine, which is not "
            f"available here; run it with the {engine} runner image"
        )
    ctx.progress(stage, 0, 1, f"running in the {engine} engine")
    result: dict[str, Any] = ctx.run_in_engine(engine, stage, job, store)
    ctx.progress(stage, 1, 1, f"done in the {engine} engine")
    return result


def _score(
    real: dict[str, pd.DataFrame],
    synthetic: dict[str, pd.DataFrame],
    splits: dict[str, tuple[Any, Any]],
    graph: SchemaGraph,
    analyses: dict[str, TableAnalysis] | None,
    strategy: str,
    job: SynthesisJob,
) -> dict[str, Any]:
    """Cardinality, SDMetrics multi-table reports, per-table fidelity and privacy.

    ``analyses`` are the independent strategy's own (its column kinds); ``None`` for HMA,
    whose tables are analysed here.
    """
    from tabular_runner.multitable.quality import cardinality_scores, sdmetrics_reports
    from tabular_runner.multitable.strategies import table_analysis
    from tabular_runner.quality import fidelity, privacy

    validation = job.spec.validation
    seed = job.spec.seed
    sdtypes: dict[str, dict[str, str]] = {}
    tables: dict[str, Any] = {}
    for table in graph.order:
        analysis = (
            analyses[table] if analyses is not None else table_analysis(real[table], {}, seed)
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
        elif graph.sequence_of(table) is not None:
            entry["privacy"] = {
                "computed": False,
                "reason": "an event alone is not the record that leaks: see linkedPrivacy "
                "(events joined with their parent, whole parents held out)",
            }
        elif strategy == "hma":
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

    linked = (
        _linked_privacy(real, synthetic, splits, graph, sdtypes, job, strategy)
        if validation.privacy and strategy != "hma"
        else []
    )
    multi = sdmetrics_reports(
        real, synthetic, graph, sdtypes, sample_rows=validation.quality_sample_rows, seed=seed
    )
    cardinality = cardinality_scores(real, synthetic, graph)
    sequences = _sequence_scores(real, synthetic, graph, sdtypes)
    per_table = [t["fidelityScore"] for t in tables.values() if t.get("fidelityScore") is not None]
    quality_score = multi["quality"]["score"]
    fidelity_score = (
        quality_score
        if quality_score is not None
        else (round(float(np.mean(per_table)), 6) if per_table else None)
    )
    evaluated = [t["privacy"] for t in tables.values()] + [x["privacy"] for x in linked]
    risks = [e.get("maxRisk") for e in evaluated if e.get("maxRisk") is not None]
    shares = [e.get("dcrShare") for e in evaluated if e.get("dcrShare") is not None]
    similarities = [c["shapeSimilarity"] for c in cardinality if c["shapeSimilarity"] is not None]
    return {
        "fidelityScore": fidelity_score,
        "diagnosticScore": multi["diagnostic"]["score"],
        "cardinalityShapeSimilarity": (
            round(float(np.mean(similarities)), 6) if similarities else None
        ),
        "cardinality": cardinality,
        "intertableTrends": multi.get("intertableTrends", []),
        "sequences": sequences,
        "orderViolations": sum(q["orderViolations"] for q in sequences) if sequences else None,
        "sdmetrics": multi,
        "tables": tables,
        "linkedPrivacy": linked,
        "privacyRisk": max(risks) if risks else None,
        "privacyScore": (1.0 - max(risks)) if risks else None,
        "dcrShare": max(shares) if shares else None,
    }


def _linked_privacy(
    real: dict[str, pd.DataFrame],
    synthetic: dict[str, pd.DataFrame],
    splits: dict[str, tuple[Any, Any]],
    graph: SchemaGraph,
    sdtypes: dict[str, dict[str, str]],
    job: SynthesisJob,
    strategy: str,
) -> list[dict[str, Any]]:
    """DCR and Anonymeter on each child joined with the parent it is generated under.

    A child row with its parent's columns is what an attacker links (a patient's visit with
    the patient); the holdout is the children of held-out parents (:func:`_splits`), which
    neither the parent's nor the child's model saw. An ordered history is scored twice: event
    by event (each event carrying its parent), and as one record per whole history
    (:func:`history_records`), the record an attacker who knows an entity would link.
    """
    from tabular_runner.quality import privacy

    validation = job.spec.validation
    owners = _owners(real, graph, strategy)
    out: list[dict[str, Any]] = []
    for table in graph.order:
        rel = owners[table]
        if rel is None:
            continue
        train_idx, holdout_idx = splits[table]
        if not _whole_parents_held_out(
            real[table], real[rel.parent], rel, holdout_idx, splits[rel.parent][1]
        ):
            reason = (
                f"too few {rel.parent} rows held out to hold out whole families "
                f"(the holdout of {table} is split by row instead)"
            )
            out.append({"relationship": rel.name, "privacy": {"computed": False, "reason": reason}})
            continue

        def joined(
            child: pd.DataFrame, parent: pd.DataFrame, rel: Any = rel, table: str = table
        ) -> pd.DataFrame:
            from tabular_runner.multitable.integrity import key_strings

            keys = graph.key_columns(table) | set(rel.child_key)
            own = [c for c, t in sdtypes[table].items() if c not in keys and t != "id"]
            left = child[own].reset_index(drop=True)
            left["__k"] = key_strings(child, rel.child_key).to_numpy()
            right = parent_side(parent, rel, sdtypes[rel.parent], graph)
            joined = left.join(right, on="__k", how="inner").drop(columns="__k")
            return joined.reset_index(drop=True)

        def evaluate(train: pd.DataFrame, holdout: pd.DataFrame, synth: pd.DataFrame) -> Any:
            if min(len(train), len(holdout), len(synth)) < 10 or train.shape[1] == 0:
                return {"computed": False, "reason": "too few joined rows"}
            return privacy.evaluate(
                train,
                holdout,
                synth,
                sample_rows=validation.privacy_sample_rows,
                attacks=validation.attacks,
                seed=job.spec.seed,
            ).to_dict()

        train = joined(real[table].iloc[train_idx], real[rel.parent])
        holdout = joined(real[table].iloc[holdout_idx], real[rel.parent])
        synth = joined(synthetic[table], synthetic[rel.parent])
        out.append(
            {
                "relationship": rel.name,
                "record": "a child row with its parent's columns",
                "columns": list(train.columns),
                "privacy": evaluate(train, holdout, synth),
            }
        )
        if rel.order_by is None:
            continue

        # An ordered history: the record that can leak is the entity's whole history.
        def records(child: pd.DataFrame, parent: pd.DataFrame, rel: Any = rel) -> pd.DataFrame:
            return history_records(
                child, parent, rel, sdtypes[rel.child], sdtypes[rel.parent], graph
            )

        h_train = records(real[table].iloc[train_idx], real[rel.parent])
        h_holdout = records(real[table].iloc[holdout_idx], real[rel.parent])
        h_synth = records(synthetic[table], synthetic[rel.parent])
        out.append(
            {
                "relationship": rel.name,
                "record": "a whole history: its parent's columns, its length, the first and "
                "last order value, and per attribute the first, last and mean (numbers) or the "
                "first and most frequent value (categories)",
                "columns": list(h_train.columns),
                "privacy": evaluate(h_train, h_holdout, h_synth),
            }
        )
    return out


def history_records(
    child: pd.DataFrame,
    parent: pd.DataFrame,
    rel: Any,
    child_sdtypes: dict[str, str],
    parent_sdtypes: dict[str, str],
    graph: SchemaGraph,
) -> pd.DataFrame:
    """One row per parent that has a history: the history summarised beside the parent.

    Order values become numbers (dates: days since the epoch) so that distances and attacks
    can use them; a history's ``length`` is its number of events.
    """
    from tabular_runner.multitable.integrity import key_strings

    order = rel.order_by
    keys = graph.key_columns(rel.child) | set(rel.child_key)
    attributes = [c for c, t in child_sdtypes.items() if c not in keys and c != order and t != "id"]
    frame = child.copy()
    frame["__k"] = key_strings(child, rel.child_key).to_numpy()
    frame = frame[frame["__k"].notna()]
    values = frame[order]
    if not pd.api.types.is_numeric_dtype(values):
        values = pd.to_datetime(values, errors="coerce", format="mixed")
        values = (values - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400
    frame["__order"] = pd.to_numeric(values, errors="coerce")
    frame = frame.sort_values(["__k", "__order"], kind="stable")
    grouped = frame.groupby("__k", sort=True)
    summary = pd.DataFrame(
        {
            "length": grouped.size(),
            f"{order}.first": grouped["__order"].first(),
            f"{order}.last": grouped["__order"].last(),
        }
    )
    for column in attributes:
        if child_sdtypes.get(column) == "numerical":
            numbers = pd.to_numeric(frame[column], errors="coerce")
            by = numbers.groupby(frame["__k"])
            summary[f"{column}.first"] = by.first()
            summary[f"{column}.last"] = by.last()
            summary[f"{column}.mean"] = by.mean()
        else:
            texts = frame[column].astype(str)
            by = texts.groupby(frame["__k"])
            summary[f"{column}.first"] = by.first()
            summary[f"{column}.mode"] = by.agg(lambda v: v.value_counts().index[0])
    right = parent_side(parent, rel, parent_sdtypes, graph)
    return summary.join(right, how="inner").reset_index(drop=True)


def parent_side(
    parent: pd.DataFrame, rel: Any, parent_sdtypes: dict[str, str], graph: SchemaGraph
) -> pd.DataFrame:
    """What a linked record adds from its parent.

    The parent's non-key, non-identifier columns (``<parent>.<column>``), indexed by the key
    string its children carry.
    """
    from tabular_runner.multitable.integrity import key_strings

    parent_keys = graph.key_columns(rel.parent) | set(rel.parent_key)
    theirs = [c for c, t in parent_sdtypes.items() if c not in parent_keys and t != "id"]
    right = parent[theirs].add_prefix(f"{rel.parent}.").reset_index(drop=True)
    right.index = pd.Index(key_strings(parent, rel.parent_key).to_numpy(), name="__k")
    unique: pd.DataFrame = right[~right.index.duplicated()]
    return unique


def _sequence_scores(
    real: dict[str, pd.DataFrame],
    synthetic: dict[str, pd.DataFrame],
    graph: SchemaGraph,
    sdtypes: dict[str, dict[str, str]],
) -> list[dict[str, Any]]:
    """Per relationship with ``orderBy``: lengths, order, gaps, first/last, per-entity stats."""
    from tabular_runner.multitable.sequences import check_sequences, sequence_scores

    kinds = check_sequences(graph, real)
    out: list[dict[str, Any]] = []
    for rel in graph.sequences:
        assert rel.order_by is not None
        keys = graph.key_columns(rel.child)
        numeric = [
            c
            for c, t in sdtypes[rel.child].items()
            if t == "numerical" and c != rel.order_by and c not in keys
        ]
        scores = sequence_scores(
            real[rel.child],
            synthetic[rel.child],
            rel.child_key,
            rel.order_by,
            kinds[rel.index],
            numeric,
            real_parents=len(real[rel.parent]),
            synthetic_parents=len(synthetic[rel.parent]),
        )
        out.append({"relationship": rel.name, **scores})
    return out


__all__ = [
    "MULTITABLE_STAGES",
    "RunContext",
    "check_job",
    "load_tables",
    "run_multitable",
    "stage_generate",
    "stage_train",
    "stage_validate",
]
