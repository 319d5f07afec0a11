"""``spec.generation``: validation, which generator serves what, exact counts, rows that keep
their identity through the constraints, conditioning by rejection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tabular_runner.constraints import enforce_rows
from tabular_runner.controls import exact_counts, model_space, reweighted
from tabular_runner.errors import UserInputError
from tabular_runner.generators import CONTROLS, check_controls
from tabular_runner.generators.conditional import fill_by_rejection, restore_given
from tabular_runner.pipeline import _serving_controls
from tabular_runner.spec import (
    GeneratorSpec,
    GeneratorType,
    RangeConstraint,
    load_manifests,
)

JOB = """apiVersion: tabular.aumos.io/v1alpha1
kind: SynthesisJob
metadata: {name: a}
spec:
  fromModel: {uri: file://out}
  generator: {type: auto}
"""


def _load(extra: str) -> object:
    return load_manifests(JOB + extra, where="job.yaml")[0]


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        (
            "  generation: {rebalance: {column: income, shares: {a: 0.5, b: 0.4}}}\n",
            "spec.generation.rebalance.shares",
            "sum to 0.9",
        ),
        (
            "  generation: {rebalance: {column: income, shares: {a: 1.5}}}\n",
            "spec.generation.rebalance.shares",
            "between 0 and 1",
        ),
        (
            "  generation: {seed: {uri: file://s.csv}, impute: {uri: file://h.csv}}\n",
            "spec.generation.impute",
            "only one of seed, rebalance and impute",
        ),
        ("  generation: {temperature: 0}\n", "spec.generation.temperature", "greater than 0"),
        ("  generation: {seed: {uri: http://x}}\n", "spec.generation.seed.uri", "unsupported"),
        (
            "  rows: 10\n  generation: {seed: {uri: file://s.csv}}\n",
            "spec.rows",
            "one row per row",
        ),
        ("  generation: {seeds: {uri: file://s.csv}}\n", "spec.generation.seeds", ""),
    ],
)
def test_bad_generation_is_refused_naming_the_field(extra: str, field: str, words: str) -> None:
    with pytest.raises(UserInputError) as caught:
        _load(extra)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_generation_controls_are_single_table() -> None:
    text = JOB.replace("  fromModel: {uri: file://out}\n", "  schemaRef: {name: s}\n")
    with pytest.raises(UserInputError, match="single-table"):
        load_manifests(text + "  generation: {temperature: 0.5}\n", where="job.yaml")


def test_a_control_the_generator_lacks_names_those_that_have_it() -> None:
    with pytest.raises(UserInputError) as caught:
        check_controls(GeneratorType.CTGAN, ["seed", "impute"])
    assert caught.value.field == "spec.generation.impute"
    assert "gaussian_copula, tabularargn" in str(caught.value)
    check_controls(GeneratorType.TABULARARGN, ["seed", "rebalance", "impute", "temperature"])


def test_every_generator_declares_its_controls() -> None:
    concrete = set(GeneratorType) - {GeneratorType.AUTO, GeneratorType.HMA}
    assert set(CONTROLS) == concrete
    assert all("temperature" not in CONTROLS[g] for g in concrete - {GeneratorType.TABULARARGN})


@pytest.mark.parametrize("rows", [1, 7, 100, 1001])
def test_exact_counts_sum_to_the_rows_and_follow_the_shares(rows: int) -> None:
    shares = {"a": 0.5, "b": 0.3, "c": 0.2}
    counts = exact_counts(shares, rows)
    assert sum(counts.values()) == rows
    assert all(abs(counts[k] - shares[k] * rows) < 1 for k in shares)


def test_auto_switches_to_a_generator_that_serves_the_controls() -> None:
    job = _load("  generation: {impute: {uri: file://h.csv}}\n")
    chosen, reason = _serving_controls(
        GeneratorSpec(type=GeneratorType.CTGAN, params={"epochs": 5}),
        "fits",
        job.spec,  # type: ignore[attr-defined]
    )
    assert chosen.type is GeneratorType.GAUSSIAN_COPULA
    assert "generation.impute" in reason
    kept, _ = _serving_controls(
        GeneratorSpec(type=GeneratorType.GAUSSIAN_COPULA),
        "fits",
        job.spec,  # type: ignore[attr-defined]
    )
    assert kept.type is GeneratorType.GAUSSIAN_COPULA


def test_enforce_rows_keeps_each_row_answering_its_given_row() -> None:
    # Setup: rows 1 and 3 break a range (repaired by clamping, so never redrawn)
    frame = pd.DataFrame({"pos": [0, 1, 2, 3], "x": [5.0, 50.0, 6.0, 60.0]})
    calls: list[list[int]] = []

    def regenerate(positions: list[int], attempt: int) -> pd.DataFrame:
        calls.append(positions)
        good = attempt >= 2
        return pd.DataFrame({"pos": positions, "x": [7.0 if good else 99.0] * len(positions)})

    # Act
    constraint = RangeConstraint(type="range", column="x", min=0, max=10)
    out, report = enforce_rows(frame, [constraint], real=frame, regenerate=regenerate)

    # Assert: clamped in place, no redraw needed, order kept
    assert out["pos"].tolist() == [0, 1, 2, 3]
    assert out["x"].tolist() == [5.0, 10.0, 6.0, 10.0]
    assert report.rounds == 0 and calls == []


def test_enforce_rows_redraws_rejected_rows_in_place() -> None:
    from tabular_runner.spec import RegexConstraint

    frame = pd.DataFrame({"pos": [0, 1, 2, 3], "code": ["A1", "bad", "B2", "bad"]})

    def regenerate(positions: list[int], attempt: int) -> pd.DataFrame:
        code = "C3" if attempt >= 2 else "still bad"
        return pd.DataFrame({"pos": positions, "code": [code] * len(positions)})

    rule = RegexConstraint(type="regex", column="code", pattern=r"[A-Z]\d")
    out, report = enforce_rows(frame, [rule], real=frame, regenerate=regenerate)

    assert out["pos"].tolist() == [0, 1, 2, 3]
    assert out["code"].tolist() == ["A1", "C3", "B2", "C3"]
    assert report.rounds == 2 and report.rows_rejected == 4


def test_enforce_rows_gives_up_naming_the_constraint() -> None:
    from tabular_runner.spec import RegexConstraint

    frame = pd.DataFrame({"code": ["bad"]})
    rule = RegexConstraint(type="regex", column="code", pattern=r"[A-Z]\d")
    with pytest.raises(UserInputError) as caught:
        enforce_rows(
            frame,
            [rule],
            real=frame,
            regenerate=lambda p, a: pd.DataFrame({"code": ["bad"] * len(p)}),
            max_rounds=3,
        )
    assert caught.value.field == "spec.constraints[0]"


def _sampler(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "blue", "green"], size=n, p=[0.7, 0.25, 0.05])
    size = np.where(colour == "red", rng.normal(10, 1, n), rng.normal(20, 1, n))
    return pd.DataFrame({"colour": colour, "size": size})


def test_rejection_answers_each_given_row_in_order() -> None:
    given = pd.DataFrame({"colour": ["green", "red", "green", "blue"] * 50})
    out = fill_by_rejection(_sampler, given, seed=1, generator="toy")
    assert out["colour"].tolist() == given["colour"].tolist()
    # The other columns follow the condition, as the sampler ties them
    assert out.loc[out["colour"] == "red", "size"].mean() < 15
    assert out.loc[out["colour"] == "green", "size"].mean() > 15


def test_rejection_gives_up_on_what_the_model_never_draws() -> None:
    given = pd.DataFrame({"colour": ["purple"]})
    with pytest.raises(UserInputError, match="colour='purple'"):
        fill_by_rejection(_sampler, given, seed=1, generator="toy", max_draws=3)


def test_restore_given_keeps_present_cells_and_fills_only_fill_columns() -> None:
    drawn = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    given = pd.DataFrame({"a": [9.0, np.nan, np.nan], "b": [None, "q", None]})
    out = restore_given(drawn, given, fill=["a"])
    assert out["a"].tolist() == [9.0, 2.0, 3.0]  # filled where empty
    assert out["b"].tolist()[:2] == [None, "q"] and pd.isna(out["b"][2])  # kept as given


def test_model_space_folds_whole_combinations_only() -> None:
    from tabular_runner.constraints import Combination

    combo = Combination("__combo__e|n", ("e", "n"), ("object", "int64"))
    given = pd.DataFrame({"e": ["HS", "BA", None], "n": [9.0, 13.0, 10.0], "x": [1, 2, 3]})
    out = model_space(given, [combo])
    assert list(out.columns) == ["x", "__combo__e|n"]
    assert out["__combo__e|n"].tolist()[:2] == ['["HS", 9]', '["BA", 13]']
    assert out["__combo__e|n"].tolist()[2] is None


def test_reweighted_reference_has_the_asked_shares() -> None:
    train = pd.DataFrame({"y": ["a"] * 90 + ["b"] * 10, "v": range(100)})
    ref = reweighted(train, "y", {"a": 0.5, "b": 0.5}, seed=0)
    assert len(ref) == 100
    assert ref["y"].value_counts().to_dict() == {"a": 50, "b": 50}
    assert set(ref.loc[ref["y"] == "b", "v"]) <= set(range(90, 100))


def test_the_run_summary_says_what_came_out() -> None:
    from tabular_runner.progress import _generation_rows

    rows = dict(
        _generation_rows(
            {
                "seed": {"rows": 10, "rowsHonoured": 9},
                "rebalance": {"column": "y", "target": {"a": 0.5}, "achieved": {"a": 0.4999}},
                "impute": {"cellsFilled": 3, "cellsMissing": 4, "presentCellsChanged": 0},
                "temperature": 0.8,
            }
        )
    )
    assert rows["seed rows honoured"] == "9 of 10"
    assert rows["rebalanced y"] == "a 0.500 (asked 0.5)"
    assert rows["cells imputed"] == "3 of 4 (0 present cells changed)"
    assert rows["temperature"] == "0.8"
    assert _generation_rows(None) == []
