"""``spec.generation`` with TabularARGN: a DP model trained once, then seeded, rebalanced,
imputing and tempered ``fromModel`` jobs that spend no ε.

Real: the argn environment (``scripts/venv.sh argn``), mostlyai-engine (DP-SGD, one epoch on
1,200 UCI Adult rows), ``tabular-runner run`` as a subprocess (generate in argn, validate in
core). Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tabular_runner import datasets

pytestmark = pytest.mark.integration

EPSILON = 8.0


def _write(folder: Path, spec: dict[str, object], name: str) -> Path:
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": name},
        "spec": {"seed": 5, "validation": {"privacy": False}, "output": {"format": "csv"}, **spec},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _run(manifest: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabular_runner", "run", str(manifest), "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def dp_model(argn_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("argn-controls")
    frame = datasets.load("adult").sample(n=1200, random_state=3).reset_index(drop=True)
    frame.to_csv(folder / "adult.csv", index=False)
    params = {"maxEpochs": 1, "maxTrainingTimeSeconds": 30}
    manifest = _write(
        folder,
        {
            "source": {"uri": "file://adult.csv"},
            "generator": {"type": "tabularargn", "params": params},
            "privacy": {"epsilon": EPSILON},
            "rows": 200,
        },
        "train",
    )
    proc = _run(manifest, folder / "model")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "model"


def _resample(model: Path, folder: Path, generation: dict[str, object], **spec: object) -> Path:
    manifest = _write(
        folder,
        {
            "fromModel": {"uri": model.as_uri()},
            "generator": {"type": "auto"},
            "generation": generation,
            **spec,
        },
        "resample",
    )
    proc = _run(manifest, folder / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((folder / "out" / "report.json").read_text())
    assert report["epsilonSpent"] == 0.0
    assert 0 < report["originalEpsilonSpent"] <= EPSILON
    assert report["timings"]["train"] == 0.0
    return folder / "out"


def test_seed_rebalance_impute_and_temperature_on_a_dp_model(
    dp_model: Path, tmp_path: Path
) -> None:
    real = pd.read_csv(dp_model.parent / "adult.csv")

    # Seed: 150 rows of (sex, race) kept as given
    seed = real[["sex", "race"]].head(150)
    (tmp_path / "seeded").mkdir()
    seed.to_csv(tmp_path / "seeded" / "seed.csv", index=False)
    out = _resample(dp_model, tmp_path / "seeded", {"seed": {"uri": "file://seed.csv"}})
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == 150
    assert (synthetic[["sex", "race"]].to_numpy() == seed.to_numpy()).all(axis=1).mean() >= 0.99

    # Rebalance: income 50/50, exact counts
    (tmp_path / "rebalanced").mkdir()
    out = _resample(
        dp_model,
        tmp_path / "rebalanced",
        {
            "rebalance": {"column": "income", "shares": {">50K": 0.5, "<=50K": 0.5}},
            "temperature": 0.9,
        },
        rows=300,
    )
    synthetic = pd.read_csv(out / "output.csv")
    assert synthetic["income"].value_counts().to_dict() == {">50K": 150, "<=50K": 150}

    # Impute: 30 % of occupation removed from 200 rows; present cells kept
    table = real.tail(200).reset_index(drop=True)
    table.loc[np.random.default_rng(1).random(200) < 0.3, "occupation"] = np.nan
    holes = table["occupation"].isna()
    (tmp_path / "imputed").mkdir()
    table.to_csv(tmp_path / "imputed" / "holes.csv", index=False)
    out = _resample(dp_model, tmp_path / "imputed", {"impute": {"uri": "file://holes.csv"}})
    synthetic = pd.read_csv(out / "output.csv")
    assert len(synthetic) == 200
    assert synthetic.loc[holes, "occupation"].notna().all()
    assert (synthetic.loc[~holes, "occupation"] == table.loc[~holes, "occupation"]).all()
    report = json.loads((out / "report.json").read_text())
    assert report["generation"]["impute"]["presentCellsChanged"] == 0
