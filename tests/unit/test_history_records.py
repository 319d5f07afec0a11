"""``history_records``: one privacy record per whole history (the record that can leak)."""

from __future__ import annotations

import pandas as pd

from tabular_runner.multitable.graph import build_graph
from tabular_runner.multitable.run import history_records
from tabular_runner.spec import MultiTableSchemaSpec


def test_each_history_becomes_one_record_beside_its_parent() -> None:
    # Setup: two patients with visits given out of order, one patient without any
    spec = MultiTableSchemaSpec.model_validate(
        {
            "tables": [
                {"name": "patients", "source": {"uri": "file://p.csv"}, "primaryKey": "id"},
                {"name": "visits", "source": {"uri": "file://v.csv"}},
            ],
            "relationships": [
                {
                    "parent": "patients",
                    "parentKey": "id",
                    "child": "visits",
                    "childKey": "patient",
                    "orderBy": "day",
                }
            ],
        }
    )
    graph = build_graph(spec)
    (rel,) = graph.relations
    patients = pd.DataFrame({"id": [1, 2, 3], "sex": ["F", "M", "F"]})
    visits = pd.DataFrame(
        {
            "patient": [1, 1, 2, 1],
            "day": [5, 1, 2, 3],
            "weight": [52.0, 50.0, 80.0, 51.0],
            "ward": ["b", "a", "c", "b"],
        }
    )
    sdtypes_child = {
        "patient": "id",
        "day": "numerical",
        "weight": "numerical",
        "ward": "categorical",
    }

    # Act
    records = history_records(
        visits, patients, rel, sdtypes_child, {"id": "id", "sex": "categorical"}, graph
    )

    # Assert: in order of the order column, one row per patient with a history
    assert len(records) == 2
    first = records.iloc[0]
    assert first["length"] == 3
    assert (first["day.first"], first["day.last"]) == (1, 5)
    assert (first["weight.first"], first["weight.last"]) == (50.0, 52.0)
    assert first["weight.mean"] == 51.0
    assert (first["ward.first"], first["ward.mode"]) == ("a", "b")
    assert first["patients.sex"] == "F"
    assert "patient" not in records.columns and "patients.id" not in records.columns
