"""Bad input gets one clear line and a non-zero exit — never a traceback, nothing written.

Runs the real ``tabular-runner`` entry point in-process on real data (Palmer penguins).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tabular_runner.cli import main

pytestmark = pytest.mark.integration

JOB = """\
apiVersion: tabular.aumos.io/v1alpha1
kind: SynthesisJob
metadata: {{name: bad-input}}
spec:
  source: {{uri: "file://{source}", format: {fmt}}}
  generator: {{type: {generator}}}
  rows: {rows}
{extra}"""


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("data") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return path


def _write(
    tmp_path: Path,
    source: Path,
    *,
    fmt: str = "csv",
    generator: str = "gaussian_copula",
    rows: int = 50,
    extra: str = "",
) -> Path:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        JOB.format(source=source, fmt=fmt, generator=generator, rows=rows, extra=extra)
    )
    return manifest


def _case_missing_file(tmp: Path, data: Path) -> Path:
    return _write(tmp, tmp / "nope.csv")


def _case_directory(tmp: Path, data: Path) -> Path:
    return _write(tmp, tmp)


def _case_unknown_format(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, fmt="xlsx")


def _case_wrong_format(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, fmt="parquet")


def _case_empty_table(tmp: Path, data: Path) -> Path:
    empty = tmp / "empty.csv"
    empty.write_text("a,b,c\n")
    return _write(tmp, empty)


def _case_all_null_column(tmp: Path, data: Path) -> Path:
    import pandas as pd

    frame = pd.read_csv(data).head(80)
    frame["notes"] = None
    path = tmp / "nulls.csv"
    frame.to_csv(path, index=False)
    return _write(tmp, path)


def _case_unknown_constraint_column(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, extra="  constraints: [{type: range, column: wingspan, min: 0}]\n")


def _case_eps_zero(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, generator="mst", extra="  privacy: {epsilon: 0}\n")


def _case_eps_negative(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, generator="aim", extra="  privacy: {epsilon: -0.5}\n")


def _case_eps_missing(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, generator="dpctgan")


def _case_eps_non_dp(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, generator="ctgan", extra="  privacy: {epsilon: 1.0}\n")


def _case_rows_zero(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, rows=0)


def _case_rows_negative(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, rows=-5)


def _case_unknown_generator(tmp: Path, data: Path) -> Path:
    return _write(tmp, data, generator="diffusion")


def _case_malformed_yaml(tmp: Path, data: Path) -> Path:
    path = tmp / "job.yaml"
    path.write_text("apiVersion: tabular.aumos.io/v1alpha1\nkind: SynthesisJob\nspec: [\n")
    return path


def _case_wrong_kind(tmp: Path, data: Path) -> Path:
    path = _write(tmp, data)
    path.write_text(path.read_text().replace("kind: SynthesisJob", "kind: Deployment"))
    return path


def _case_wrong_api_version(tmp: Path, data: Path) -> Path:
    path = _write(tmp, data)
    path.write_text(path.read_text().replace("tabular.aumos.io/v1alpha1", "apps/v1"))
    return path


def _case_missing_manifest(tmp: Path, data: Path) -> Path:
    return tmp / "missing.yaml"


CASES = [
    ("missing-file", _case_missing_file, "spec.source.uri", "not found"),
    ("source-is-directory", _case_directory, "spec.source.uri", "directory"),
    ("unknown-format", _case_unknown_format, "spec.source.format", "'csv' or 'parquet'"),
    ("csv-read-as-parquet", _case_wrong_format, "spec.source.uri", "parquet"),
    ("empty-table", _case_empty_table, "spec.source", "no rows"),
    ("all-null-column", _case_all_null_column, "spec.source", "'notes'"),
    ("constraint-unknown-column", _case_unknown_constraint_column, "spec.constraints", "wingspan"),
    ("epsilon-zero", _case_eps_zero, "spec.privacy.epsilon", "greater than 0"),
    ("epsilon-negative", _case_eps_negative, "spec.privacy.epsilon", "greater than 0"),
    ("epsilon-missing-dp", _case_eps_missing, "spec.privacy.epsilon", "differentially private"),
    ("epsilon-non-dp", _case_eps_non_dp, "spec.privacy", "not differentially private"),
    ("rows-zero", _case_rows_zero, "spec.rows", "greater than or equal to 1"),
    ("rows-negative", _case_rows_negative, "spec.rows", "greater than or equal to 1"),
    ("unknown-generator", _case_unknown_generator, "spec.generator.type", "gaussian_copula"),
    ("malformed-yaml", _case_malformed_yaml, "job.yaml", "malformed YAML"),
    ("wrong-kind", _case_wrong_kind, "job.yaml.kind", "unknown kind"),
    ("wrong-api-version", _case_wrong_api_version, "job.yaml.apiVersion", "unsupported apiVersion"),
    ("missing-manifest", _case_missing_manifest, "missing.yaml", "not found"),
]


@pytest.mark.parametrize(
    ("make", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line(
    make, field, fragment, tmp_path: Path, penguins_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Setup
    manifest = make(tmp_path, penguins_csv)
    out = tmp_path / "out"

    # Run
    code = main(["run", str(manifest), "--out", str(out), "--quiet"])

    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and field in err and fragment in err, err
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]
    assert not any(p.rglob("*.*") for p in leftovers if p.is_dir()), "half-written output"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
