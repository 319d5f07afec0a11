"""A DP job through ``tabular-runner run``: the report accounts for the whole job's ε.

Real SmartNoise MST on real data (UCI Adult, a sample of a few columns); nothing mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tabular_runner.cli import main

pytestmark = pytest.mark.integration


def test_mst_job_reports_epsilon_within_the_budget(tmp_path: Path) -> None:
    # Setup
    from tabular_runner import datasets

    columns = ["age", "workclass", "education", "sex", "hours-per-week", "income"]
    source = tmp_path / "adult.csv"
    datasets.load("adult")[columns].sample(3000, random_state=5).to_csv(source, index=False)
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: tabular.aumos.io/v1alpha1\nkind: SynthesisJob\n"
        "metadata: {name: adult-mst}\nspec:\n"
        f"  source: {{uri: 'file://{source}'}}\n"
        "  generator: {type: mst, params: {maxBins: 8}}\n"
        "  privacy: {epsilon: 3.0, delta: 1.0e-6}\n"
        "  rows: 200\n"
        "  validation: {attacks: 20, privacySampleRows: 100}\n"
        "  output: {format: csv}\n"
    )
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    accounting = report["privacyAccounting"]
    assert report["generator"] == "mst"
    assert 0 < report["epsilonSpent"] <= 3.0
    assert accounting["epsilonBudget"] == 3.0
    assert accounting["epsilonSpent"] == pytest.approx(
        accounting["epsilonPreprocessing"] + accounting["epsilonTraining"]
    )
    assert report["rowsGenerated"] == 200
