"""Tenant buckets expire job artifacts by a lifecycle rule the operator keeps.

What is real: SeaweedFS with least-privilege identities (the ``s3_tenants`` fixture) and the
operator's ``S3Store``. SeaweedFS 4.x implements ``PutBucketLifecycleConfiguration`` (it
needs ``Write`` on the bucket) and returns the rule unchanged from
``GetBucketLifecycleConfiguration``, so these tests read the rule back. Whether SeaweedFS
then deletes expired objects on time is its business and is not waited for here (days). A
server that does not implement lifecycle configuration is covered in
``tests/unit/test_store.py`` (a local HTTP server answering ``NotImplemented``).
"""

from __future__ import annotations

import logging

import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from tabular_operator.store import JOBS_PREFIX, RETENTION_RULE_ID, S3Store
from tests.platform.services import S3Identity, S3Tenants

pytestmark = pytest.mark.integration

OTHER_RULE = Rule(
    ENABLED, rule_filter=Filter(prefix="scratch/"), rule_id="scratch", expiration=Expiration(days=1)
)


def _store(s3: S3Tenants, identity: S3Identity, days: int) -> S3Store:
    return S3Store(s3.server.url, identity.access_key, identity.secret_key, retention_days=days)


def _rules(store: S3Store, bucket: str) -> dict[str, tuple[str | None, int | None]]:
    config = store.client.get_bucket_lifecycle(bucket)
    rules = config.rules if config is not None else []
    return {
        str(r.rule_id): (
            r.rule_filter.prefix if r.rule_filter else None,
            r.expiration.days if r.expiration else None,
        )
        for r in rules
    }


def test_retention_rule_is_set_changed_and_removed_beside_other_rules(
    s3_tenants: S3Tenants,
) -> None:
    # Setup: tenant B's bucket, created by the operator's store with a 30-day rule
    bucket = s3_tenants.bucket_b
    first = _store(s3_tenants, s3_tenants.tenant_b, 30)
    first.ensure_bucket(bucket)
    assert _rules(first, bucket) == {RETENTION_RULE_ID: (JOBS_PREFIX, 30)}
    # someone else's rule on the same bucket
    config = first.client.get_bucket_lifecycle(bucket)
    assert config is not None
    first.client.set_bucket_lifecycle(bucket, LifecycleConfig([OTHER_RULE, *config.rules]))

    # Run / Assert: an operator restarted with 7 days changes its rule only
    changed = _store(s3_tenants, s3_tenants.tenant_b, 7)
    changed.ensure_bucket(bucket)
    assert _rules(changed, bucket) == {
        "scratch": ("scratch/", 1),
        RETENTION_RULE_ID: (JOBS_PREFIX, 7),
    }

    # Run / Assert: 0 days removes its rule and leaves the other
    off = _store(s3_tenants, s3_tenants.tenant_b, 0)
    off.ensure_bucket(bucket)
    assert _rules(off, bucket) == {"scratch": ("scratch/", 1)}


def test_a_refused_rule_keeps_the_bucket_and_logs_one_warning(
    s3_tenants: S3Tenants, caplog: pytest.LogCaptureFixture
) -> None:
    # Setup: a bucket the store identity may read but not configure (no Write)
    admin = Minio(
        s3_tenants.server.endpoint,
        s3_tenants.server.access_key,
        s3_tenants.server.secret_key,
        secure=False,
    )
    if not admin.bucket_exists(s3_tenants.datasets_bucket):
        admin.make_bucket(s3_tenants.datasets_bucket)
    store = _store(s3_tenants, s3_tenants.datasets, 30)

    # Run
    with caplog.at_level(logging.DEBUG, logger="tabular_operator.store"):
        store.ensure_bucket(s3_tenants.datasets_bucket)

    # Assert
    assert store.client.bucket_exists(s3_tenants.datasets_bucket)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "AccessDenied" in warnings[0].getMessage()
    assert s3_tenants.datasets_bucket in warnings[0].getMessage()
