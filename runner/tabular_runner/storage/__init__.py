"""Where stage inputs and outputs live: the ``ArtifactStore`` port and its adapters.

* :class:`~tabular_runner.storage.base.ArtifactStore` — the port (keys → bytes).
* :class:`~tabular_runner.storage.local.LocalStore` — a directory (``file://``).
* :class:`~tabular_runner.storage.s3.S3Store` — an S3 / MinIO prefix (``s3://``); the only
  module that imports the ``minio`` SDK, loaded only when an ``s3://`` uri is opened.
* :mod:`~tabular_runner.storage.tables` — data frames to and from csv / parquet.

:func:`open_store` turns a uri into the right adapter.
"""

from __future__ import annotations

import os.path
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from tabular_runner.errors import UserInputError
from tabular_runner.storage.base import ArtifactStore
from tabular_runner.storage.local import LocalStore, validate_key

if TYPE_CHECKING:
    from tabular_runner.storage.s3 import S3Settings

__all__ = ["ArtifactStore", "LocalStore", "local_path", "open_store", "split_s3_uri"]


def open_store(
    uri: str,
    *,
    base_dir: Path | None = None,
    s3: S3Settings | None = None,
    field: str = "uri",
) -> ArtifactStore:
    """Open the store rooted at ``uri``.

    Args:
        uri: ``file:///abs/dir``, ``file://rel/dir`` (relative to ``base_dir``) or
            ``s3://bucket[/prefix]``.
        base_dir: Directory that relative ``file://`` paths are resolved against (the
            manifest's folder); the working directory if omitted.
        s3: How to reach S3; read from ``AUMOS_S3_*`` environment variables if omitted.
        field: The field named in errors (``spec.output.uri``).

    Returns:
        A :class:`LocalStore` or an :class:`~tabular_runner.storage.s3.S3Store`.

    Raises:
        UserInputError: Unsupported scheme, malformed uri or no S3 settings for ``s3://``.
    """
    if uri.startswith("file://"):
        return LocalStore(local_path(uri, base_dir=base_dir, field=field))
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri, field=field)
        # Imported here so that file:// users never load the minio SDK.
        from tabular_runner.storage.s3 import ENV_ENDPOINT, S3Settings, S3Store

        settings = s3 if s3 is not None else S3Settings.from_env()
        if settings is None:
            raise UserInputError(
                field,
                f"no S3 settings to open {uri}",
                f"set {ENV_ENDPOINT} (http://host:port), AUMOS_S3_ACCESS_KEY and "
                "AUMOS_S3_SECRET_KEY (optionally AUMOS_S3_REGION)",
            )
        return S3Store(
            bucket, prefix, settings.client(), credentials_hint=settings.credentials_hint
        )
    raise UserInputError(
        field, f"unsupported uri {uri!r}", "use file://path/to/dir or s3://bucket/prefix"
    )


def local_path(uri: str, *, base_dir: Path | None = None, field: str = "uri") -> Path:
    """Return the absolute path of a ``file://`` uri.

    ``file:///abs`` is absolute; ``file://rel/x`` and ``file://./rel/x`` are relative to
    ``base_dir`` (the manifest's folder) or the working directory. ``file://localhost/abs``
    is the RFC 8089 spelling of an absolute path.
    """
    if not uri.startswith("file://"):
        raise UserInputError(field, f"{uri!r} is not a file:// uri", "write file://path")
    rest = unquote(urlsplit(uri).path if uri.startswith("file://localhost/") else uri[7:])
    if not rest:
        raise UserInputError(field, "empty path in file:// uri", "write file://path/to/data.csv")
    path = Path(rest)
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def split_s3_uri(uri: str, *, field: str = "uri") -> tuple[str, str]:
    """Split ``s3://bucket/a/b`` into (``bucket``, ``a/b``); the key part may be empty.

    Raises:
        UserInputError: No bucket, a query or fragment, or an invalid key.
    """
    parts = urlsplit(uri)
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if not bucket:
        raise UserInputError(field, f"no bucket in {uri!r}", "write s3://bucket/prefix")
    if parts.query or parts.fragment:
        raise UserInputError(field, f"{uri!r} has a query or fragment", "write s3://bucket/prefix")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError as exc:
            raise UserInputError(field, str(exc), "write s3://bucket/prefix") from exc
    return bucket, prefix
