"""The relational graph of a MultiTableSchema: validation, order, depth, keys.

Everything here is pure (no data, no heavy imports) except :func:`check_keys`, which looks at
the real frames. A schema is refused, with the offending field named, when:

* a relationship's parent and child keys differ in length, or a key names a column the
  table's declared ``columns`` lack (the data check repeats this against the real columns);
* the relationships form a cycle (a table that is, through its children, its own ancestor;
  a self-reference is the shortest cycle). Neither strategy can sample a cycle: both create
  parents before children. The cycle is named in the error;
* the tables do not form one connected schema (a table with no relationship to the others
  is a separate job: run it as a single-table SynthesisJob).

Depth follows SDV's meaning: the number of tables on the longest parent→child chain, so a
lone parent with children has depth 2 (what SDV calls "one level of depth").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tabular_runner.errors import UserInputError
from tabular_runner.spec import MultiTableSchemaSpec, RelationshipSpec, TableSpec

if TYPE_CHECKING:
    import pandas as pd

Key = tuple[str, ...]


def as_key(value: str | list[str] | None) -> Key:
    """Normalise a key given as one column or a list of columns into a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Relation:
    """One foreign key: ``child.child_key`` → ``parent.parent_key`` (composite allowed)."""

    index: int
    parent: str
    parent_key: Key
    child: str
    child_key: Key
    on_orphans: str = "error"
    order_by: str | None = None
    """The child column ordering each parent's history (``None``: not a sequence)."""

    @property
    def name(self) -> str:
        """Readable, unique label: ``flights.(origin,time_hour)->weather.(origin,time_hour)``."""
        return f"{self.child}.{_fmt_key(self.child_key)}->{self.parent}.{_fmt_key(self.parent_key)}"

    @property
    def field(self) -> str:
        """The manifest field of this relationship, for errors."""
        return f"spec.relationships[{self.index}]"

    @property
    def composite(self) -> bool:
        """True when the key has more than one column."""
        return len(self.child_key) > 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready camelCase form."""
        return {
            "name": self.name,
            "parent": self.parent,
            "parentKey": list(self.parent_key),
            "child": self.child,
            "childKey": list(self.child_key),
            "onOrphans": self.on_orphans,
            **({"orderBy": self.order_by} if self.order_by else {}),
        }


def _fmt_key(key: Key) -> str:
    return key[0] if len(key) == 1 else "(" + ",".join(key) + ")"


@dataclass
class SchemaGraph:
    """A validated schema: tables in creation order, their keys and relationships."""

    tables: list[str]
    primary_keys: dict[str, Key]
    relations: list[Relation]
    order: list[str] = field(default_factory=list)
    depth: int = 1

    def parents_of(self, table: str) -> list[Relation]:
        """Relationships in which ``table`` is the child."""
        return [r for r in self.relations if r.child == table]

    def children_of(self, table: str) -> list[Relation]:
        """Relationships in which ``table`` is the parent."""
        return [r for r in self.relations if r.parent == table]

    def sequence_of(self, table: str) -> Relation | None:
        """The relationship whose ``orderBy`` makes ``table`` a history of its parent."""
        return next((r for r in self.parents_of(table) if r.order_by), None)

    @property
    def sequences(self) -> list[Relation]:
        """Relationships with ``orderBy``, in declared order."""
        return [r for r in self.relations if r.order_by]

    @property
    def roots(self) -> list[str]:
        """Tables without parents, in creation order."""
        return [t for t in self.order if not self.parents_of(t)]

    @property
    def has_composite_keys(self) -> bool:
        """True when a relationship or a primary key has more than one column."""
        return any(r.composite for r in self.relations) or any(
            len(k) > 1 for k in self.primary_keys.values()
        )

    def key_columns(self, table: str) -> set[str]:
        """Primary and foreign key columns of ``table``: assigned, never modelled."""
        columns = set(self.primary_keys.get(table, ()))
        for rel in self.parents_of(table):
            columns.update(rel.child_key)
        return columns

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the report (and the MultiTableSchema status)."""
        return {
            "tables": list(self.order),
            "tableCount": len(self.tables),
            "depth": self.depth,
            "compositeKeys": self.has_composite_keys,
            "primaryKeys": {t: list(k) for t, k in self.primary_keys.items() if k},
            "relationships": [r.to_dict() for r in self.relations],
        }


def find_cycle(tables: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str] | None:
    """Return one cycle of the parent→child ``edges`` as ``[a, b, ..., a]``, or ``None``."""
    children: dict[str, list[str]] = {t: [] for t in tables}
    for parent, child in edges:
        children.setdefault(parent, []).append(child)
        children.setdefault(child, [])
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(children, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in children[node]:
            if colour[nxt] == grey:
                return stack[stack.index(nxt) :] + [nxt]
            if colour[nxt] == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in children:
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(tables: list[str], relations: list[Relation]) -> list[str]:
    """Tables with every parent before its children; ties keep the declared order."""
    pending = {t: {r.parent for r in relations if r.child == t} for t in tables}
    order: list[str] = []
    while pending:
        ready = [t for t in tables if t in pending and not pending[t]]
        if not ready:  # a cycle; callers check with find_cycle first
            raise ValueError("the relationships form a cycle")
        for table in ready:
            order.append(table)
            del pending[table]
        for parents in pending.values():
            parents.difference_update(ready)
    return order


def schema_depth(order: list[str], relations: list[Relation]) -> int:
    """Tables on the longest parent→child chain (1 for a lone table)."""
    depth = dict.fromkeys(order, 1)
    for table in order:
        for rel in relations:
            if rel.child == table:
                depth[table] = max(depth[table], depth[rel.parent] + 1)
    return max(depth.values(), default=1)


def components(tables: list[str], relations: list[Relation]) -> list[list[str]]:
    """Weakly connected groups of tables, each in declared order."""
    group = {t: t for t in tables}

    def root(t: str) -> str:
        while group[t] != t:
            group[t] = group[group[t]]
            t = group[t]
        return t

    for rel in relations:
        group[root(rel.parent)] = root(rel.child)
    found: dict[str, list[str]] = {}
    for table in tables:
        found.setdefault(root(table), []).append(table)
    return list(found.values())


def _declared_columns(table: TableSpec) -> set[str]:
    return {c.name for c in table.columns}


def _check_declared(table: TableSpec, key: Key, where: str) -> None:
    declared = _declared_columns(table)
    if not declared:
        return  # columns not declared: checked against the data later
    for column in key:
        if column not in declared:
            raise UserInputError(
                where,
                f"column {column!r} is not among the declared columns of table {table.name!r}",
                suggest_column(column, declared),
            )


def suggest_column(name: str, known: Iterable[str]) -> str:
    """A hint for a misspelt column: the closest known name, else the known names."""
    close = difflib.get_close_matches(name, list(known), n=1)
    listed = ", ".join(sorted(known)[:12])
    return f"did you mean {close[0]!r}?" if close else f"known columns: {listed}"


def build_graph(spec: MultiTableSchemaSpec) -> SchemaGraph:
    """Validate a schema's structure and return its graph.

    Args:
        spec: The MultiTableSchema spec (table and relationship names are already checked by
            the spec model).

    Returns:
        The graph with its creation order and depth.

    Raises:
        UserInputError: key arity mismatches, keys naming undeclared columns, cycles (named),
            or tables that are not connected.
    """
    tables = {t.name: t for t in spec.tables}
    names = [t.name for t in spec.tables]
    primary_keys: dict[str, Key] = {}
    for i, table in enumerate(spec.tables):
        key = as_key(table.primary_key)
        _check_declared(table, key, f"spec.tables[{i}].primaryKey")
        primary_keys[table.name] = key

    relations: list[Relation] = []
    for i, rel in enumerate(spec.relationships):
        relations.append(_relation(i, rel, tables))

    cycle = find_cycle(names, [(r.parent, r.child) for r in relations])
    if cycle:
        raise UserInputError(
            "spec.relationships",
            f"the relationships form a cycle: {' -> '.join(cycle)}",
            "no strategy can sample a cycle (parents are created before children); break it "
            "by dropping one relationship, or model the back-reference as an ordinary column",
        )
    sequences: dict[str, Relation] = {}
    for relation in relations:
        if relation.order_by is None:
            continue
        if relation.child in sequences:
            raise UserInputError(
                f"{relation.field}.orderBy",
                f"table {relation.child!r} is already an ordered history of "
                f"{sequences[relation.child].parent!r} ({sequences[relation.child].field})",
                "a table is the history of one parent: keep orderBy on one relationship",
            )
        sequences[relation.child] = relation
    groups = components(names, relations)
    if len(groups) > 1:
        listed = "; ".join("{" + ", ".join(g) + "}" for g in groups)
        raise UserInputError(
            "spec.relationships",
            f"the tables are not connected: {len(groups)} separate groups {listed}",
            "add the relationship that links them, or synthesise each group as its own job",
        )
    order = topological_order(names, relations)
    return SchemaGraph(
        tables=names,
        primary_keys=primary_keys,
        relations=relations,
        order=order,
        depth=schema_depth(order, relations),
    )


def _relation(index: int, rel: RelationshipSpec, tables: Mapping[str, TableSpec]) -> Relation:
    where = f"spec.relationships[{index}]"
    parent_key, child_key = as_key(rel.parent_key), as_key(rel.child_key)
    if not parent_key or not child_key:
        raise UserInputError(where, "a key names no column", "give at least one column")
    if len(parent_key) != len(child_key):
        raise UserInputError(
            f"{where}.childKey",
            f"has {len(child_key)} column(s) but parentKey has {len(parent_key)}",
            "list the child's columns in the same order as the parent's key columns",
        )
    if len(set(child_key)) != len(child_key) or len(set(parent_key)) != len(parent_key):
        raise UserInputError(where, "a key repeats a column", "list each column once")
    _check_declared(tables[rel.parent], parent_key, f"{where}.parentKey")
    _check_declared(tables[rel.child], child_key, f"{where}.childKey")
    if rel.order_by is not None:
        _check_declared(tables[rel.child], (rel.order_by,), f"{where}.orderBy")
        if rel.order_by in child_key:
            raise UserInputError(
                f"{where}.orderBy",
                f"{rel.order_by!r} is the foreign key itself",
                "order by the column that places each event in time (a date or a step)",
            )
    return Relation(
        index=index,
        parent=rel.parent,
        parent_key=parent_key,
        child=rel.child,
        child_key=child_key,
        on_orphans=rel.on_orphans,
        order_by=rel.order_by,
    )


def check_keys(graph: SchemaGraph, frames: Mapping[str, pd.DataFrame]) -> None:
    """Check keys against the real data: columns exist, parent keys are unique and non-null.

    Raises:
        UserInputError: naming the table/relationship, the column or the duplicate count.
    """
    index = {name: i for i, name in enumerate(graph.tables)}
    for table, key in graph.primary_keys.items():
        if key:
            _check_unique(frames[table], key, table, f"spec.tables[{index[table]}].primaryKey")
    for rel in graph.relations:
        for side, table, key in (
            ("parentKey", rel.parent, rel.parent_key),
            ("childKey", rel.child, rel.child_key),
        ):
            columns = [str(c) for c in frames[table].columns]
            for column in key:
                if column not in columns:
                    raise UserInputError(
                        f"{rel.field}.{side}",
                        f"table {table!r} has no column {column!r}",
                        suggest_column(column, columns),
                    )
        if rel.parent_key != graph.primary_keys.get(rel.parent):
            _check_unique(frames[rel.parent], rel.parent_key, rel.parent, f"{rel.field}.parentKey")


def _check_unique(frame: pd.DataFrame, key: Key, table: str, where: str) -> None:
    columns = [str(c) for c in frame.columns]
    for column in key:
        if column not in columns:
            raise UserInputError(
                where, f"table {table!r} has no column {column!r}", suggest_column(column, columns)
            )
    part = frame[list(key)]
    nulls = int(part.isna().any(axis=1).sum())
    if nulls:
        raise UserInputError(
            where,
            f"key {_fmt_key(key)} of table {table!r} is missing in {nulls} row(s)",
            "a key a relationship points to must be set in every row",
        )
    duplicates = int(part.duplicated().sum())
    if duplicates:
        raise UserInputError(
            where,
            f"key {_fmt_key(key)} of table {table!r} is not unique: {duplicates} duplicate row(s)",
            "deduplicate the table or choose a key that identifies each row",
        )
