"""Presigned downloads from a tenant bucket: they work, for their holder, for their time only.

What is real: SeaweedFS with least-privilege identities (the ``s3_tenants`` fixture: tenant A
and tenant B are each ``Admin`` of their own bucket only), the operator's ``S3Store`` signing
locally with the tenant store identity, and plain HTTP GETs (``urllib``) of the URLs, as a
user's browser or ``curl`` would make them. SeaweedFS 4.x checks the signature, the signer's
rights on the bucket and ``X-Amz-Expires`` on every presigned request. Nothing is mocked.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
import uuid

import pytest
from minio import Minio

from tabular_operator.store import S3Store
from tests.platform.services import S3Identity, S3Tenants

pytestmark = pytest.mark.integration

CSV = b"age,income\n39,52000\n50,83000\n"


def _store(s3: S3Tenants, identity: S3Identity) -> S3Store:
    return S3Store(s3.server.url, identity.access_key, identity.secret_key, s3.server.region)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def job_uri(s3_tenants: S3Tenants) -> str:
    """A finished job's store in tenant A's bucket, written with tenant A's identity."""
    _store(s3_tenants, s3_tenants.tenant_a).ensure_bucket(s3_tenants.bucket_a)
    client = Minio(
        s3_tenants.server.endpoint,
        s3_tenants.tenant_a.access_key,
        s3_tenants.tenant_a.secret_key,
        secure=False,
        region=s3_tenants.server.region,
    )
    prefix = f"tab-jobs/{uuid.uuid4()}"
    for key, data in (
        ("output.csv", CSV),
        ("report.json", b"{}"),
        ("stages/train.json", b"{}"),
    ):
        client.put_object(s3_tenants.bucket_a, f"{prefix}/{key}", io.BytesIO(data), len(data))
    return f"s3://{s3_tenants.bucket_a}/{prefix}"


def test_list_keys_names_what_a_job_left_relative_to_its_store(
    s3_tenants: S3Tenants, job_uri: str
) -> None:
    # Setup
    store = _store(s3_tenants, s3_tenants.tenant_a)

    # Run / Assert
    assert store.list_keys(job_uri) == ["output.csv", "report.json", "stages/train.json"]
    assert store.list_keys(job_uri, "stages/") == ["stages/train.json"]
    assert store.list_keys(f"s3://{s3_tenants.bucket_a}/tab-jobs/{uuid.uuid4()}") == []


def test_presigned_url_downloads_the_object(s3_tenants: S3Tenants, job_uri: str) -> None:
    # Run
    url = _store(s3_tenants, s3_tenants.tenant_a).presign_get(job_uri, "output.csv", 600)

    # Assert: no credential but the URL itself
    assert _get(url) == (200, CSV)
    assert s3_tenants.tenant_a.secret_key not in url


def test_url_with_another_tenants_key_is_refused(s3_tenants: S3Tenants, job_uri: str) -> None:
    # Setup
    url = _store(s3_tenants, s3_tenants.tenant_a).presign_get(job_uri, "output.csv", 600)
    swapped = url.replace(s3_tenants.tenant_a.access_key, s3_tenants.tenant_b.access_key)
    assert swapped != url

    # Run
    status, body = _get(swapped)

    # Assert
    assert status == 403
    assert b"SignatureDoesNotMatch" in body


def test_url_signed_by_another_tenant_is_refused(s3_tenants: S3Tenants, job_uri: str) -> None:
    # Run: tenant B signs for an object in tenant A's bucket (signing needs no request)
    url = _store(s3_tenants, s3_tenants.tenant_b).presign_get(job_uri, "output.csv", 600)

    # Assert
    status, body = _get(url)
    assert status == 403
    assert b"AccessDenied" in body


def test_url_stops_working_when_it_expires(s3_tenants: S3Tenants, job_uri: str) -> None:
    # Setup
    url = _store(s3_tenants, s3_tenants.tenant_a).presign_get(job_uri, "output.csv", 1)

    # Run
    time.sleep(2)
    status, body = _get(url)

    # Assert: refused for its age, not its signature
    assert status == 403
    assert b"Request has expired" in body


@pytest.mark.parametrize("ttl", [0, -5, 604801], ids=["zero", "negative", "past-7-days"])
def test_ttl_outside_one_second_to_seven_days_is_refused(
    s3_tenants: S3Tenants, job_uri: str, ttl: int
) -> None:
    store = _store(s3_tenants, s3_tenants.tenant_a)
    with pytest.raises(ValueError, match="1 to 604800 seconds"):
        store.presign_get(job_uri, "output.csv", ttl)
    assert "X-Amz-Expires=604800" in store.presign_get(job_uri, "output.csv", 604800)
