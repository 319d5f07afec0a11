"""The artifact store as the operator sees it: tenant buckets and small JSON records.

The operator creates a tenant's bucket before the first stage Job of that namespace and
reads what stages write for it (``stages/progress.json`` while a stage runs, a stage's
``stages/<stage>.json`` when its pod's termination message is gone). It never reads data.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error


class StorePort(Protocol):
    """What the controller needs of object storage."""

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if absent."""

    def get_json(self, uri: str, key: str) -> dict[str, Any] | None:
        """``key`` under the ``s3://bucket/prefix`` ``uri`` as JSON, or None if absent."""


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix without slashes at either end)."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


class S3Store:
    """S3/MinIO through the minio SDK."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "") -> None:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        self.client = Minio(
            parsed.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parsed.scheme == "https",
            region=region or "us-east-1",
        )
        self._buckets: set[str] = set()

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if absent (remembered per process)."""
        if bucket in self._buckets:
            return
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._buckets.add(bucket)

    def get_json(self, uri: str, key: str) -> dict[str, Any] | None:
        """Read one small JSON object; None if it does not exist or is not JSON."""
        bucket, prefix = split_uri(uri)
        name = f"{prefix}/{key}" if prefix else key
        try:
            response = self.client.get_object(bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return None
            raise
        try:
            data = response.read(1 << 20)
        finally:
            response.close()
            response.release_conn()
        try:
            value = json.loads(data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class NoStore:
    """No object storage configured: buckets are the platform's business, nothing to read."""

    def ensure_bucket(self, bucket: str) -> None:
        """Nothing to create."""

    def get_json(self, uri: str, key: str) -> dict[str, Any] | None:
        """Nothing to read."""
        return None
