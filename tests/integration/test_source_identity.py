"""A stage reads its source with the source identity and writes artifacts with the store's.

What is real: SeaweedFS with least-privilege identities (the ``s3_tenants`` fixture): the
data lies in a datasets bucket that only the read-only ``datasets`` identity may read, and the
tenant's artifact bucket is reachable by the tenant's identity only. So a stage that succeeds
must have read with one identity and written with the other. The stage runs in this process
through ``tabular-runner stage`` with the variables a stage pod gets (``AUMOS_S3_*`` from the
tenant store Secret, ``AUMOS_SOURCE_S3_*`` from the job's ``secretRef``); Palmer penguins and
SDV's Gaussian copula are real. Nothing is mocked.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.error import S3Error

from tabular_runner import datasets
from tabular_runner.cli import main
from tabular_runner.multitable.run import load_tables
from tabular_runner.pipeline import StageContext
from tabular_runner.spec import MultiTableSchema
from tabular_runner.storage.s3 import S3Settings
from tests.platform.services import S3Identity, S3Tenants

pytestmark = pytest.mark.integration

STORE_KEYS = ("AUMOS_S3_ACCESS_KEY", "AUMOS_S3_SECRET_KEY")
SOURCE_KEYS = ("AUMOS_SOURCE_S3_ACCESS_KEY", "AUMOS_SOURCE_S3_SECRET_KEY")


def _client(s3: S3Tenants, identity: S3Identity | None = None) -> Minio:
    access, secret = (
        (identity.access_key, identity.secret_key)
        if identity
        else (s3.server.access_key, s3.server.secret_key)
    )
    return Minio(s3.server.endpoint, access, secret, secure=False, region=s3.server.region)


def _env(
    monkeypatch: pytest.MonkeyPatch, s3: S3Tenants, store: S3Identity, source: S3Identity | None
) -> None:
    """The variables of a stage pod: endpoint, store keys and (with a secretRef) source keys."""
    monkeypatch.setenv("AUMOS_S3_ENDPOINT", s3.server.url)
    monkeypatch.setenv("AUMOS_S3_REGION", s3.server.region)
    for name, value in zip(STORE_KEYS, (store.access_key, store.secret_key), strict=True):
        monkeypatch.setenv(name, value)
    for i, name in enumerate(SOURCE_KEYS):
        if source is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, (source.access_key, source.secret_key)[i])


@pytest.fixture(scope="module")
def penguins_uri(s3_tenants: S3Tenants) -> str:
    """Penguins as csv in the datasets bucket (put there by the admin)."""
    admin = _client(s3_tenants)
    if not admin.bucket_exists(s3_tenants.datasets_bucket):
        admin.make_bucket(s3_tenants.datasets_bucket)
    data = datasets.load("penguins").to_csv(index=False).encode()
    admin.put_object(s3_tenants.datasets_bucket, "penguins.csv", io.BytesIO(data), len(data))
    return f"s3://{s3_tenants.datasets_bucket}/penguins.csv"


@pytest.fixture(scope="module")
def tenant_bucket(s3_tenants: S3Tenants) -> str:
    """Tenant A's artifact bucket, created by tenant A's own identity (as the operator does)."""
    client = _client(s3_tenants, s3_tenants.tenant_a)
    if not client.bucket_exists(s3_tenants.bucket_a):
        client.make_bucket(s3_tenants.bucket_a)
    return s3_tenants.bucket_a


def _job(source_uri: str, secret: str | None = "penguins-reader") -> str:
    source: dict[str, Any] = {"uri": source_uri}
    if secret:
        source["secretRef"] = {"name": secret}
    return json.dumps(
        {
            "apiVersion": "tabular.aumos.io/v1alpha1",
            "kind": "SynthesisJob",
            "metadata": {"name": "penguins"},
            "spec": {"source": source, "generator": {"type": "gaussian_copula"}},
        }
    )


def _train(
    job_json: str, store: str, log: Path, schema_json: str | None = None
) -> tuple[int, dict[str, Any]]:
    """``tabular-runner stage train`` as a stage pod runs it; exit code and result."""
    argv = ["stage", "train", "--job-json", job_json, "--store", store]
    argv += ["--schema-json", schema_json] if schema_json else []
    code = main([*argv, "--termination-log", str(log)])
    return code, json.loads(log.read_text())


def test_identities_are_least_privilege(
    s3_tenants: S3Tenants, penguins_uri: str, tenant_bucket: str
) -> None:
    # The premise of the tests below: neither identity could do the other's part.
    with pytest.raises(S3Error) as read:
        _client(s3_tenants, s3_tenants.tenant_a).stat_object(
            s3_tenants.datasets_bucket, "penguins.csv"
        )
    with pytest.raises(S3Error) as write:
        _client(s3_tenants, s3_tenants.datasets).put_object(
            tenant_bucket, "probe", io.BytesIO(b"x"), 1
        )
    assert read.value.code in ("AccessDenied", "Forbidden")
    assert write.value.code == "AccessDenied"


def test_stage_reads_with_the_source_identity_and_writes_with_the_store_identity(
    s3_tenants: S3Tenants,
    penguins_uri: str,
    tenant_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Setup
    _env(monkeypatch, s3_tenants, store=s3_tenants.tenant_a, source=s3_tenants.datasets)
    prefix = f"tab-jobs/{uuid.uuid4()}"

    # Run
    code, result = _train(_job(penguins_uri), f"s3://{tenant_bucket}/{prefix}", tmp_path / "log")

    # Assert: the artifacts are in the tenant bucket, which only the store identity may write
    assert code == 0, result
    written = {
        o.object_name
        for o in _client(s3_tenants, s3_tenants.tenant_a).list_objects(
            tenant_bucket, prefix=f"{prefix}/", recursive=True
        )
    }
    assert {f"{prefix}/model.pkl", f"{prefix}/stages/train.json"} <= written
    assert result["rowsSource"] == len(datasets.load("penguins"))


SOURCE_REFUSALS = [
    # (id, source identity in the pod, secretRef of the job, words the hint must hold)
    ("store-identity-alone", None, None, ["artifact store's identity", "secretRef"]),
    (
        "wrong-source-identity",
        "tenant_b",
        "penguins-reader",
        ["AUMOS_SOURCE_S3_ACCESS_KEY", "Secret 'penguins-reader'"],
    ),
]


@pytest.mark.parametrize(
    ("source", "secret", "words"),
    [case[1:] for case in SOURCE_REFUSALS],
    ids=[case[0] for case in SOURCE_REFUSALS],
)
def test_a_source_the_identity_may_not_read_is_refused_naming_the_secret(
    s3_tenants: S3Tenants,
    penguins_uri: str,
    tenant_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    source: str | None,
    secret: str | None,
    words: list[str],
) -> None:
    # Setup
    identity = getattr(s3_tenants, source) if source else None
    _env(monkeypatch, s3_tenants, store=s3_tenants.tenant_a, source=identity)
    store = f"s3://{tenant_bucket}/tab-jobs/{uuid.uuid4()}"

    # Run
    code, result = _train(_job(penguins_uri, secret), store, tmp_path / "log")

    # Assert: a permanent input error naming the field, the object, the refusal and the fix
    assert (code, result["ok"], result["exitCode"]) == (2, False, 2)
    error = result["error"]
    assert error.startswith("spec.source.uri: ")
    assert penguins_uri in error and "AccessDenied" in error
    for word in words:
        assert word in error


def test_multi_table_sources_are_read_with_the_source_identity(
    s3_tenants: S3Tenants, penguins_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setup
    _env(monkeypatch, s3_tenants, store=s3_tenants.tenant_a, source=s3_tenants.datasets)
    schema = MultiTableSchema.model_validate(
        {
            "metadata": {"name": "zoo"},
            "spec": {
                "tables": [
                    {
                        "name": "penguins",
                        "source": {"uri": penguins_uri, "secretRef": {"name": "penguins-reader"}},
                    }
                ]
            },
        }
    )

    # Run
    frames, _ = load_tables(schema, StageContext(source_s3=S3Settings.source_from_env()))

    # Assert
    assert len(frames["penguins"]) == len(datasets.load("penguins"))


@pytest.mark.unit
def test_tables_naming_different_secrets_are_refused(tmp_path: Path) -> None:
    # Setup: no server is reached; the refusal comes first
    tables = [
        {"name": name, "source": {"uri": f"s3://data/{name}.csv", "secretRef": {"name": secret}}}
        for name, secret in (("users", "reader-a"), ("orders", "reader-b"))
    ]
    schema = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "MultiTableSchema",
        "metadata": {"name": "shop"},
        "spec": {"tables": tables},
    }
    job = {
        "apiVersion": "tabular.aumos.io/v1alpha1",
        "kind": "SynthesisJob",
        "metadata": {"name": "shop"},
        "spec": {"schemaRef": {"name": "shop"}, "generator": {"type": "auto"}, "scale": 1.0},
    }

    # Run
    code, result = _train(
        json.dumps(job), f"file://{tmp_path / 'store'}", tmp_path / "log", json.dumps(schema)
    )

    # Assert
    assert code == 2
    assert "reader-a, reader-b" in result["error"] and "one identity" in result["error"]
