"""Data frames to and from csv / parquet, on local files or S3.

Reading is where users' data first meets the runner, so every way a file can be wrong (absent,
a directory, unreadable, empty, not the format it claims) becomes one
:class:`~tabular_runner.errors.UserInputError` naming the field, the file and the fix —
never a parser traceback.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tabular_runner.errors import UserInputError
from tabular_runner.spec import DataFormat
from tabular_runner.storage import local_path, open_store, split_s3_uri
from tabular_runner.storage.base import ArtifactStore

if TYPE_CHECKING:
    from tabular_runner.storage.s3 import S3Settings

CONTENT_TYPES: dict[DataFormat, str] = {
    DataFormat.CSV: "text/csv; charset=utf-8",
    DataFormat.PARQUET: "application/vnd.apache.parquet",
}

_PARQUET_MAGIC = b"PAR1"
_FORMAT_HINT = "set spec.source.format to the file's real format (csv or parquet)"


def read_table(
    uri: str,
    fmt: DataFormat,
    *,
    base_dir: Path | None = None,
    s3: S3Settings | None = None,
    field: str = "spec.source.uri",
) -> pd.DataFrame:
    """Read one csv or parquet table from ``file://`` or ``s3://``.

    csv is read as UTF-8 with a header row; blanks after a delimiter are skipped
    (``skipinitialspace``), and pandas' usual markers (empty, ``NA``, ``NaN``…) mean missing.

    Args:
        uri: ``file:///abs.csv``, ``file://rel.csv`` (relative to ``base_dir``) or
            ``s3://bucket/key.parquet``.
        fmt: The file's format.
        base_dir: Folder that relative ``file://`` paths are resolved against (the
            manifest's folder).
        s3: How to reach S3; if omitted, the source identity from the environment
            (``AUMOS_SOURCE_S3_*`` keys, else ``AUMOS_S3_*``: see
            :meth:`~tabular_runner.storage.s3.S3Settings.source_from_env`).
        field: The field named in errors.

    Returns:
        The table, with at least one row and one column.

    Raises:
        UserInputError: The file is missing, a directory, unreadable, empty, has no rows or
            cannot be parsed as ``fmt``; or S3 refuses (no bucket, bad credentials).
        TabularError: The S3 server cannot be reached (transient).
    """
    fmt = DataFormat(fmt)
    source: Path | io.BytesIO
    if uri.startswith("s3://"):
        where = uri
        data = _get_s3_object(uri, s3=s3, field=field)
        if not data:
            raise UserInputError(field, f"{where} is empty", f"upload a {fmt.value} file with data")
        head = data[:4]
        source = io.BytesIO(data)
    else:
        path = local_path(uri, base_dir=base_dir, field=field)
        where = str(path)
        head = _check_local_file(path, fmt, field=field)
        source = path
    if fmt is DataFormat.CSV and head == _PARQUET_MAGIC:
        raise UserInputError(
            field, f"{where} looks like parquet, not csv", "set spec.source.format: parquet"
        )
    frame = _parse(source, fmt, where=where, field=field)
    if frame.shape[1] == 0 or len(frame) == 0:
        raise UserInputError(
            field,
            f"{where} has no rows ({frame.shape[1]} columns, {len(frame)} rows)",
            "the source needs a header and at least one data row",
        )
    return frame


def table_bytes(df: pd.DataFrame, fmt: DataFormat) -> bytes:
    """Serialize ``df`` as csv (UTF-8, header, no index) or parquet (pyarrow, no index)."""
    fmt = DataFormat(fmt)
    if fmt is DataFormat.CSV:
        return df.to_csv(index=False).encode("utf-8")
    buffer = io.BytesIO()
    df.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def write_table(df: pd.DataFrame, store: ArtifactStore, key: str, fmt: DataFormat) -> str:
    """Write ``df`` to ``key`` of ``store`` atomically; return the object's uri.

    Args:
        df: The table.
        store: Where to write.
        key: The object's key, e.g. ``output.parquet``.
        fmt: csv or parquet.

    Returns:
        The uri of the written object.
    """
    fmt = DataFormat(fmt)
    return store.put_bytes(key, table_bytes(df, fmt), content_type=CONTENT_TYPES[fmt])


def _check_local_file(path: Path, fmt: DataFormat, *, field: str) -> bytes:
    """Check that ``path`` is a readable, non-empty file; return its first 4 bytes."""
    denied = UserInputError(
        field,
        f"cannot read {path}: permission denied",
        f"make the file (and its folders) readable by user id {os.getuid()}",
    )
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserInputError(
            field,
            f"file not found: {path}",
            "check the path; a relative file:// path is resolved against the manifest's folder",
        ) from exc
    except PermissionError as exc:  # a folder on the way cannot be searched
        raise denied from exc
    except OSError as exc:
        raise UserInputError(field, f"cannot read {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise UserInputError(
            field, f"{path} is a directory, not a file", f"point the uri at one {fmt.value} file"
        )
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except PermissionError as exc:
        raise denied from exc
    except OSError as exc:
        raise UserInputError(field, f"cannot read {path}: {exc.strerror}") from exc
    if not head:
        raise UserInputError(field, f"{path} is empty", f"give a {fmt.value} file with data")
    return head


def _get_s3_object(uri: str, *, s3: S3Settings | None, field: str) -> bytes:
    bucket, key = split_s3_uri(uri, field=field)
    if not key:
        raise UserInputError(field, f"{uri} names a bucket, not an object", "write s3://bucket/key")
    if s3 is None:
        # Imported here so that file:// users never load the minio SDK.
        from tabular_runner.storage.s3 import S3Settings

        s3 = S3Settings.source_from_env()
    store = open_store(f"s3://{bucket}", s3=s3, field=field)
    try:
        return store.get_bytes(key)
    except FileNotFoundError as exc:
        raise UserInputError(
            field, f"object not found: {uri}", "check the bucket and key (keys are case-sensitive)"
        ) from exc
    except UserInputError as exc:
        # The store names the object; name the manifest field instead, keep the object's uri.
        raise UserInputError(field, f"{uri}: {exc.problem}", exc.hint) from exc


def _parse(source: Path | io.BytesIO, fmt: DataFormat, *, where: str, field: str) -> pd.DataFrame:
    if fmt is DataFormat.CSV:
        try:
            return pd.read_csv(source, skipinitialspace=True, encoding="utf-8")
        except pd.errors.EmptyDataError as exc:
            raise UserInputError(
                field, f"{where} has no columns", "the csv needs a header row and data rows"
            ) from exc
        except UnicodeDecodeError as exc:
            raise UserInputError(
                field,
                f"{where} cannot be read as csv: not UTF-8 text ({exc.reason} at byte {exc.start})",
                f"save it as UTF-8 csv, or {_FORMAT_HINT}",
            ) from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise UserInputError(
                field, f"{where} cannot be read as csv: {_first_line(exc)}", _FORMAT_HINT
            ) from exc
    import pyarrow as pa

    try:
        return pd.read_parquet(source, engine="pyarrow")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UserInputError(
            field, f"{where} cannot be read as parquet: {_first_line(exc)}", _FORMAT_HINT
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
