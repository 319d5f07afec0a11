"""``tabular-runner run`` and ``stage`` end to end on real data (UCI Adult, sampled).

Real: SDV, SDMetrics, Anonymeter, the local filesystem and a real S3 server (SeaweedFS, from
the platform plugin's ``s3_server`` fixture). Nothing is mocked.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tabular_runner.cli import main

pytestmark = pytest.mark.integration

JOB = """\
apiVersion: tabular.aumos.io/v1alpha1
kind: SynthesisJob
metadata: {{name: adult-small}}
spec:
  source: {{uri: "{source}", format: csv}}
  generator: {{type: gaussian_copula}}
  rows: {rows}
  seed: 11
  constraints:
    - {{type: range, column: age, min: 18, max: 80}}
    - {{type: inequality, low: education-num, high: hours-per-week}}
  qualityGate: {gate}
  validation: {{privacySampleRows: 400, attacks: 40, qualitySampleRows: 2000}}
  output: {{format: {fmt}}}
"""


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tabular_runner import datasets

    path = tmp_path_factory.mktemp("adult") / "adult.csv"
    datasets.load("adult").sample(2000, random_state=3).to_csv(path, index=False)
    return path


def _manifest(
    tmp_path: Path,
    source: str,
    *,
    rows: int = 600,
    fmt: str = "parquet",
    gate: str = "{minFidelity: 0.5}",
) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(source=source, rows=rows, fmt=fmt, gate=gate))
    return path


def test_run_writes_output_report_and_model(tmp_path: Path, adult_csv: Path) -> None:
    # Setup
    manifest = _manifest(tmp_path, "file://" + str(adult_csv))
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    assert code == 0
    for name in ("output.parquet", "report.json", "report.html", "model.pkl", "analysis.json"):
        assert (out / name).is_file(), name
    synthetic = pd.read_parquet(out / "output.parquet")
    assert len(synthetic) == 600
    assert list(synthetic.columns) == list(pd.read_csv(adult_csv).columns)
    assert synthetic["age"].between(18, 80).all()
    assert (synthetic["education-num"] <= synthetic["hours-per-week"]).all()
    report = json.loads((out / "report.json").read_text())
    assert report["generator"] == "gaussian_copula"
    assert report["rowsGenerated"] == 600
    assert 0.5 <= report["fidelityScore"] <= 1
    assert 0 <= report["diagnosticScore"] <= 1
    assert report["gate"]["passed"] is True
    singling = report["privacy"]["singlingOut"]
    assert singling["computed"] is False or len(singling["ci"]) == 2
    assert 0 <= report["privacy"]["dcrShare"] <= 1
    assert {"train", "generate", "validate"} <= set(report["timings"])
    assert {c["name"] for c in report["analysis"]["columns"]} >= {"age", "income"}
    assert len(report["constraints"]["constraints"]) == 2
    assert "<img" in (out / "report.html").read_text()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_failed_gate_writes_report_withholds_data_and_exits_3(
    tmp_path: Path, adult_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup: no generator reaches fidelity 0.999 on this data
    manifest = _manifest(tmp_path, "file://" + str(adult_csv), gate="{minFidelity: 0.999}")
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert len(err.splitlines()) == 1 and "minFidelity 0.999" in err, err
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["passed"] is False
    assert (out / "report.html").is_file()
    assert not (out / "output.parquet").exists()


def test_same_seed_same_output(tmp_path: Path, adult_csv: Path) -> None:
    # Setup
    manifest = _manifest(tmp_path, "file://" + str(adult_csv), rows=300, fmt="csv")

    # Run
    assert main(["run", str(manifest), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["run", str(manifest), "--out", str(tmp_path / "b"), "--quiet"]) == 0

    # Assert
    first = pd.read_csv(tmp_path / "a" / "output.csv")
    second = pd.read_csv(tmp_path / "b" / "output.csv")
    pd.testing.assert_frame_equal(first, second)


def test_stages_through_s3_write_termination_messages(
    tmp_path: Path, adult_csv: Path, s3_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup: source and artifacts in a real S3 server, as on a cluster
    from minio import Minio

    client = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        region=s3_server.region,
    )
    bucket = "tenant-stages"
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    client.fput_object(bucket, "data/adult.csv", str(adult_csv))
    monkeypatch.setenv("AUMOS_S3_ENDPOINT", s3_server.url)
    monkeypatch.setenv("AUMOS_S3_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("AUMOS_S3_SECRET_KEY", s3_server.secret_key)
    manifest = _manifest(tmp_path, f"s3://{bucket}/data/adult.csv", rows=300)
    job_json = json.dumps(__import__("yaml").safe_load(manifest.read_text()))
    store = f"s3://{bucket}/tab-jobs/{uuid.uuid4()}"
    results = {}

    # Run
    for stage in ("train", "generate", "validate"):
        log = tmp_path / f"{stage}.log"
        code = main(
            [
                "stage",
                stage,
                "--job-json",
                job_json,
                "--store",
                store,
                "--termination-log",
                str(log),
            ]
        )
        assert code == 0, stage
        results[stage] = json.loads(log.read_text())

    # Assert
    assert results["train"]["generator"] == "gaussian_copula"
    assert results["generate"]["rowsGenerated"] == 300
    assert results["validate"]["gatePassed"] is True
    prefix = store.removeprefix(f"s3://{bucket}/")
    keys = {
        o.object_name.removeprefix(prefix + "/")
        for o in client.list_objects(bucket, prefix=prefix + "/", recursive=True)
    }
    assert {"model.pkl", "output.parquet", "report.json", "report.html"} <= keys
    assert all(len(log.read_text()) <= 4096 for log in tmp_path.glob("*.log"))


def test_stage_out_of_order_fails_clearly(
    tmp_path: Path, adult_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup: generate before train has stored a model
    manifest = _manifest(tmp_path, "file://" + str(adult_csv))
    log = tmp_path / "term.log"

    # Run
    code = main(
        [
            "stage",
            "generate",
            "--job",
            str(manifest),
            "--store",
            f"file://{tmp_path / 'store'}",
            "--termination-log",
            str(log),
        ]
    )

    # Assert
    assert code == 1
    assert "run the earlier stage first" in capsys.readouterr().err
    assert json.loads(log.read_text())["ok"] is False
