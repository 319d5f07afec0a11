"""``spec.fromModel``: re-sample an earlier run's model — no training, no new ε.

Real: Palmer penguins (344 rows, from the palmerpenguins package), SDV GaussianCopula,
SDMetrics, Anonymeter, the local file system; ``tabular-runner`` is called as its ``main``.
One training run per module; every test re-samples its output folder. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tabular_runner.cli import main

pytestmark = pytest.mark.integration

VALIDATION = {"privacySampleRows": 100, "attacks": 20, "qualitySampleRows": 500}


def _job(spec: dict[str, object], name: str = "penguins") -> dict[str, object]:
    return {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {"validation": VALIDATION, "output": {"format": "csv"}, **spec},
    }


def _write(tmp_path: Path, document: dict[str, object], name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The --out folder of one real training run on penguins (the source lives next to it)."""
    from tabular_runner import datasets

    folder = tmp_path_factory.mktemp("penguins")
    datasets.load("penguins").to_csv(folder / "penguins.csv", index=False)
    manifest = _write(
        folder,
        _job(
            {
                "source": {"uri": "file://penguins.csv", "format": "csv"},
                "generator": {"type": "gaussian_copula"},
                "rows": 200,
                "seed": 5,
            }
        ),
    )
    assert main(["run", str(manifest), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder / "out"


def test_train_records_the_source(trained: Path) -> None:
    # Assert: an absolute uri, so a job elsewhere can read it
    record = json.loads((trained / "stages" / "train.json").read_text())["source"]
    assert record == {"uri": (trained.parent / "penguins.csv").as_uri(), "format": "csv"}


def test_run_from_model_resamples_without_training(trained: Path, tmp_path: Path) -> None:
    # Setup: no source, a different row count and seed; the model is the earlier run's
    model_before = _sha(trained / "model.pkl")
    manifest = _write(
        tmp_path,
        _job(
            {
                "fromModel": {"uri": trained.as_uri()},
                "generator": {"type": "auto"},
                "rows": 150,
                "seed": 9,
                "constraints": [{"type": "range", "column": "body_mass_g", "min": 2700}],
            },
            name="penguins-again",
        ),
    )
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert: outputs, from the same model bytes, no ε spent
    assert code == 0
    assert _sha(out / "model.pkl") == model_before == _sha(trained / "model.pkl")
    original = json.loads((trained / "stages" / "train.json").read_text())
    copied = json.loads((out / "stages" / "train.json").read_text())
    assert copied["stageTimeS"] == original["stageTimeS"]  # the earlier run's record, kept
    assert copied["fromModel"] == trained.as_uri()
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == 150
    assert synthetic["body_mass_g"].min() >= 2700
    report = json.loads((out / "report.json").read_text())
    assert report["fromModel"] == trained.as_uri()
    assert report["epsilonSpent"] == 0.0
    assert report["generator"] == "gaussian_copula"
    assert report["timings"]["training"] == 0.0
    assert report["rowsSource"] == 344
    assert 0 < report["fidelityScore"] <= 1
    assert (out / "report.html").is_file()
    generate = json.loads((out / "stages" / "generate.json").read_text())
    assert generate["fromModel"] == trained.as_uri()
    assert generate["epsilonSpent"] == 0.0


def test_stages_from_model_generate_then_validate(trained: Path, tmp_path: Path) -> None:
    # Setup: the stage protocol, as the operator runs it (no train stage at all)
    job_json = json.dumps(
        _job({"fromModel": {"uri": trained.as_uri()}, "generator": {"type": "gaussian_copula"}})
    )
    store = tmp_path / "store"
    results = {}

    # Run: generate twice (a retried pod), then validate
    for stage in ("generate", "generate", "validate"):
        log = tmp_path / f"{stage}.log"
        argv = ["stage", stage, "--job-json", job_json, "--store", f"file://{store}"]
        assert main([*argv, "--termination-log", str(log)]) == 0, stage
        results[stage] = json.loads(log.read_text())

    # Assert
    assert _sha(store / "model.pkl") == _sha(trained / "model.pkl")
    assert results["generate"]["rowsGenerated"] == 344  # this job sets no rows: the source's
    assert results["generate"]["fromModel"] == trained.as_uri()
    assert results["validate"]["gatePassed"] is True
    assert json.loads((store / "report.json").read_text())["epsilonSpent"] == 0.0
    assert json.loads((store / "stages" / "progress.json").read_text())["stage"] == "validate"


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"fromModel": {"uri": "file:///nowhere/at/all"}},
            "spec.fromModel.uri",
            "no such folder",
        ),
        (
            {"fromModel": {"jobName": "penguins"}},
            "spec.fromModel.jobName",
            "use fromModel.uri",
        ),
        (
            {"constraints": [{"type": "range", "column": "wingspan", "min": 0}]},
            "spec.constraints[0].column",
            "unknown column 'wingspan'",
        ),
        (
            {"generator": {"type": "ctgan"}},
            "spec.generator.type",
            "trained with gaussian_copula",
        ),
        (
            {"source": {"uri": "file://other.csv", "format": "csv"}},
            "spec.source.uri",
            "lacks the model's column(s) sex",
        ),
    ],
    ids=["no-model", "job-name", "constraint-column", "other-generator", "other-columns"],
)
def test_a_model_that_does_not_fit_is_refused(
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: dict[str, object],
    field: str,
    words: str,
) -> None:
    # Setup: a different source lacks a column the model has
    pd.read_csv(trained.parent / "penguins.csv").drop(columns=["sex"]).to_csv(
        tmp_path / "other.csv", index=False
    )
    full = {"fromModel": {"uri": trained.as_uri()}, "generator": {"type": "auto"}, **spec}
    manifest = _write(tmp_path, _job(full))
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"error: {field}:"), err
    assert words in err
    assert not out.exists()


def test_model_artifacts_missing_at_the_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup: a folder that exists but holds no model
    (tmp_path / "empty").mkdir()
    manifest = _write(
        tmp_path,
        _job({"fromModel": {"uri": (tmp_path / "empty").as_uri()}, "generator": {"type": "auto"}}),
    )

    # Run
    code = main(["run", str(manifest), "--out", str(tmp_path / "out"), "--quiet"])

    # Assert
    err = capsys.readouterr().err
    assert code == 2
    assert "spec.fromModel.uri: no trained model" in err
    assert "model.pkl, analysis.json, stages/train.json missing" in err


def test_stage_train_of_a_from_model_job_is_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    job_json = json.dumps(
        _job({"fromModel": {"uri": trained.as_uri()}, "generator": {"type": "auto"}})
    )
    log = tmp_path / "train.log"

    # Run
    code = main(
        [
            "stage",
            "train",
            "--job-json",
            job_json,
            "--store",
            f"file://{tmp_path / 's'}",
            "--termination-log",
            str(log),
        ]
    )

    # Assert
    assert code == 2
    assert "spec.fromModel: a fromModel job has no train stage" in capsys.readouterr().err
    assert json.loads(log.read_text())["exitCode"] == 2
