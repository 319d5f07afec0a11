"""The HTML report, rendered from real scores of a real table (Palmer penguins).

Nothing is mocked: fidelity and privacy are measured with the real SDMetrics and Anonymeter
on the penguins table, extended with an identifier and an e-mail column holding personal
data; the page is rendered by the real jinja2 template with real matplotlib plots.
"""

from __future__ import annotations

import re
from html import escape as html_escape
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabular_runner import datasets, report_html
from tabular_runner.quality import fidelity, gate, privacy
from tabular_runner.spec import QualityGate

pytestmark = pytest.mark.integration

PENGUIN_COLUMNS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


def _with_personal_data(frame: pd.DataFrame, prefix: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tags = rng.integers(10**7, 10**8, size=len(frame))
    return frame.assign(
        bird_id=[f"{prefix}-ID-{t}" for t in tags],
        keeper_email=[f"{prefix}.keeper{t}@antarctica.example" for t in tags],
    )


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    penguins = datasets.load("penguins").sample(frac=1.0, random_state=0).reset_index(drop=True)
    real = _with_personal_data(penguins.iloc[:240], "REAL", 1)
    holdout = _with_personal_data(penguins.iloc[240:], "HOLD", 2)
    # A crude "synthetic" table: real rows resampled with their numbers jittered, and fresh
    # fake identifiers and e-mails, as the pipeline would produce them.
    rng = np.random.default_rng(3)
    synthetic = penguins.iloc[:240].sample(n=300, replace=True, random_state=4)
    synthetic = synthetic.reset_index(drop=True)
    for column in ("bill_length_mm", "body_mass_g"):
        synthetic[column] = synthetic[column] * rng.normal(1.0, 0.05, size=len(synthetic))
    return real, holdout, _with_personal_data(synthetic, "FAKE", 5)


def _analysis(real: pd.DataFrame) -> dict[str, Any]:
    columns = []
    for name in real.columns:
        kind = "numeric" if pd.api.types.is_numeric_dtype(real[name]) else "categorical"
        entry: dict[str, Any] = {
            "name": name,
            "kind": "id" if name == "bird_id" else kind,
            "pii": "email" if name == "keeper_email" else None,
            "dtype": str(real[name].dtype),
            "nullFraction": float(real[name].isna().mean()),
            "cardinality": int(real[name].nunique()),
            "uniqueFraction": float(real[name].nunique() / len(real)),
        }
        if kind == "numeric":
            entry.update(min=float(real[name].min()), max=float(real[name].max()))
        columns.append(entry)
    return {"rowCount": len(real), "columns": columns}


def _report(real: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, Any]:
    sdtypes = {"bird_id": "id", "keeper_email": "email"}
    fid = fidelity.evaluate(real, synthetic, sdtypes=sdtypes, sample_rows=1000, seed=0)
    priv = privacy.evaluate(
        real,
        holdout,
        synthetic,
        sample_rows=300,
        attacks=50,
        seed=0,
        exclude_columns=["bird_id", "keeper_email"],
    )
    verdict = gate.evaluate(
        QualityGate(min_fidelity=0.99, max_privacy_risk=0.9),
        fidelity=fid.score,
        diagnostic=fid.diagnostic_score,
        privacy_risk=priv.max_risk,
        dcr_share=priv.dcr.share,
    )
    return {
        "job": "penguins-demo",
        "generator": "gaussian_copula",
        "rowsGenerated": len(synthetic),
        "fidelityScore": fid.score,
        "diagnosticScore": fid.diagnostic_score,
        "fidelity": fid.to_dict(),
        "privacy": priv.to_dict(),
        "privacyScore": priv.privacy_score,
        "epsilonSpent": 2.5,
        "privacyAccounting": {"epsilonBudget": 3.0, "epsilonSpent": 2.5},
        "gate": verdict.to_dict(),
        "timings": {"analyze": 0.2, "train": 3.1, "generate": 0.4},
        "analysis": _analysis(real),
        "constraints": {"applied": 1, "rejectedRows": 0},
    }


@pytest.fixture(scope="module")
def report(tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    return _report(*tables)


def _plotted(html: str) -> list[str]:
    return re.findall(r'<img class="column-plot" data-column="([^"]+)"', html)


def test_report_has_a_plot_per_column_and_no_personal_data(
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], report: dict[str, Any]
) -> None:
    # Setup
    real, _, synthetic = tables

    # Run
    html = report_html.render(report, real, synthetic)

    # Assert: one embedded image per modelled column, none for the id and e-mail columns.
    assert sorted(_plotted(html)) == sorted(PENGUIN_COLUMNS)
    assert html.count('src="data:image/png;base64,') >= len(PENGUIN_COLUMNS) + 1
    for frame in (real, synthetic):
        for column in ("bird_id", "keeper_email"):
            leaked = [v for v in frame[column] if str(v) in html]
            assert leaked == [], f"{column} values on the page: {leaked[:3]}"
    assert "REAL-ID-" not in html and "@antarctica.example" not in html
    # The verdict names the failing threshold; the summary carries the scores and ε.
    assert "Quality gate: failed" in html
    assert html_escape(report["gate"]["reason"]) in html and "minFidelity 0.99" in html
    assert "penguins-demo" in html and "2.500" in html
    assert "Singling out (univariate)" in html and "Inference: species" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_report_plots_the_worst_columns_first_up_to_the_limit(
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], report: dict[str, Any]
) -> None:
    # Setup
    real, _, synthetic = tables
    worst = [
        c["column"] for c in sorted(report["fidelity"]["columnScores"], key=lambda c: c["score"])
    ][:3]

    # Run
    html = report_html.render(report, real, synthetic, columns_limit=3)

    # Assert
    assert _plotted(html) == worst


def test_report_renders_with_optional_parts_missing(
    tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    # Setup: no analysis, no scores, no gate; the id column is still recognised by its values.
    # A datetime column exercises the date histogram.
    real, _, synthetic = tables
    start = pd.Timestamp("2007-11-01")
    real = real.assign(observed_on=start + pd.to_timedelta(np.arange(len(real)) % 700, "D"))
    synthetic = synthetic.assign(
        observed_on=start + pd.to_timedelta(np.arange(len(synthetic)) % 650, "D")
    )
    report: dict[str, Any] = {"job": "bare"}

    # Run
    html = report_html.render(report, real, synthetic)

    # Assert
    assert "Quality gate: not evaluated" in html
    assert "Fidelity was not measured" in html and "Privacy was not measured" in html
    assert "bird_id" not in _plotted(html) and "keeper_email" not in _plotted(html)
    assert not [v for v in real["bird_id"] if v in html]
    assert not [v for v in real["keeper_email"] if v in html]
    assert sorted(_plotted(html)) == sorted([*PENGUIN_COLUMNS, "observed_on"])
    assert "observed_on (datetime)" in html
