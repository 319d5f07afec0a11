"""Referential integrity: key normalisation, foreign-key violations, orphans, PK uniqueness.

Keys are compared as normalised strings so that the same key reads the same in both tables
whatever pandas made of it (``42`` and ``42.0`` once a column got a missing value; a datetime
parsed in one table and kept as text in the other). A composite key is its columns'
normalised values joined by an ASCII unit separator.

A foreign key with *any* missing column is no reference at all (SQL ``MATCH SIMPLE``): it is
neither a violation nor an orphan. That is also what ``onOrphans: null`` produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tabular_runner.errors import UserInputError
from tabular_runner.multitable.graph import Key, Relation, SchemaGraph

_SEPARATOR = "\x1f"


def _normalise(values: pd.Series) -> pd.Series:
    """One key column as strings; missing stays missing."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("string")
    if pd.api.types.is_numeric_dtype(values.dtype):
        numeric = pd.to_numeric(values, errors="coerce")
        finite = numeric.dropna()
        if len(finite) == 0 or bool(np.all(np.mod(finite.to_numpy(dtype=float), 1) == 0)):
            return numeric.astype("Int64").astype("string")
        return numeric.astype("string")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
        return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S").astype("string")
    text = values.astype("string")
    # Datetime text in different spellings (``2013-01-01T06:00:00Z`` vs ``2013-01-01 06:00``)
    # must still match: parse when every non-missing value parses.
    sample = text.dropna().head(50)
    if len(sample) and sample.str.match(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}").all():
        stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        if stamps.notna().sum() == text.notna().sum():
            return stamps.dt.strftime("%Y-%m-%dT%H:%M:%S").astype("string")
    return text.str.strip()


def key_strings(frame: pd.DataFrame, key: Key) -> pd.Series:
    """The key of every row as one string; ``<NA>`` where any key column is missing."""
    parts = [_normalise(frame[c]).reset_index(drop=True) for c in key]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + _SEPARATOR + part  # NA propagates: any missing column → NA
    return joined


@dataclass(frozen=True)
class ViolationCount:
    """Foreign-key check of one relationship."""

    relation: Relation
    rows: int
    references: int
    violations: int
    distinct_missing: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "relationship": self.relation.name,
            "childRows": self.rows,
            "references": self.references,
            "violations": self.violations,
            "distinctMissingKeys": self.distinct_missing,
        }


def check_relation(frames: Mapping[str, pd.DataFrame], rel: Relation) -> ViolationCount:
    """Count child rows whose (non-missing) foreign key has no parent row."""
    child = key_strings(frames[rel.child], rel.child_key)
    parent = key_strings(frames[rel.parent], rel.parent_key).dropna()
    present = child.notna()
    missing = present & ~child.isin(set(parent.tolist()))
    return ViolationCount(
        relation=rel,
        rows=len(child),
        references=int(present.sum()),
        violations=int(missing.sum()),
        distinct_missing=int(child[missing].nunique()),
    )


def foreign_key_violations(
    frames: Mapping[str, pd.DataFrame], graph: SchemaGraph
) -> list[ViolationCount]:
    """Check every relationship of ``graph`` on ``frames``."""
    return [check_relation(frames, rel) for rel in graph.relations]


def primary_key_duplicates(
    frames: Mapping[str, pd.DataFrame], graph: SchemaGraph
) -> dict[str, int]:
    """Rows whose primary key repeats an earlier row's (or is missing), per keyed table."""
    out: dict[str, int] = {}
    for table, key in graph.primary_keys.items():
        if key:
            keys = key_strings(frames[table], key)
            out[table] = int(keys.duplicated().sum() + keys.isna().sum())
    return out


@dataclass(frozen=True)
class OrphanAction:
    """What ``onOrphans`` did for one relationship of the real data."""

    relation: Relation
    orphans: int
    action: str
    distinct_keys: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "relationship": self.relation.name,
            "orphanRows": self.orphans,
            "distinctMissingKeys": self.distinct_keys,
            "action": self.action,
        }


def columns_to_null(rel: Relation, graph: SchemaGraph) -> list[str]:
    """Child key columns ``onOrphans: null`` blanks.

    One missing column already makes the reference void (MATCH SIMPLE), so columns that are
    also part of another relationship's foreign key (``origin`` in ``(origin, time_hour)``,
    which also points at ``airports``) are kept when possible: blanking them would break a
    valid reference.
    """
    shared = {c for other in graph.parents_of(rel.child) if other != rel for c in other.child_key}
    own = [c for c in rel.child_key if c not in shared]
    return own or list(rel.child_key)


def resolve_orphans(
    frames: dict[str, pd.DataFrame], graph: SchemaGraph
) -> tuple[dict[str, pd.DataFrame], list[OrphanAction]]:
    """Apply each relationship's ``onOrphans`` to the real data, parents first.

    Tables are visited in creation order, so rows dropped from a parent make their children
    orphans that the child's own relationships then see.

    Returns:
        The cleaned frames (new objects; the input is not modified) and what was done.

    Raises:
        UserInputError: for ``onOrphans: error`` (the default) when orphans exist, naming the
            relationship and the count.
    """
    out = dict(frames)
    actions: list[OrphanAction] = []
    for table in graph.order:
        for rel in graph.parents_of(table):
            counted = check_relation(out, rel)
            if counted.violations == 0:
                continue
            if rel.on_orphans == "error":
                raise UserInputError(
                    f"{rel.field}.onOrphans",
                    f"{counted.violations} row(s) of {rel.child!r} reference "
                    f"{counted.distinct_missing} {rel.parent} key(s) that do not exist "
                    f"({rel.name})",
                    "fix the data, or set onOrphans: drop (remove those rows) or "
                    'onOrphans: "null" (keep them, blank the reference)',
                )
            child = out[rel.child].reset_index(drop=True)
            keys = key_strings(child, rel.child_key)
            parents = set(key_strings(out[rel.parent], rel.parent_key).dropna().tolist())
            orphan = (keys.notna() & ~keys.isin(parents)).to_numpy()
            if rel.on_orphans == "drop":
                child = child.loc[~orphan].reset_index(drop=True)
                action = "dropped"
            else:
                child = child.copy()
                for column in columns_to_null(rel, graph):
                    if pd.api.types.is_integer_dtype(child[column].dtype):
                        child[column] = child[column].astype("Int64")
                    child.loc[orphan, column] = None
                action = "nulled " + ", ".join(columns_to_null(rel, graph))
            out[rel.child] = child
            actions.append(OrphanAction(rel, counted.violations, action, counted.distinct_missing))
    return out, actions
