"""The argn engine for real: its cached environment, TabularARGN jobs through ``tabular-runner
run`` (train and generate in the argn environment as subprocesses, validate here in core), DP
within ε, user errors crossing the engine boundary, and a failing engine install.

What is real: the argn virtual environment (built once by ``scripts/venv.sh argn``, cached
across runs), mostlyai-engine training on UCI Adult rows (a small sample, seconds of training),
SDMetrics in core. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tabular_runner import datasets

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = datasets.load("adult").sample(n=1200, random_state=3).reset_index(drop=True)
    path = tmp_path_factory.mktemp("adult") / "adult.csv"
    frame.to_csv(path, index=False)
    return path


def _manifest(folder: Path, data: Path, generator: dict[str, object], **spec: object) -> Path:
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "argn-test"},
        "spec": {
            "source": {"uri": f"file://{data}", "format": "csv"},
            "generator": generator,
            "rows": 400,
            "seed": 5,
            "validation": {"privacy": False},
            **spec,
        },
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tabular_runner", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={**os.environ, **(env or {})},
    )


def test_tabularargn_job_end_to_end(argn_env: Path, adult_csv: Path, tmp_path: Path) -> None:
    # Setup
    manifest = _manifest(
        tmp_path,
        adult_csv,
        {"type": "tabularargn", "params": {"maxEpochs": 3, "maxTrainingTimeSeconds": 45}},
    )

    # Run
    proc = _run(["run", str(manifest), "--out", str(tmp_path / "out"), "-q"])

    # Assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "creating the 'argn' environment" not in proc.stderr  # reused, not rebuilt
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["generator"] == "tabularargn"
    assert report["device"] == "cpu"
    train = json.loads((tmp_path / "out" / "stages" / "train.json").read_text())
    assert train["engine"] == "argn"
    synthetic = pd.read_parquet(tmp_path / "out" / "output.parquet")
    assert len(synthetic) == 400
    assert set(train["modelledColumns"]) <= set(synthetic.columns)
    # Three epochs on 1,000 rows already beat a blind guess by far (SDMetrics quality).
    assert 0.6 < report["fidelityScore"] <= 1.0
    assert "epsilonSpent" not in report


def test_dp_tabularargn_spends_within_epsilon(
    argn_env: Path, adult_csv: Path, tmp_path: Path
) -> None:
    # Setup
    epsilon = 8.0
    manifest = _manifest(
        tmp_path,
        adult_csv,
        {"type": "tabularargn", "params": {"maxEpochs": 1, "maxTrainingTimeSeconds": 20}},
        privacy={"epsilon": epsilon, "delta": 1e-5},
    )

    # Run
    proc = _run(["run", str(manifest), "--out", str(tmp_path / "out"), "-q"])

    # Assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    accounting = report["privacyAccounting"]
    assert 0 < report["epsilonSpent"] <= epsilon
    assert accounting["epsilonBudget"] == epsilon and accounting["delta"] == 1e-5
    # Value protection of the statistics takes its share (default 10 %) inside the budget.
    assert accounting["epsilonPreprocessing"] == pytest.approx(0.1 * epsilon, rel=0.05)
    assert accounting["epsilonTraining"] > 0
    assert report["epsilonSpent"] == pytest.approx(
        accounting["epsilonPreprocessing"] + accounting["epsilonTraining"]
    )


def test_user_error_in_the_engine_is_the_same_one_line(
    argn_env: Path, adult_csv: Path, tmp_path: Path
) -> None:
    # Setup: a parameter value only the train stage (in the argn engine) checks
    manifest = _manifest(
        tmp_path, adult_csv, {"type": "tabularargn", "params": {"modelSize": "xl"}}
    )

    # Run
    proc = _run(["run", str(manifest), "--out", str(tmp_path / "out"), "-q"])

    # Assert
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: spec.generator.params.modelSize: must be one of small, medium, large, "
        "got 'xl' — e.g. modelSize: medium"
    ]
    assert not (tmp_path / "out").exists()


def test_second_install_reuses_the_environment(argn_env: Path) -> None:
    # Run
    proc = _run(["engines", "install", "argn"])

    # Assert
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(argn_env)
    assert proc.stderr == ""


@pytest.mark.parametrize("how", ["install", "run"], ids=["engines-install", "run-job"])
def test_failing_engine_install_is_one_clear_line(
    how: str, adult_csv: Path, tmp_path: Path
) -> None:
    # Setup: a lock naming a package that cannot be found, and no index to look in
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "argn.txt").write_text("aumos-no-such-package==0.0.1\n")
    env = {
        "AUMOS_CACHE_DIR": str(tmp_path / "cache"),
        "AUMOS_CONSTRAINTS_DIR": str(locks),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(locks),
    }
    args = ["engines", "install", "argn"]
    if how == "run":
        manifest = _manifest(tmp_path, adult_csv, {"type": "tabularargn"})
        args = ["run", str(manifest), "--out", str(tmp_path / "out"), "-q"]

    # Run
    proc = _run(args, env)

    # Assert
    assert proc.returncode == 4
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and proc.stderr.strip().endswith(error[0])
    assert "pip install --no-deps -r" in error[0] and "failed (exit 1)" in error[0]
    assert "creating the 'argn' environment" in proc.stderr  # the progress message
    log = Path(error[0].rsplit("see ", 1)[1])
    assert log.is_file() and "aumos-no-such-package" in log.read_text()
