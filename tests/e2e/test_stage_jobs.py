"""The stage Jobs the operator will create are accepted by a real kube-apiserver.

Server-side dry run (full validation and admission, nothing persisted) of every stage of a
GPU job and of a TabularARGN job, in a namespace that enforces Pod Security ``restricted``:
the apiserver must raise no error and no Pod Security warning.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tabular_operator.manifests import StageSettings, build_stage_job
from tabular_runner.spec import SynthesisJob

pytestmark = pytest.mark.e2e

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402

SETTINGS = StageSettings(
    images={"core": "aumos/tabular-runner:1-core", "argn": "aumos/tabular-runner:1-argn"},
    service_account="aumos-runner",
    s3_endpoint="http://seaweedfs.storage:8333",
    s3_secret_name="platform-s3",
)


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def restricted_namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"stages-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)


JOBS = [
    (
        "ctgan-gpu",
        {
            "generator": {"type": "ctgan"},
            "resources": {
                "train": {
                    "gpu": 1,
                    "memory": "8Gi",
                    "nodeSelector": {"accelerator": "nvidia"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                }
            },
        },
    ),
    ("argn-queued", {"generator": {"type": "tabularargn"}, "queueName": "batch"}),
]


@pytest.mark.parametrize("stage", ["train", "generate", "validate"])
@pytest.mark.parametrize(("label", "spec"), JOBS, ids=[j[0] for j in JOBS])
def test_stage_job_passes_server_side_validation(
    api: client.ApiClient, restricted_namespace: str, label: str, spec: dict, stage: str
) -> None:
    # Setup
    job = SynthesisJob.model_validate(
        {
            "metadata": {
                "name": label,
                "namespace": restricted_namespace,
                "uid": str(uuid.uuid4()),
            },
            "spec": {"source": {"uri": "s3://raw/adult.csv"}, "rows": 100, **spec},
        }
    )
    manifest = build_stage_job(job, stage, SETTINGS)

    # Run
    created, _, headers = client.BatchV1Api(api).create_namespaced_job_with_http_info(
        restricted_namespace, manifest, dry_run="All"
    )

    # Assert
    assert created.metadata.name == f"{label}-{stage}"
    assert created.spec.pod_failure_policy.rules[0].on_exit_codes.values == [2, 3]
    assert created.spec.template.spec.automount_service_account_token is False
    # Pod Security admission reports a Job template that breaks `restricted` as a warning.
    assert "violate PodSecurity" not in str(headers.get("Warning", ""))
