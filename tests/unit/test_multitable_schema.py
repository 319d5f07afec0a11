"""Multi-table logic without training: schema graph, keys, orphans, child counts, strategy.

Everything is real code on small hand-made frames; nothing is mocked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.multitable.cardinality import (
    CardinalityModel,
    children_per_parent,
    shape_similarity,
)
from tabular_runner.multitable.graph import build_graph, check_keys, find_cycle
from tabular_runner.multitable.integrity import (
    foreign_key_violations,
    key_strings,
    primary_key_duplicates,
    resolve_orphans,
)
from tabular_runner.multitable.keys import make_unique
from tabular_runner.multitable.strategies import (
    choose_strategy,
    context_relation,
    hma_obstacles,
    primary_relation,
)
from tabular_runner.spec import GeneratorSpec, MultiTableSchemaSpec

pytestmark = pytest.mark.unit


def _spec(tables: list[Any], relationships: list[dict[str, Any]]) -> MultiTableSchemaSpec:
    entries = [
        t if isinstance(t, dict) else {"name": t, "source": {"uri": f"file://{t}.csv"}}
        for t in tables
    ]
    return MultiTableSchemaSpec.model_validate({"tables": entries, "relationships": relationships})


def _rel(parent: str, child: str, pk: Any = "id", fk: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "parent": parent,
        "parentKey": pk,
        "child": child,
        "childKey": fk or f"{parent}_id",
        **extra,
    }


CHAIN = _spec(
    [
        {"name": "c", "source": {"uri": "file://c.csv"}},
        {"name": "b", "source": {"uri": "file://b.csv"}, "primaryKey": "id"},
        {"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"},
    ],
    [_rel("a", "b"), _rel("b", "c")],
)


# ---------------------------------------------------------------------------------------
# Graph


def test_graph_orders_parents_first_and_measures_depth() -> None:
    # Setup / Run
    graph = build_graph(CHAIN)

    # Assert
    assert graph.order == ["a", "b", "c"]
    assert graph.depth == 3
    assert graph.roots == ["a"]
    assert [r.child for r in graph.children_of("a")] == ["b"]


@pytest.mark.parametrize(
    ("relationships", "expected"),
    [
        ([_rel("a", "a")], "a -> a"),
        ([_rel("a", "b"), _rel("b", "a")], "a -> b -> a"),
        ([_rel("a", "b"), _rel("b", "c"), _rel("c", "a")], "a -> b -> c -> a"),
    ],
    ids=["self-reference", "two-table-cycle", "three-table-cycle"],
)
def test_cycles_are_refused_and_named(relationships: list[dict[str, Any]], expected: str) -> None:
    # Setup
    spec = _spec(["a", "b", "c"], relationships)

    # Run
    with pytest.raises(UserInputError) as caught:
        build_graph(spec)

    # Assert
    assert caught.value.field == "spec.relationships"
    assert expected in caught.value.problem


def test_find_cycle_returns_none_on_a_dag() -> None:
    assert find_cycle(["a", "b", "c"], [("a", "b"), ("a", "c"), ("b", "c")]) is None


def test_disconnected_tables_are_refused_with_the_groups() -> None:
    # Setup
    spec = _spec(["a", "b", "lonely"], [_rel("a", "b")])

    # Run
    with pytest.raises(UserInputError) as caught:
        build_graph(spec)

    # Assert
    assert "not connected" in caught.value.problem
    assert "{lonely}" in caught.value.problem


@pytest.mark.parametrize(
    ("relationship", "field", "words"),
    [
        (
            _rel("a", "b", pk=["x", "y"], fk="x"),
            "spec.relationships[0].childKey",
            "parentKey has 2",
        ),
        (_rel("a", "b", pk="id", fk=["x", "x"]), "spec.relationships[0].childKey", "parentKey"),
        (_rel("a", "b", pk="nope"), "spec.relationships[0].parentKey", "not among the declared"),
    ],
    ids=["arity", "repeated-column", "undeclared-column"],
)
def test_bad_keys_name_the_field(relationship: dict[str, Any], field: str, words: str) -> None:
    # Setup
    tables = [
        {
            "name": "a",
            "source": {"uri": "file://a.csv"},
            "columns": [{"name": "id"}, {"name": "x"}, {"name": "y"}],
        },
        "b",
    ]
    spec = _spec(tables, [relationship])

    # Run
    with pytest.raises(UserInputError) as caught:
        build_graph(spec)

    # Assert
    assert caught.value.field == field
    assert words in caught.value.problem


def test_unknown_table_is_refused_by_the_spec() -> None:
    with pytest.raises(ValueError, match="unknown table 'ghost'"):
        _spec(["a"], [_rel("ghost", "a")])


@pytest.mark.parametrize(
    ("parent", "words"),
    [
        (pd.DataFrame({"id": [1, 1, 2]}), "not unique: 1 duplicate"),
        (pd.DataFrame({"id": [1, None, 2]}), "missing in 1 row"),
        (pd.DataFrame({"key": [1, 2, 3]}), "has no column 'id'"),
    ],
    ids=["duplicate", "null", "missing-column"],
)
def test_check_keys_on_data(parent: pd.DataFrame, words: str) -> None:
    # Setup
    graph = build_graph(
        _spec(
            [{"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"}, "b"],
            [_rel("a", "b")],
        )
    )
    frames = {"a": parent, "b": pd.DataFrame({"a_id": [1, 2]})}

    # Run
    with pytest.raises(UserInputError) as caught:
        check_keys(graph, frames)

    # Assert
    assert words in caught.value.problem
    assert caught.value.field == "spec.tables[0].primaryKey"


# ---------------------------------------------------------------------------------------
# Keys, violations, orphans

COMPOSITE = build_graph(
    _spec(
        [
            {"name": "airports", "source": {"uri": "file://a.csv"}, "primaryKey": "faa"},
            {
                "name": "weather",
                "source": {"uri": "file://w.csv"},
                "primaryKey": ["origin", "time_hour"],
            },
            "flights",
        ],
        [
            _rel("airports", "weather", pk="faa", fk="origin"),
            _rel("airports", "flights", pk="faa", fk="origin"),
            _rel(
                "weather",
                "flights",
                pk=["origin", "time_hour"],
                fk=["origin", "time_hour"],
                onOrphans="null",
            ),
            _rel("airports", "flights", pk="faa", fk="dest", onOrphans="drop"),
        ],
    )
)


def _flights_frames() -> dict[str, pd.DataFrame]:
    airports = pd.DataFrame({"faa": ["JFK", "LGA", "ATL"]})
    weather = pd.DataFrame(
        {
            "origin": ["JFK", "JFK", "LGA"],
            "time_hour": ["2013-01-01T06:00:00Z", "2013-01-01T07:00:00Z", "2013-01-01T06:00:00Z"],
        }
    )
    flights = pd.DataFrame(
        {
            "origin": ["JFK", "JFK", "LGA", "LGA", "JFK"],
            "time_hour": [
                "2013-01-01 06:00:00",
                "2013-01-01T07:00:00Z",
                "2013-01-01T09:00:00Z",
                "2013-01-01T06:00:00Z",
                None,
            ],
            "dest": ["ATL", "SJU", "ATL", "LGA", "ATL"],
        }
    )
    return {"airports": airports, "weather": weather, "flights": flights}


def test_key_strings_match_numbers_and_datetimes_across_spellings() -> None:
    # Setup
    left = pd.DataFrame({"k": [1.0, 2.0, None], "t": ["2013-01-01T06:00:00Z"] * 3})
    right = pd.DataFrame({"k": [1, 2, 3], "t": pd.to_datetime(["2013-01-01 06:00:00"] * 3)})

    # Run
    a, b = key_strings(left, ("k", "t")), key_strings(right, ("k", "t"))

    # Assert
    assert a[0] == b[0] and a[1] == b[1]
    assert pd.isna(a[2])


def test_violations_count_per_relationship_with_composite_keys() -> None:
    # Setup
    frames = _flights_frames()

    # Run
    counted = {v.relation.name: v for v in foreign_key_violations(frames, COMPOSITE)}

    # Assert: LGA 09:00 has no weather hour; SJU is no airport; the null hour is no reference.
    assert counted["flights.(origin,time_hour)->weather.(origin,time_hour)"].violations == 1
    assert counted["flights.(origin,time_hour)->weather.(origin,time_hour)"].references == 4
    assert counted["flights.dest->airports.faa"].violations == 1
    assert counted["flights.origin->airports.faa"].violations == 0


@pytest.mark.parametrize(
    ("on_orphans", "rows", "dest_nulls"),
    [("drop", 4, 0), ("null", 5, 1)],
    ids=["drop", "null"],
)
def test_orphans_are_dropped_or_nulled(on_orphans: str, rows: int, dest_nulls: int) -> None:
    # Setup: the dest relationship uses the option under test.
    spec = COMPOSITE.relations
    graph = build_graph(
        _spec(
            [
                {"name": "airports", "source": {"uri": "file://a.csv"}, "primaryKey": "faa"},
                {
                    "name": "weather",
                    "source": {"uri": "file://w.csv"},
                    "primaryKey": ["origin", "time_hour"],
                },
                "flights",
            ],
            [
                _rel(
                    r.parent,
                    r.child,
                    pk=list(r.parent_key),
                    fk=list(r.child_key),
                    onOrphans=on_orphans if r.child_key == ("dest",) else r.on_orphans,
                )
                for r in spec
            ],
        )
    )

    # Run
    cleaned, actions = resolve_orphans(_flights_frames(), graph)

    # Assert
    flights = cleaned["flights"]
    assert len(flights) == rows
    assert flights["dest"].isna().sum() == dest_nulls
    # Composite (origin, time_hour): LGA 09:00 loses only the column no other key shares.
    assert flights["time_hour"].isna().sum() == 2
    assert flights["origin"].notna().all()
    assert all(v.violations == 0 for v in foreign_key_violations(cleaned, graph))
    assert {a.relation.child_key for a in actions} == {("dest",), ("origin", "time_hour")}


def test_orphans_error_names_the_relationship_and_count() -> None:
    # Setup
    graph = build_graph(
        _spec(
            [{"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"}, "b"],
            [_rel("a", "b")],
        )
    )
    frames = {"a": pd.DataFrame({"id": [1, 2]}), "b": pd.DataFrame({"a_id": [1, 7, 7, 8, None]})}

    # Run
    with pytest.raises(UserInputError) as caught:
        resolve_orphans(frames, graph)

    # Assert
    assert caught.value.field == "spec.relationships[0].onOrphans"
    assert "3 row(s) of 'b' reference 2 a key(s)" in caught.value.problem
    assert "b.a_id->a.id" in caught.value.problem


def test_primary_key_duplicates_counted() -> None:
    frames = {
        "airports": pd.DataFrame({"faa": ["A", "A", None]}),
        "weather": pd.DataFrame({"origin": ["A"], "time_hour": [1]}),
        "flights": pd.DataFrame(),
    }
    assert primary_key_duplicates(frames, COMPOSITE) == {"airports": 2, "weather": 0}


def test_make_unique_moves_colliding_hours_to_free_slots() -> None:
    # Setup: three rows of JFK drew the same hour.
    real = pd.DataFrame({"time_hour": ["2013-01-01T05:00:00Z", "2013-01-01T06:00:00Z"]})
    frame = pd.DataFrame(
        {"origin": ["JFK", "JFK", "JFK", "LGA"], "time_hour": ["2013-01-01T06:00:00Z"] * 4}
    )

    # Run
    out, moved = make_unique(frame, ["origin", "time_hour"], ["origin"], real, {"time_hour"})

    # Assert
    assert moved == 2
    assert not out.duplicated(["origin", "time_hour"]).any()
    assert sorted(out.loc[out.origin == "JFK", "time_hour"]) == [
        "2013-01-01T06:00:00Z",
        "2013-01-01T07:00:00Z",
        "2013-01-01T08:00:00Z",
    ]


# ---------------------------------------------------------------------------------------
# Child counts


def test_children_per_parent_counts_childless_parents() -> None:
    parent = pd.DataFrame({"id": [1, 2, 3]})
    child = pd.DataFrame({"p": [1, 1, 3, None]})
    assert children_per_parent(parent, ("id",), child, ("p",)).tolist() == [2, 0, 1]


def test_cardinality_model_conditions_on_the_column_that_explains_counts() -> None:
    # Setup: parents of kind "big" have 10 children, "small" ones 1; "noise" explains nothing.
    rng = np.random.default_rng(0)
    kinds = np.array(["big", "small"] * 50)
    parent = pd.DataFrame({"id": range(100), "kind": kinds, "noise": rng.normal(size=100)})
    child = pd.DataFrame({"p": np.repeat(parent["id"], np.where(kinds == "big", 10, 1))})

    # Run
    model = CardinalityModel.fit("r", parent, ("id",), child, ("p",), ["noise", "kind"])
    synthetic_parent = pd.DataFrame({"kind": ["big"] * 30 + ["small"] * 70})
    counts = model.sample(synthetic_parent, np.random.default_rng(1))

    # Assert
    assert model.grouping is not None and model.grouping.column == "kind"
    assert counts[:30].tolist() == [10] * 30
    assert counts[30:].tolist() == [1] * 70


def test_unconditioned_sampling_reproduces_the_distribution_at_scale_one() -> None:
    # Setup: skewed counts (3 of 100 parents hold every child).
    counts = np.array([50, 40, 30] + [0] * 97)
    parent = pd.DataFrame({"id": range(100)})
    child = pd.DataFrame({"p": np.repeat(np.arange(100), counts)})
    model = CardinalityModel.fit("r", parent, ("id",), child, ("p",), [])

    # Run
    drawn = model.sample(pd.DataFrame(index=range(100)), np.random.default_rng(3))

    # Assert
    assert sorted(drawn.tolist()) == sorted(counts.tolist())
    assert shape_similarity(counts, drawn) == 1.0


# ---------------------------------------------------------------------------------------
# Strategy choice


def test_primary_relation_prefers_the_composite_key() -> None:
    rel = primary_relation(COMPOSITE, "flights")
    assert rel is not None and rel.child_key == ("origin", "time_hour")


@pytest.mark.parametrize(
    ("generator", "graph", "strategy", "table_generator"),
    [
        ("auto", "small", "independent", "gaussian_copula"),
        ("auto", "deep", "independent", "gaussian_copula"),
        ("hma", "small", "hma", None),
        ("gaussian_copula", "small", "independent", "gaussian_copula"),
        ("tvae", "deep", "independent", "tvae"),
        ("tabularargn", "small", "context", "tabularargn"),
    ],
    ids=["auto-small", "auto-deep", "hma-explicit", "copula", "tvae-deep", "tabularargn"],
)
def test_choose_strategy(
    generator: str, graph: str, strategy: str, table_generator: str | None
) -> None:
    # Setup
    small = build_graph(
        _spec(
            [{"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"}, "b"],
            [_rel("a", "b")],
        )
    )
    chosen_graph = small if graph == "small" else build_graph(CHAIN)

    # Run
    choice = choose_strategy(chosen_graph, GeneratorSpec(type=generator))

    # Assert: auto is conditional GaussianCopula children whatever the size (HMA and the
    # context strategy on request only)
    assert choice.strategy == strategy
    chosen = choice.table_generator.value if choice.table_generator else None
    assert chosen == table_generator
    assert choice.reason


def test_hma_on_a_deep_composite_schema_is_refused_with_reasons() -> None:
    # Setup / Run
    with pytest.raises(UserInputError) as caught:
        choose_strategy(COMPOSITE, GeneratorSpec(type="hma"))

    # Assert
    assert caught.value.field == "spec.generator.type"
    assert "composite keys" in caught.value.problem
    assert "depth 3" in caught.value.problem
    assert hma_obstacles(build_graph(CHAIN))


def test_dp_generators_are_refused_for_multi_table() -> None:
    with pytest.raises(UserInputError, match="multi-table DP"):
        choose_strategy(build_graph(CHAIN), GeneratorSpec(type="mst"))


@pytest.mark.parametrize(
    ("relationships", "field", "words"),
    [
        ([{**_rel("a", "b"), "orderBy": "a_id"}], "spec.relationships[0].orderBy", "foreign key"),
        (
            [{**_rel("a", "b"), "orderBy": "t"}, {**_rel("c", "b"), "orderBy": "t"}],
            "spec.relationships[1].orderBy",
            "already an ordered history",
        ),
    ],
    ids=["order-by-the-key", "two-histories"],
)
def test_bad_order_by_is_refused(
    relationships: list[dict[str, Any]], field: str, words: str
) -> None:
    # Setup
    tables: list[Any] = [
        {"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"},
        "b",
        {"name": "c", "source": {"uri": "file://c.csv"}, "primaryKey": "id"},
    ]

    # Run
    with pytest.raises(UserInputError) as info:
        build_graph(_spec(tables, relationships))

    # Assert
    assert info.value.field == field and words in info.value.problem


def test_histories_are_sorted_and_violations_counted() -> None:
    # Setup: entity 1 out of order, entity 2 in order
    from tabular_runner.multitable.sequences import order_kind, order_violations, sort_histories

    frame = pd.DataFrame({"e": [1, 2, 1, 2, 1], "t": [5, 1, 3, 2, 4], "v": list("abcde")})

    # Run
    kind = order_kind(frame, "t", "events", "spec.sequence.orderBy")
    before = order_violations(frame, ("e",), "t", kind)
    ordered, reordered = sort_histories(frame, ("e",), "t", kind)

    # Assert
    assert (kind, before, reordered) == ("numeric", 1, 1)
    assert order_violations(ordered, ("e",), "t", kind) == 0
    assert ordered["v"].tolist() == ["c", "e", "a", "b", "d"]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([1, "two", 3], "mixes types: 2 value(s) are numbers, 1 are not (e.g. 'two')"),
        (["2024-01-01", "soon"], "neither numbers nor dates (e.g. 'soon')"),
        ([1.0, None], "missing in 1 row(s)"),
    ],
    ids=["numbers-and-text", "dates-and-text", "missing"],
)
def test_bad_order_column_is_one_clear_problem(values: list[Any], words: str) -> None:
    from tabular_runner.multitable.sequences import order_kind

    with pytest.raises(UserInputError) as info:
        order_kind(pd.DataFrame({"t": values}), "t", "events", "spec.sequence.orderBy")
    assert info.value.field == "spec.sequence.orderBy" and words in info.value.problem


def test_context_relation_prefers_the_parent_with_most_rows() -> None:
    # Setup: b has two parents; a is created first (the generic rule picks c, created later)
    graph = build_graph(
        _spec(
            [
                {"name": "a", "source": {"uri": "file://a.csv"}, "primaryKey": "id"},
                {"name": "c", "source": {"uri": "file://c.csv"}, "primaryKey": "id"},
                "b",
            ],
            [_rel("a", "b"), _rel("c", "b")],
        )
    )

    # Run
    generic = primary_relation(graph, "b")
    context = context_relation(graph, "b", {"a": 86, "c": 16, "b": 800})

    # Assert
    assert generic is not None and generic.parent == "c"
    assert context is not None and context.parent == "a"
