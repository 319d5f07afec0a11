"""The artifact store as the operator sees it: tenant buckets, small JSON records, downloads.

The operator creates a tenant's bucket before the first stage Job of that namespace and
reads what stages write for it (``stages/progress.json`` while a stage runs, a stage's
``stages/<stage>.json`` when its pod's termination message is gone). It never reads data: a
finished job's files reach users as presigned GET URLs (:meth:`StorePort.presign_get`), signed
locally with the tenant store identity.

Retention: :meth:`S3Store.ensure_bucket` keeps one lifecycle rule on each tenant bucket,
``aumos-expire-tab-jobs``, expiring objects under ``tab-jobs/`` (every job's artifacts) after
``retention_days``; other rules on the bucket are left as they are. A server that refuses or
does not implement lifecycle configuration still gets its bucket: the operator logs one
warning and carries on, since an unexpired output is no reason to fail a job.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlparse

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import MinioException, S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

log = logging.getLogger("tabular_operator.store")

JOBS_PREFIX = "tab-jobs/"
"""Where every job's artifacts live in a tenant bucket (``tab-jobs/<job uid>/…``)."""
RETENTION_RULE_ID = "aumos-expire-tab-jobs"
"""The one lifecycle rule the operator owns on a tenant bucket."""
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs live at most 7 days."""


class StoreNotConfiguredError(Exception):
    """The operator has no object-store credentials, so it cannot sign download URLs."""


class StorePort(Protocol):
    """What the controller needs of object storage."""

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if absent; keep its retention rule."""

    def get_json(self, uri: str, key: str) -> dict[str, Any] | None:
        """``key`` under the ``s3://bucket/prefix`` ``uri`` as JSON, or None if absent."""

    def list_keys(self, uri: str, prefix: str = "") -> list[str]:
        """Keys under the ``s3://bucket/prefix`` ``uri``, relative to it, sorted.

        Only keys starting with ``prefix``; empty when the bucket or prefix holds nothing.
        """

    def presign_get(self, uri: str, key: str, ttl_seconds: int) -> str:
        """A URL that lets its holder GET ``key`` under ``uri`` for ``ttl_seconds``.

        Raises:
            ValueError: ``ttl_seconds`` is outside 1 s … 7 days.
            StoreNotConfiguredError: no object storage to sign for.
        """


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix without slashes at either end)."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def presign_ttl(ttl_seconds: int) -> timedelta:
    """``ttl_seconds`` as a validity period.

    Raises:
        ValueError: outside 1 s … 7 days (604800 s), the SigV4 limits.
    """
    if not 1 <= ttl_seconds <= MAX_PRESIGN_SECONDS:
        raise ValueError(
            f"a presigned URL lives 1 to {MAX_PRESIGN_SECONDS} seconds (7 days), not {ttl_seconds}"
        )
    return timedelta(seconds=ttl_seconds)


def retention_rule(days: int) -> Rule:
    """The operator's lifecycle rule: expire ``tab-jobs/…`` objects after ``days`` days."""
    return Rule(
        ENABLED,
        rule_filter=Filter(prefix=JOBS_PREFIX),
        rule_id=RETENTION_RULE_ID,
        expiration=Expiration(days=days),
    )


def retention_change(config: LifecycleConfig | None, days: int) -> list[Rule] | None:
    """The bucket's lifecycle rules after keeping ours at ``days`` (0: no rule of ours).

    Returns:
        ``None`` when nothing needs to change; otherwise the complete new rule list (empty:
        delete the bucket's lifecycle configuration). Rules with other ids are kept.
    """
    rules = list(config.rules) if config is not None else []
    others = [r for r in rules if r.rule_id != RETENTION_RULE_ID]
    ours = [r for r in rules if r.rule_id == RETENTION_RULE_ID]
    wanted = [retention_rule(days)] if days > 0 else []
    if ours == wanted:
        return None
    return others + wanted


def _client(endpoint: str, access_key: str, secret_key: str, region: str) -> Minio:
    """A client of ``endpoint`` (``http://host:port``, ``https://host`` or ``host``: HTTPS)."""
    parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
    # A region set here means the SDK never asks the server for a bucket's location, so
    # presigning needs no network.
    return Minio(
        parsed.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parsed.scheme == "https",
        region=region or "us-east-1",
    )


class S3Store:
    """S3/MinIO through the minio SDK, signed with the tenant store identity."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        region: str = "",
        *,
        retention_days: int = 0,
        public_endpoint: str = "",
    ) -> None:
        if retention_days < 0:
            raise ValueError(f"retention_days must be 0 (no rule) or more, not {retention_days}")
        self.client = _client(endpoint, access_key, secret_key, region)
        # Presigned URLs name the host they were signed for: users outside the cluster get
        # the public address (s3.publicEndpoint) when the operator's own is cluster-internal.
        self.presigner = (
            _client(public_endpoint, access_key, secret_key, region)
            if public_endpoint
            else self.client
        )
        self.retention_days = retention_days
        self._buckets: set[str] = set()
        self._lifecycle_supported = True
        self._lifecycle_warned = False

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if absent and keep its retention rule (remembered per process)."""
        if bucket in self._buckets:
            return
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        self._keep_retention(bucket)
        self._buckets.add(bucket)

    def _keep_retention(self, bucket: str) -> None:
        if not self._lifecycle_supported:
            return
        try:
            rules = retention_change(self.client.get_bucket_lifecycle(bucket), self.retention_days)
            if rules is None:
                return
            if rules:
                self.client.set_bucket_lifecycle(bucket, LifecycleConfig(rules))
            else:
                self.client.delete_bucket_lifecycle(bucket)
        except MinioException as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            if code == "NotImplemented":
                self._lifecycle_supported = False  # the same answer for every bucket
            if self._lifecycle_warned:
                log.debug("lifecycle rule of bucket %s not kept (%s)", bucket, code)
                return
            self._lifecycle_warned = True
            log.warning(
                "the object store refused the lifecycle rule of bucket %s (%s): objects under "
                "%s are not expired after %d days; set s3.outputRetentionDays: 0 to stop trying, "
                "or expire them with the store's own tools",
                bucket,
                code,
                JOBS_PREFIX,
                self.retention_days,
            )

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

    def list_keys(self, uri: str, prefix: str = "") -> list[str]:
        """Keys under ``uri`` starting with ``prefix``, relative to ``uri``, sorted."""
        bucket, root = split_uri(uri)
        base = f"{root}/" if root else ""
        keys: list[str] = []
        try:
            for obj in self.client.list_objects(bucket, prefix=base + prefix, recursive=True):
                name = obj.object_name
                if name is not None and not obj.is_dir:
                    keys.append(name[len(base) :])
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise
        return sorted(keys)

    def presign_get(self, uri: str, key: str, ttl_seconds: int) -> str:
        """Sign a GET of ``key`` under ``uri`` for ``ttl_seconds`` (locally, no request).

        The URL is a bearer credential: it goes into the job's download Secret only, never
        into a status, an annotation or a log.

        Raises:
            ValueError: ``ttl_seconds`` is outside 1 s … 7 days.
        """
        expires = presign_ttl(ttl_seconds)
        bucket, root = split_uri(uri)
        name = f"{root}/{key}" if root else key
        return self.presigner.presigned_get_object(bucket, name, expires=expires)


class NoStore:
    """No object storage configured: buckets are the platform's business, nothing to read."""

    def ensure_bucket(self, bucket: str) -> None:
        """Nothing to create."""

    def get_json(self, uri: str, key: str) -> dict[str, Any] | None:
        """Nothing to read."""
        return None

    def list_keys(self, uri: str, prefix: str = "") -> list[str]:
        """Nothing stored that the operator could see."""
        return []

    def presign_get(self, uri: str, key: str, ttl_seconds: int) -> str:
        """No identity to sign with.

        Raises:
            ValueError: ``ttl_seconds`` is outside 1 s … 7 days.
            StoreNotConfiguredError: always, for a valid ``ttl_seconds``.
        """
        presign_ttl(ttl_seconds)
        raise StoreNotConfiguredError(
            f"cannot sign a download of {uri}/{key}: the operator has no object-store "
            "credentials (set s3.existingSecret in the chart)"
        )
