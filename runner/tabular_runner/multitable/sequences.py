"""Ordered histories: a child table whose rows are events of their parent, in order.

A relationship with ``orderBy`` (or a single-table job with ``spec.sequence``) marks its child
as a *sequence*: each parent row owns an ordered history (a patient's lab results, a chick's
weighings). Three things must then hold besides the keys:

* **lengths** — the number of events per parent follows the real distribution;
* **order** — the order column never decreases within a parent (0 violations, checked);
* **shape over time** — gaps between events, the first and last event, and each entity's
  own statistics (its mean, its first-to-last change) look like the real ones.

Here: the order column's check (:func:`order_kind`: numeric or datetime, one clear line
otherwise), the measures above (:func:`sequence_scores`), and the core engine's model
(:class:`ParSequenceModel`: SDV's PAR, a recurrent model of whole histories conditioned on
the parent's columns). The argn engine's model is TabularARGN with the parent as context
(:mod:`tabular_runner.multitable.context`).

Whatever the model, generated histories are put in order before they are written: the
rows of one parent are sorted by the order column (:func:`sort_histories`); the report
counts the histories whose rows the model produced out of order (``reordered``), so the
model's own sense of order stays visible while the output has none out of place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.multitable.graph import Key, SchemaGraph, suggest_column
from tabular_runner.multitable.integrity import key_strings

Array = np.ndarray[Any, Any]

DEFAULT_SEQUENCE_EPOCHS = 64
"""PAR epochs when ``generator.params.sequenceEpochs`` is not set.

Measured on ChickWeight (578 weighings of 50 chicks, 2 shared cores): 64 epochs fit in
about 55 s."""

ENTITY = "__entity"
_CONTEXT_PREFIX = "__ctx_"


# ---------------------------------------------------------------------------------------
# The order column


def order_kind(frame: pd.DataFrame, column: str, table: str, where: str) -> str:
    """Return ``"numeric"`` or ``"datetime"`` for the order column, or refuse it.

    Raises:
        UserInputError: naming ``where`` when the column is missing, has missing values, or
            mixes numbers with text or dates (nothing can order such a column).
    """
    columns = [str(c) for c in frame.columns]
    if column not in columns:
        raise UserInputError(
            where,
            f"table {table!r} has no column {column!r} to order its rows by",
            suggest_column(column, columns),
        )
    values = frame[column]
    missing = int(values.isna().sum())
    if missing:
        raise UserInputError(
            where,
            f"order column {column!r} of table {table!r} is missing in {missing} row(s)",
            "fill them or drop those rows: an event without a position cannot be ordered",
        )
    if pd.api.types.is_bool_dtype(values.dtype):
        raise UserInputError(
            where, f"order column {column!r} of table {table!r} is boolean", "order by a number"
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "datetime"
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return "numeric"
    n_numbers = int(numbers.notna().sum())
    if n_numbers == 0:
        dates = pd.to_datetime(values, errors="coerce", format="mixed")
        if dates.notna().all():
            return "datetime"
        odd = values[dates.isna()]
        problem = f"{len(odd)} value(s) are neither numbers nor dates (e.g. {odd.iloc[0]!r})"
    else:
        odd = values[numbers.isna()]
        problem = (
            f"mixes types: {n_numbers} value(s) are numbers, {len(odd)} are not "
            f"(e.g. {odd.iloc[0]!r})"
        )
    raise UserInputError(
        where,
        f"order column {column!r} of table {table!r} {problem}",
        "make every value a number, or every value a date",
    )


def check_sequences(graph: SchemaGraph, frames: Mapping[str, pd.DataFrame]) -> dict[int, str]:
    """Check every ``orderBy`` column against the data; return relationship index -> kind.

    Raises:
        UserInputError: naming ``spec.relationships[i].orderBy`` (see :func:`order_kind`).
    """
    kinds: dict[int, str] = {}
    for rel in graph.sequences:
        assert rel.order_by is not None
        kinds[rel.index] = order_kind(
            frames[rel.child], rel.order_by, rel.child, f"{rel.field}.orderBy"
        )
    return kinds


def order_values(values: pd.Series, kind: str) -> pd.Series:
    """The order column as numbers or datetimes (text read as such)."""
    if kind == "numeric":
        return pd.to_numeric(values, errors="coerce")
    return pd.to_datetime(values, errors="coerce", format="mixed")


def order_violations(frame: pd.DataFrame, key: Key, column: str, kind: str) -> int:
    """Consecutive rows of one parent (file order) whose order value goes down."""
    if frame.empty:
        return 0
    entity = key_strings(frame, key)
    values = order_values(frame[column], kind)
    numbers = values.astype("int64") if kind == "datetime" else values.astype(float)
    work = pd.DataFrame({"e": entity.to_numpy(), "v": numbers.to_numpy()}).dropna(subset=["e"])
    drops = work.groupby("e", sort=False)["v"].diff() < 0
    return int(drops.sum())


def sort_histories(
    frame: pd.DataFrame, key: Key, column: str, kind: str
) -> tuple[pd.DataFrame, int]:
    """Rows grouped by parent, each history in order; return it and how many were reordered.

    Parents keep the order of their first row; a stable sort keeps ties as generated.
    """
    if frame.empty:
        return frame, 0
    entity = key_strings(frame, key)
    values = order_values(frame[column], kind)
    numbers = values.astype("int64") if kind == "datetime" else values.astype(float)
    work = pd.DataFrame({"e": entity.to_numpy(), "v": numbers.to_numpy()})
    before = work.groupby("e", sort=False)["v"].apply(lambda s: bool((s.diff() < 0).any()))
    first = work.groupby("e", sort=False).ngroup()
    order = np.lexsort((np.arange(len(work)), numbers.to_numpy(), first.to_numpy()))
    return frame.iloc[order].reset_index(drop=True), int(before.sum())


# ---------------------------------------------------------------------------------------
# Measures


def _similarity(real: Sequence[float] | Array, synthetic: Sequence[float] | Array) -> float | None:
    """1 − Kolmogorov–Smirnov statistic (SDMetrics' KSComplement), ``None`` when empty."""
    a = np.asarray(real, dtype=float)
    b = np.asarray(synthetic, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return None
    from scipy.stats import ks_2samp

    return round(1.0 - float(ks_2samp(a, b).statistic), 6)


def _summary(values: Array) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"mean": None, "median": None}
    return {"mean": round(float(finite.mean()), 4), "median": round(float(np.median(finite)), 4)}


def _histories(frame: pd.DataFrame, key: Key, column: str, kind: str) -> tuple[pd.DataFrame, float]:
    """Rows with a parent, sorted within each parent; order as numbers (days for dates)."""
    entity = key_strings(frame, key)
    values = order_values(frame[column], kind)
    scale = 1.0
    if kind == "datetime":
        numbers = values.astype("int64").astype(float)
        scale = 86_400e9  # nanoseconds per day: gaps in days
    else:
        numbers = values.astype(float)
    work = frame.assign(__e=entity.to_numpy(), __o=numbers.to_numpy() / scale)
    work = work[work["__e"].notna()]
    return work.sort_values(["__e", "__o"], kind="stable"), scale


def sequence_scores(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    key: Key,
    column: str,
    kind: str,
    attributes: Sequence[str],
    real_parents: int,
    synthetic_parents: int,
) -> dict[str, Any]:
    """How close the synthetic histories come to the real ones.

    Args:
        real: The real child table.
        synthetic: The synthetic child table (as written).
        key: The child's key columns naming the parent (the entity).
        column: The order column.
        kind: ``numeric`` or ``datetime`` (:func:`order_kind`).
        attributes: Numeric child columns whose per-entity statistics are compared.
        real_parents: Parent rows in the real data (histories of length 0 included).
        synthetic_parents: Parent rows in the synthetic data.

    Returns:
        ``orderViolations`` (synthetic, as written; must be 0), lengths (similarity, mean,
        max), gaps, first and last event, and per attribute the distribution of each
        entity's mean and of its first-to-last change: each a similarity (1 − KS) with real
        and synthetic summaries.
    """
    out: dict[str, Any] = {
        "orderBy": column,
        "orderKind": kind,
        "orderViolations": order_violations(synthetic, key, column, kind),
        "realOrderViolations": order_violations(real, key, column, kind),
    }
    r, _ = _histories(real, key, column, kind)
    s, _ = _histories(synthetic, key, column, kind)
    r_len = r.groupby("__e").size().to_numpy()
    s_len = s.groupby("__e").size().to_numpy()
    r_len = np.concatenate([r_len, np.zeros(max(0, real_parents - len(r_len)))])
    s_len = np.concatenate([s_len, np.zeros(max(0, synthetic_parents - len(s_len)))])
    out["length"] = {
        "similarity": _similarity(r_len, s_len),
        "real": {**_summary(r_len), "max": int(r_len.max()) if len(r_len) else None},
        "synthetic": {**_summary(s_len), "max": int(s_len.max()) if len(s_len) else None},
    }
    unit = "days" if kind == "datetime" else column
    measures: dict[str, tuple[Array, Array]] = {
        "gap": (
            r.groupby("__e")["__o"].diff().dropna().to_numpy(),
            s.groupby("__e")["__o"].diff().dropna().to_numpy(),
        ),
        "first": (
            r.groupby("__e")["__o"].first().to_numpy(),
            s.groupby("__e")["__o"].first().to_numpy(),
        ),
        "last": (
            r.groupby("__e")["__o"].last().to_numpy(),
            s.groupby("__e")["__o"].last().to_numpy(),
        ),
    }
    for name, (a, b) in measures.items():
        out[name] = {
            "similarity": _similarity(a, b),
            "unit": unit,
            "real": _summary(a),
            "synthetic": _summary(b),
        }
    per_entity: dict[str, Any] = {}
    for attribute in attributes:
        if attribute not in r.columns or attribute not in s.columns:
            continue
        rv = r.assign(__v=pd.to_numeric(r[attribute], errors="coerce"))
        sv = s.assign(__v=pd.to_numeric(s[attribute], errors="coerce"))
        stats: dict[str, Any] = {}
        for stat, fn in (("mean", "mean"), ("change", None)):
            if fn is not None:
                a = rv.groupby("__e")["__v"].mean().to_numpy()
                b = sv.groupby("__e")["__v"].mean().to_numpy()
            else:
                a = (rv.groupby("__e")["__v"].last() - rv.groupby("__e")["__v"].first()).to_numpy()
                b = (sv.groupby("__e")["__v"].last() - sv.groupby("__e")["__v"].first()).to_numpy()
            stats[stat] = {
                "similarity": _similarity(a, b),
                "real": _summary(a),
                "synthetic": _summary(b),
            }
        per_entity[attribute] = stats
    out["perEntity"] = per_entity
    parts = [out["length"]["similarity"], out["gap"]["similarity"]]
    parts += [out["first"]["similarity"], out["last"]["similarity"]]
    parts += [v["similarity"] for stats in per_entity.values() for v in stats.values()]
    scored = [p for p in parts if p is not None]
    out["score"] = round(float(np.mean(scored)), 6) if scored else None
    return out


# ---------------------------------------------------------------------------------------
# The core engine's model: SDV PAR


@dataclass
class ParSequenceModel:
    """SDV's PARSynthesizer over the histories, the parent's columns as context.

    PAR (Zhang et al., probabilistic auto-regressive) is a recurrent network over whole
    sequences; it learns the number of events per entity with them. Parents without any
    event (PAR cannot emit an empty history) are drawn separately: the caller gives the
    synthetic parents that must get a history.
    """

    order_by: str
    kind: str
    attributes: list[str]
    context: list[str]
    epochs: int = DEFAULT_SEQUENCE_EPOCHS
    seed: int = 0
    name: str = "par"
    model: Any = None
    fit_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def fit(
        self,
        histories: pd.DataFrame,
        parents: pd.DataFrame,
        key: Key,
        parent_key: Key,
        sdtypes: Mapping[str, str],
    ) -> None:
        """Fit on the child rows (with a parent) and their parents' context columns."""
        import time

        from sdv.metadata import Metadata
        from sdv.sequential import PARSynthesizer

        from tabular_runner.generators.sdv_adapter import seed_everything

        started = time.perf_counter()
        table = self._frame(histories, key, parents, parent_key)
        metadata = Metadata.detect_from_dataframes({"events": table}, infer_keys=None)
        metadata.update_column(table_name="events", column_name=ENTITY, sdtype="id")
        for column in [*self.attributes, *[_CONTEXT_PREFIX + c for c in self.context]]:
            sdtype = sdtypes.get(column.removeprefix(_CONTEXT_PREFIX)) or sdtypes.get(column)
            if sdtype in ("numerical", "categorical", "boolean", "datetime"):
                try:
                    metadata.update_column(table_name="events", column_name=column, sdtype=sdtype)
                except Exception:  # noqa: BLE001 - SDV refuses the sdtype: keep its own
                    continue
        metadata.update_column(
            table_name="events",
            column_name=self.order_by,
            sdtype="numerical" if self.kind == "numeric" else "datetime",
        )
        metadata.set_sequence_key(table_name="events", column_name=ENTITY)
        metadata.set_sequence_index(table_name="events", column_name=self.order_by)
        seed_everything(self.seed)
        model = PARSynthesizer(
            metadata,
            context_columns=[_CONTEXT_PREFIX + c for c in self.context],
            epochs=self.epochs,
            verbose=False,
            enforce_min_max_values=True,
        )
        try:
            model.fit({"events": table})  # SDV 2 takes single tables by name
        except Exception as exc:
            raise EngineError(
                f"PAR failed to fit the histories: {type(exc).__name__}: {exc}"
            ) from exc
        self.model = model
        self.fit_seconds = round(time.perf_counter() - started, 3)

    def _frame(
        self, histories: pd.DataFrame, key: Key, parents: pd.DataFrame, parent_key: Key
    ) -> pd.DataFrame:
        entity = key_strings(histories, key)
        table = histories[[self.order_by, *self.attributes]].copy()
        table[self.order_by] = order_values(table[self.order_by], self.kind)
        table.insert(0, ENTITY, entity.to_numpy())
        if self.context:
            ctx = _prefixed_context(parents, self.context, key_strings(parents, parent_key))
            table = table.merge(ctx, on=ENTITY, how="left")
        return table[table[ENTITY].notna()].reset_index(drop=True)

    def sample(
        self, parents: pd.DataFrame, parent_key: Key, seed: int, lengths: Array | None = None
    ) -> pd.DataFrame:
        """One history per parent row given; ``ENTITY`` holds the parent's key string.

        ``lengths`` (events per parent, from the modelled child counts) fixes each history's
        length; PAR's own length model undershoots badly at few epochs (ChickWeight, 8
        epochs: 4.2 events per chick against 11.6 real), the drawn counts follow the real
        distribution per parent group by construction.
        """
        from tabular_runner.generators.sdv_adapter import seed_everything

        if self.model is None:
            raise EngineError("PAR: sample() called before fit()")
        keep = [ENTITY, self.order_by, *self.attributes]
        if parents.empty:
            return pd.DataFrame(columns=keep)
        seed_everything(seed)
        entities = key_strings(parents, parent_key).to_numpy()
        if lengths is None:
            return self._sample_group(parents, entities, None)[keep].reset_index(drop=True)
        parts = [
            self._sample_group(
                parents.iloc[np.flatnonzero(lengths == n)], entities[lengths == n], int(n)
            )
            for n in sorted(set(lengths.tolist()))
            if n > 0
        ]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=keep)
        return frame[keep].reset_index(drop=True)

    def _sample_group(
        self, parents: pd.DataFrame, entities: Array, length: int | None
    ) -> pd.DataFrame:
        if self.context:
            ctx = _prefixed_context(parents, self.context, entities)
            return _one_table(
                self.model.sample_sequential_columns(context_columns=ctx, sequence_length=length)
            )
        sampled = _one_table(
            self.model.sample_sequences(num_sequences=len(entities), sequence_length=length)
        )
        # Without context, parents are exchangeable: deal the histories out in order.
        names = pd.unique(sampled[ENTITY])
        sampled[ENTITY] = sampled[ENTITY].map(dict(zip(names, entities, strict=False)))
        return sampled


def _prefixed_context(
    parents: pd.DataFrame, context: list[str], entities: pd.Series | Array | None = None
) -> pd.DataFrame:
    """The parents' context columns, named ``__ctx_<column>``; first ``ENTITY`` if given."""
    ctx = parents[context].reset_index(drop=True).copy()
    ctx.columns = [_CONTEXT_PREFIX + c for c in context]
    if entities is not None:
        ctx.insert(0, ENTITY, np.asarray(entities, dtype=object))
    return ctx


def _one_table(sampled: Any) -> pd.DataFrame:
    """SDV 2 returns ``{name: frame}`` from single-table synthesizers."""
    if isinstance(sampled, dict):
        frame: pd.DataFrame = next(iter(sampled.values()))
        return frame
    return pd.DataFrame(sampled)


WIDE_MAX_EVENTS = 64
"""The longest history :class:`WideHistoryModel` takes (``sequenceModel: auto`` picks PAR
above it): a wide row has a column per event and attribute."""

SEQUENCE_MODELS = ("auto", "wide", "par")
"""Values of ``generator.params.sequenceModel`` (the core engine's model of histories)."""

_LENGTH = "__length"


def _wide_name(column: str, position: int) -> str:
    return f"__e{position}__{column}"


@dataclass
class WideHistoryModel:
    """Each history as one wide row, modelled by a GaussianCopula with its parent's columns.

    A parent's history becomes one row: its length, the first order value and the steps
    between consecutive events, and each attribute at each position (``__e<i>__<column>``),
    beside the parent's context columns. One copula over these rows learns how an entity's
    values at different times go together (a chick heavy at day 10 is heavy at day 20), the
    length, and the parent's influence; histories are drawn *given* the synthetic parent and
    the length drawn from the modelled child counts (exact conditioning in the copula's
    latent space, :func:`tabular_runner.generators.conditional.copula_given`). Steps are
    kept non-negative, so histories come out in order. For histories up to
    :data:`WIDE_MAX_EVENTS` events; longer ones go to :class:`ParSequenceModel`.
    """

    order_by: str
    kind: str
    attributes: list[str]
    context: list[str]
    seed: int = 0
    name: str = "gaussian_copula (wide histories)"
    width: int = 0
    synthesizer: Any = None
    fit_seconds: float = 0.0
    step_medians: list[float] = field(default_factory=list)
    dtypes: Any = None
    """The real columns' dtypes (integers come back as integers)."""

    def fit(
        self,
        histories: pd.DataFrame,
        parents: pd.DataFrame,
        key: Key,
        parent_key: Key,
        sdtypes: Mapping[str, str],
    ) -> None:
        """Fit on the histories (one wide row per parent) and their parents' context."""
        import time

        from tabular_runner.generators import create_synthesizer
        from tabular_runner.generators.base import FitContext
        from tabular_runner.spec import GeneratorSpec, GeneratorType

        started = time.perf_counter()
        typed = self.attributes if self.kind == "datetime" else [self.order_by, *self.attributes]
        self.dtypes = histories[typed].dtypes
        events = histories[[self.order_by, *self.attributes]].copy()
        events[self.order_by] = self._numbers(events[self.order_by])
        events.insert(0, ENTITY, key_strings(histories, key).to_numpy())
        events = events[events[ENTITY].notna()].sort_values([ENTITY, self.order_by], kind="stable")
        steps = events.groupby(ENTITY, sort=False)[self.order_by].diff()
        first = steps.isna()
        events[self.order_by] = steps.where(~first, events[self.order_by])
        events["__position"] = events.groupby(ENTITY, sort=False).cumcount()
        self.width = int(events["__position"].max()) + 1 if len(events) else 0
        wide = self._widen(events)
        self.step_medians = [
            float(v) if pd.notna(v) else 0.0
            for v in (
                events.groupby("__position")[self.order_by].median().reindex(range(self.width))
            )
        ]
        ctx = _prefixed_context(parents, self.context, key_strings(parents, parent_key))
        wide = wide.merge(ctx, on=ENTITY, how="left").drop(columns=[ENTITY])
        categorical = {"categorical", "boolean"}
        kinds = {
            c: ("categorical" if sdtypes.get(_source_column(c)) in categorical else "numeric")
            for c in wide.columns
        }
        synthesizer = create_synthesizer(GeneratorSpec(type=GeneratorType.GAUSSIAN_COPULA), None)
        synthesizer.fit(
            wide,
            FitContext(
                seed=self.seed,
                categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
                numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
            ),
        )
        self.synthesizer = synthesizer
        self.fit_seconds = round(time.perf_counter() - started, 3)

    def _numbers(self, values: pd.Series) -> pd.Series:
        ordered = order_values(values, self.kind)
        if self.kind == "datetime":
            return ordered.astype("int64").astype(float) / 1e9  # seconds
        return ordered.astype(float)

    def _widen(self, events: pd.DataFrame) -> pd.DataFrame:
        lengths = events.groupby(ENTITY, sort=False).size()
        out = pd.DataFrame({ENTITY: lengths.index, _LENGTH: lengths.to_numpy()})
        for column in [self.order_by, *self.attributes]:
            table = events.pivot(index=ENTITY, columns="__position", values=column)
            table = table.reindex(index=out[ENTITY], columns=range(self.width))
            for position in range(self.width):
                out[_wide_name(column, position)] = table[position].to_numpy()
        return out

    def sample(
        self, parents: pd.DataFrame, parent_key: Key, seed: int, lengths: Array | None = None
    ) -> pd.DataFrame:
        """One history per parent row given, of the given length (``ENTITY``: parent key)."""
        from tabular_runner.generators.base import SampleRequest

        if self.synthesizer is None:
            raise EngineError("wide histories: sample() called before fit()")
        keep = [ENTITY, self.order_by, *self.attributes]
        if parents.empty:
            return pd.DataFrame(columns=keep)
        given = _prefixed_context(parents, self.context)
        if lengths is not None:
            given[_LENGTH] = np.minimum(np.asarray(lengths), self.width)
        drawn = self.synthesizer.sample_controlled(
            len(parents), seed, SampleRequest(given=given)
        ).reset_index(drop=True)
        counts = (
            np.asarray(given[_LENGTH], dtype=np.int64)
            if lengths is not None
            else np.clip(
                np.rint(pd.to_numeric(drawn[_LENGTH], errors="coerce").fillna(1)), 1, self.width
            ).astype(np.int64)
        )
        entities = key_strings(parents, parent_key).to_numpy()
        rows = np.repeat(np.arange(len(parents)), counts)
        positions = np.concatenate([np.arange(n) for n in counts]) if len(rows) else rows
        out = pd.DataFrame({ENTITY: entities[rows]})
        steps = np.empty(len(rows), dtype=float)
        for column in [self.order_by, *self.attributes]:
            values = np.empty(len(rows), dtype=object)
            for position in range(self.width):
                at = positions == position
                if at.any():
                    values[at] = drawn[_wide_name(column, position)].to_numpy(dtype=object)[
                        rows[at]
                    ]
            if column == self.order_by:
                steps = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
            else:
                series = pd.Series(values, dtype=drawn[_wide_name(column, 0)].dtype)
                # A gap in a drawn history (the copula's missing cell): the previous event's
                # value, as the entity's last known state.
                out[column] = series.groupby(out[ENTITY].to_numpy(), sort=False).ffill()
        medians = np.asarray(self.step_medians, dtype=float)[positions] if len(rows) else steps
        steps = np.where(np.isnan(steps), medians, steps)
        steps = np.where(positions > 0, np.maximum(steps, 0.0), steps)
        order = pd.Series(steps).groupby(out[ENTITY].to_numpy(), sort=False).cumsum()
        if self.kind == "datetime":
            out[self.order_by] = pd.to_datetime(order * 1e9, unit="ns")
        else:
            out[self.order_by] = order.to_numpy()
        from tabular_runner.generators import conform

        typed = conform(out[list(self.dtypes.index)], self.dtypes)
        for column in typed.columns:
            out[column] = typed[column]
        return out[keep].reset_index(drop=True)


def _source_column(wide: str) -> str:
    """``__e3__weight`` → ``weight``; ``__ctx_Diet`` → ``Diet``; others unchanged."""
    if wide.startswith("__e") and "__" in wide[3:]:
        return wide[3:].split("__", 1)[1]
    return wide.removeprefix(_CONTEXT_PREFIX)
