"""read_table / write_table on real files: every bad input is one UserInputError, no traceback.

The data is a small sample of the Palmer penguins (real data from the palmerpenguins package).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tabular_runner import datasets
from tabular_runner.errors import UserInputError
from tabular_runner.spec import DataFormat
from tabular_runner.storage import LocalStore
from tabular_runner.storage.tables import read_table, table_bytes, write_table

pytestmark = pytest.mark.unit

FIELD = "spec.source.uri"


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return datasets.load("penguins").sample(60, random_state=7).reset_index(drop=True)


@pytest.mark.parametrize("fmt", list(DataFormat), ids=[f.value for f in DataFormat])
def test_write_then_read_roundtrip(tmp_path: Path, penguins: pd.DataFrame, fmt: DataFormat) -> None:
    # Setup
    store = LocalStore(tmp_path)

    # Run
    uri = write_table(penguins, store, f"data/penguins.{fmt.value}", fmt)
    back = read_table(uri, fmt)

    # Assert
    assert uri == (tmp_path / "data" / f"penguins.{fmt.value}").as_uri()
    pd.testing.assert_frame_equal(back, penguins, check_dtype=False)
    assert back["species"].isin(["Adelie", "Chinstrap", "Gentoo"]).all()


def test_csv_has_no_index_column(penguins: pd.DataFrame) -> None:
    header = table_bytes(penguins, DataFormat.CSV).split(b"\n", 1)[0].decode()
    assert header.split(",") == list(penguins.columns)


def test_relative_uri_resolves_against_base_dir(tmp_path: Path, penguins: pd.DataFrame) -> None:
    # Setup
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.csv").write_bytes(table_bytes(penguins, DataFormat.CSV))

    # Run
    frame = read_table("file://in/p.csv", DataFormat.CSV, base_dir=tmp_path)

    # Assert
    assert frame.shape == penguins.shape


def test_csv_skips_blanks_after_delimiter(tmp_path: Path) -> None:
    # Setup
    path = tmp_path / "spaced.csv"
    path.write_text("age, sex\n39, Male\n50, Female\n")

    # Run
    frame = read_table(path.as_uri(), DataFormat.CSV)

    # Assert
    assert list(frame.columns) == ["age", "sex"]
    assert frame["sex"].tolist() == ["Male", "Female"]
    assert frame["age"].tolist() == [39, 50]


def _missing(tmp: Path, rows: bytes) -> Path:
    return tmp / "absent.csv"


def _directory(tmp: Path, rows: bytes) -> Path:
    (tmp / "folder.csv").mkdir()
    return tmp / "folder.csv"


def _empty(tmp: Path, rows: bytes) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _header_only(tmp: Path, rows: bytes) -> Path:
    (tmp / "header.csv").write_bytes(b"a,b,c\n")
    return tmp / "header.csv"


def _blank_lines(tmp: Path, rows: bytes) -> Path:
    (tmp / "blank.csv").write_bytes(b"\n\n\n")
    return tmp / "blank.csv"


def _garbage_parquet(tmp: Path, rows: bytes) -> Path:
    (tmp / "garbage.parquet").write_bytes(os.urandom(512))
    return tmp / "garbage.parquet"


def _csv_as_parquet(tmp: Path, rows: bytes) -> Path:
    (tmp / "data.parquet").write_bytes(rows)  # wrong extension, explicit format below
    return tmp / "data.parquet"


def _parquet_as_csv(tmp: Path, rows: bytes) -> Path:
    (tmp / "data.csv").write_bytes(rows)
    return tmp / "data.csv"


def _latin1_csv(tmp: Path, rows: bytes) -> Path:
    (tmp / "latin1.csv").write_bytes("name,city\nJosé,Málaga\n".encode("latin-1"))
    return tmp / "latin1.csv"


def _ragged_csv(tmp: Path, rows: bytes) -> Path:
    (tmp / "ragged.csv").write_bytes(b'a,b\n1,2\n3,"unterminated\n')
    return tmp / "ragged.csv"


@pytest.mark.parametrize(
    ("make", "fmt", "rows_fmt", "problem"),
    [
        (_missing, DataFormat.CSV, DataFormat.CSV, "file not found: {path}"),
        (_directory, DataFormat.CSV, DataFormat.CSV, "{path} is a directory"),
        (_empty, DataFormat.CSV, DataFormat.CSV, "{path} is empty"),
        (_header_only, DataFormat.CSV, DataFormat.CSV, "{path} has no rows"),
        (_blank_lines, DataFormat.CSV, DataFormat.CSV, "{path} has no columns"),
        (_empty, DataFormat.PARQUET, DataFormat.CSV, "{path} is empty"),
        (_garbage_parquet, DataFormat.PARQUET, DataFormat.CSV, "cannot be read as parquet"),
        (_csv_as_parquet, DataFormat.PARQUET, DataFormat.CSV, "cannot be read as parquet"),
        (_parquet_as_csv, DataFormat.CSV, DataFormat.PARQUET, "looks like parquet, not csv"),
        (_latin1_csv, DataFormat.CSV, DataFormat.CSV, "not UTF-8 text"),
        (_ragged_csv, DataFormat.CSV, DataFormat.CSV, "cannot be read as csv"),
    ],
    ids=[
        "missing",
        "directory",
        "empty-csv",
        "header-only",
        "blank-lines",
        "empty-parquet",
        "garbage-parquet",
        "csv-bytes-read-as-parquet",
        "parquet-bytes-read-as-csv",
        "latin1-csv",
        "unterminated-quote",
    ],
)
def test_bad_input_is_a_user_input_error(
    tmp_path: Path,
    penguins: pd.DataFrame,
    make: Callable[[Path, bytes], Path],
    fmt: DataFormat,
    rows_fmt: DataFormat,
    problem: str,
) -> None:
    # Setup
    path = make(tmp_path, table_bytes(penguins.head(5), rows_fmt))

    # Run
    with pytest.raises(UserInputError) as info:
        read_table(path.as_uri(), fmt)

    # Assert
    assert info.value.field == FIELD
    assert problem.format(path=path) in info.value.problem
    assert info.value.exit_code == 2


def test_missing_relative_file_names_the_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as info:
        read_table("file://data/x.csv", DataFormat.CSV, base_dir=tmp_path, field="spec.x")
    assert info.value.field == "spec.x"
    assert info.value.problem == f"file not found: {tmp_path / 'data' / 'x.csv'}"
    assert "manifest's folder" in info.value.hint


@pytest.mark.parametrize("locked", ["file", "folder"], ids=["file-mode-0", "folder-mode-0"])
def test_unreadable_file(tmp_path: Path, penguins: pd.DataFrame, locked: str) -> None:
    # Setup
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "secret.csv"
    path.write_bytes(table_bytes(penguins, DataFormat.CSV))
    (path if locked == "file" else folder).chmod(0)

    # Run
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(UserInputError) as info:
            read_table(path.as_uri(), DataFormat.CSV)
    finally:
        folder.chmod(0o755)

    # Assert
    assert info.value.problem == f"cannot read {path}: permission denied"


WRITE_ONLY = Path("/proc/sys/vm/compact_memory")  # mode 0200: even root may not read it


@pytest.mark.skipif(not WRITE_ONLY.exists(), reason="needs Linux /proc/sys")
def test_unreadable_file_even_for_root() -> None:
    # Run
    with pytest.raises(UserInputError) as info:
        read_table(WRITE_ONLY.as_uri(), DataFormat.CSV)

    # Assert
    assert info.value.problem == f"cannot read {WRITE_ONLY}: permission denied"
