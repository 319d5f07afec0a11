"""The stage Job builder: deterministic, owned, credential-free, failing fast on user errors."""

from __future__ import annotations

from typing import Any

import pytest

from tabular_operator.manifests import (
    StageSettings,
    artifact_store_uri,
    build_stage_job,
    stage_job_name,
)
from tabular_runner.spec import SynthesisJob

pytestmark = pytest.mark.unit

SETTINGS = StageSettings(
    images={"core": "aumos/tabular-runner:1-core", "argn": "aumos/tabular-runner:1-argn"},
    service_account="aumos-runner",
    s3_endpoint="http://minio.storage:9000",
    s3_secret_name="platform-s3",
)


def _job(**spec: Any) -> SynthesisJob:
    body: dict[str, Any] = {
        "source": {"uri": "s3://raw/adult.csv"},
        "generator": {"type": "gaussian_copula"},
        "rows": 100,
    }
    body.update(spec)
    return SynthesisJob.model_validate(
        {"metadata": {"name": "adult", "namespace": "team-a", "uid": "u-123"}, "spec": body}
    )


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _env(manifest: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(manifest)["env"]}


def test_same_input_same_manifest_and_deterministic_name() -> None:
    # Run
    first = build_stage_job(_job(), "train", SETTINGS)
    second = build_stage_job(_job(), "train", SETTINGS)

    # Assert
    assert first == second
    assert first["metadata"]["name"] == stage_job_name("adult", "train") == "adult-train"
    owner = first["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SynthesisJob", "u-123", True)


def test_permanent_exit_codes_fail_the_job_at_once() -> None:
    # Run
    spec = build_stage_job(_job(), "generate", SETTINGS)["spec"]

    # Assert
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2, 3]


def test_runner_pod_has_no_credentials_and_is_restricted() -> None:
    # Run
    manifest = build_stage_job(_job(), "validate", SETTINGS)
    pod = manifest["spec"]["template"]["spec"]

    # Assert
    assert pod["automountServiceAccountToken"] is False
    context = _container(manifest)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    env = _env(manifest)
    assert env["AUMOS_S3_SECRET_KEY"] == {
        "secretKeyRef": {"name": "platform-s3", "key": "secretKey"}
    }
    assert "secret" not in str(env["AUMOS_JOB_JSON"]).lower()


def _schema_reading_with(secret: str | None) -> dict[str, Any]:
    source: dict[str, Any] = {"uri": "s3://raw/orders.csv"}
    if secret:
        source["secretRef"] = {"name": secret}
    return {"kind": "MultiTableSchema", "spec": {"tables": [{"name": "orders", "source": source}]}}


SOURCE_REF = {"uri": "s3://raw/adult.csv", "secretRef": {"name": "team-a-s3"}}
IDENTITIES = [
    # (id, job source, schema, store Secret, AUMOS_S3_* Secret, AUMOS_SOURCE_S3_* Secret)
    ("store-only", None, None, "platform-s3", "platform-s3", None),
    ("source-ref", SOURCE_REF, None, "platform-s3", "platform-s3", "team-a-s3"),
    ("table-ref", None, _schema_reading_with("team-b"), "platform-s3", "platform-s3", "team-b"),
    ("tables-without-ref", None, _schema_reading_with(None), "platform-s3", "platform-s3", None),
    ("source-ref-no-store", SOURCE_REF, None, None, None, "team-a-s3"),
]


@pytest.mark.parametrize(
    ("source", "schema", "store_secret", "store_keys", "source_keys"),
    [case[1:] for case in IDENTITIES],
    ids=[case[0] for case in IDENTITIES],
)
def test_store_and_source_identities_stay_separate(
    source: dict[str, Any] | None,
    schema: dict[str, Any] | None,
    store_secret: str | None,
    store_keys: str | None,
    source_keys: str | None,
) -> None:
    # Setup
    job = _job(source=source) if source else _job()
    settings = StageSettings(
        images=SETTINGS.images,
        service_account="aumos-runner",
        s3_endpoint="http://minio.storage:9000",
        s3_region="eu-west-1",
        s3_secret_name=store_secret,
    )

    # Run
    env = _env(build_stage_job(job, "train", settings, schema=schema))

    # Assert: one server for both, two identities
    assert (env["AUMOS_S3_ENDPOINT"], env["AUMOS_S3_REGION"]) == (
        "http://minio.storage:9000",
        "eu-west-1",
    )
    for prefix, secret in (("AUMOS_S3", store_keys), ("AUMOS_SOURCE_S3", source_keys)):
        for name, key in (("ACCESS_KEY", "accessKey"), ("SECRET_KEY", "secretKey")):
            expected = {"secretKeyRef": {"name": secret, "key": key}} if secret else None
            assert env.get(f"{prefix}_{name}") == expected, f"{prefix}_{name}"


STAGE_IMAGES = [
    ("tabularargn", "train", "aumos/tabular-runner:1-argn"),
    ("tabularargn", "generate", "aumos/tabular-runner:1-argn"),
    ("tabularargn", "validate", "aumos/tabular-runner:1-core"),
    ("ctgan", "train", "aumos/tabular-runner:1-core"),
]


@pytest.mark.parametrize(
    ("generator", "stage", "image"), STAGE_IMAGES, ids=[f"{g}-{s}" for g, s, _ in STAGE_IMAGES]
)
def test_image_follows_the_engine_and_validation_runs_in_core(
    generator: str, stage: str, image: str
) -> None:
    # Run
    manifest = build_stage_job(_job(generator={"type": generator}), stage, SETTINGS)

    # Assert
    assert _container(manifest)["image"] == image
    assert _container(manifest)["command"] == ["tabular-runner", "stage", stage]


def test_gpu_node_selector_and_tolerations_reach_the_pod() -> None:
    # Setup
    resources = {
        "train": {
            "gpu": 1,
            "memory": "8Gi",
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        }
    }

    # Run
    manifest = build_stage_job(
        _job(generator={"type": "ctgan"}, resources=resources), "train", SETTINGS
    )

    # Assert
    pod = manifest["spec"]["template"]["spec"]
    assert _container(manifest)["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_queue_name_suspends_for_kueue_and_labels_the_job() -> None:
    # Run
    manifest = build_stage_job(_job(queueName="gpu-queue"), "train", SETTINGS)

    # Assert
    assert manifest["spec"]["suspend"] is True
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"


def test_store_is_per_tenant_bucket_and_job_uid() -> None:
    # The chart's default template names the tenant ({tenant}); {namespace} means the same.
    assert artifact_store_uri(_job(), SETTINGS) == "s3://aumos-tab-team-a/tab-jobs/u-123"
    legacy = StageSettings(
        images=SETTINGS.images, service_account="x", bucket_template="t-{namespace}"
    )
    assert artifact_store_uri(_job(), legacy) == "s3://t-team-a/tab-jobs/u-123"


@pytest.mark.parametrize("length", [40, 52, 63], ids=lambda n: f"job-name-{n}")
def test_child_names_stay_valid_and_distinct(length: int) -> None:
    base = ("a" * (length - 1)) + "b"
    other = ("a" * (length - 1)) + "c"
    for suffix in ("train", "generate", "validate", "train-argn"):
        name = stage_job_name(base, suffix)
        assert len(name) <= 63 and name.endswith(f"-{suffix}")
        assert name != stage_job_name(other, suffix)
        assert name == stage_job_name(base, suffix)  # deterministic


def test_handoff_job_runs_in_the_chosen_engine_under_its_own_name() -> None:
    manifest = build_stage_job(
        _job(generator={"type": "auto"}),
        "train",
        SETTINGS,
        generator="tabularargn",
        suffix="train-argn",
    )
    assert manifest["metadata"]["name"] == "adult-train-argn"
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-argn")
    assert manifest["metadata"]["labels"]["tabular.aumos.io/step"] == "train-argn"
    assert manifest["metadata"]["labels"]["tabular.aumos.io/job-uid"] == "u-123"


def test_default_requests_apply_when_the_job_sets_none() -> None:
    settings = StageSettings(
        images=SETTINGS.images, service_account="x", default_cpu="1", default_memory="2Gi"
    )
    plain = build_stage_job(_job(), "generate", settings)
    sized = build_stage_job(_job(resources={"generate": {"memory": "8Gi"}}), "generate", settings)
    res = plain["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert (
        sized["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
        == "8Gi"
    )


def test_multi_table_schema_travels_as_json() -> None:
    schema = {"kind": "MultiTableSchema", "spec": {"tables": []}}
    env = build_stage_job(_job(), "train", SETTINGS, schema=schema)["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert any(e["name"] == "AUMOS_SCHEMA_JSON" and '"MultiTableSchema"' in e["value"] for e in env)


def test_job_without_identity_or_unknown_stage_is_refused() -> None:
    # Setup
    anonymous = SynthesisJob.model_validate(
        _job().model_dump(by_alias=True) | {"metadata": {"name": "adult"}}
    )

    # Run / Assert
    with pytest.raises(ValueError, match="namespace and uid"):
        build_stage_job(anonymous, "train", SETTINGS)
    with pytest.raises(ValueError, match="unknown stage"):
        build_stage_job(_job(), "export", SETTINGS)
