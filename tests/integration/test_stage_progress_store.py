"""A real ``tabular-runner stage train`` leaves its progress in the store for the operator.

Real: Palmer penguins, SDV TVAE (two epochs, so the per-epoch callback runs), a LocalStore.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tabular_runner.cli import main

pytestmark = pytest.mark.integration


def test_train_stage_writes_progress_json(tmp_path: Path) -> None:
    # Setup
    from tabular_runner import datasets

    datasets.load("penguins").to_csv(tmp_path / "penguins.csv", index=False)
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "penguins"},
        "spec": {
            "source": {"uri": f"file://{tmp_path / 'penguins.csv'}"},
            "generator": {"type": "tvae", "params": {"epochs": 2}},
        },
    }
    store = tmp_path / "store"
    started = datetime.now(UTC)

    # Run
    code = main(
        [
            "stage",
            "train",
            "--job-json",
            json.dumps(job),
            "--store",
            f"file://{store}",
            "--termination-log",
            str(tmp_path / "train.log"),
        ]
    )

    # Assert: the last state of the stage, stamped in UTC
    assert code == 0
    progress = json.loads((store / "stages" / "progress.json").read_text())
    assert progress["stage"] == "train"
    assert progress["done"] == progress["total"] == 3
    assert progress["message"] == "model stored"
    stamped = datetime.fromisoformat(progress["updatedAt"])
    assert stamped.utcoffset() == timedelta(0)
    assert started - timedelta(seconds=1) <= stamped <= datetime.now(UTC)
