"""Smoke tests of the local control plane: what the operator relies on behaves as in a cluster.

Real: etcd, kube-apiserver (RBAC, admission incl. PodSecurity, CRD pruning, status
subresource), kube-controller-manager (Job, garbage collector, service accounts), kube-scheduler.
Not real: containers are local processes started by tests/platform/node_agent.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

GROUP, VERSION, PLURAL = "smoke.aumos.test", "v1", "widgets"
TIMEOUT_S = 60.0


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = TIMEOUT_S, interval: float = 0.25
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        "the default ServiceAccount", lambda: core.read_namespaced_service_account("default", name)
    )
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def widget_crd(api: client.ApiClient) -> Iterator[None]:
    ext = client.ApiextensionsV1Api(api)
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        },
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)

    def established() -> bool:
        conds = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for("the CRD to be established", established)
    # Discovery lags the Established condition a little; wait until a list works.
    objects = client.CustomObjectsApi(api)
    wait_for(
        "the CRD to be served",
        lambda: objects.list_cluster_custom_object(GROUP, VERSION, PLURAL) is not None,
    )
    yield
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")


def test_crd_prunes_unknown_fields(api: client.ApiClient, widget_crd: None, namespace: str) -> None:
    objects = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3, "colour": "blue"},
    }
    # Run
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    # Assert
    assert created["spec"] == {"size": 3}


def test_status_subresource_ignores_status_on_the_main_resource(
    api: client.ApiClient, widget_crd: None, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "w2"},
        "spec": {"size": 1},
        "status": {"phase": "Bogus"},
    }
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert "status" not in created
    # Run
    created["status"] = {"phase": "Main"}
    replaced = objects.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w2", created
    )
    via_status = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w2", {"status": {"phase": "Ready"}}
    )
    # Assert
    assert "status" not in replaced
    assert via_status["status"] == {"phase": "Ready"}


def job_manifest(name: str, script: str, **pod_spec: Any) -> client.V1Job:
    container = client.V1Container(
        name="main",
        image="aumos/tabular-runner:test",
        command=["python", "-c", script],
        termination_message_path="/dev/termination-log",
    )
    spec = client.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        automount_service_account_token=False,
        **pod_spec,
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(spec=spec)),
    )


def job_pods(core: client.CoreV1Api, namespace: str, job: str) -> list[client.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def test_job_completes_and_reports_its_termination_message(
    api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    script = (
        "import json, os; "
        "open('/dev/termination-log', 'w').write(json.dumps({'rows': 42, 'ns': os.environ['NS']}))"
    )
    job = job_manifest("smoke", script)
    job.spec.template.spec.containers[0].env = [
        client.V1EnvVar(
            name="NS",
            value_from=client.V1EnvVarSource(
                field_ref=client.V1ObjectFieldSelector(field_path="metadata.namespace")
            ),
        )
    ]
    # Run
    batch.create_namespaced_job(namespace, job)
    done = wait_for(
        "the Job to complete",
        lambda: (batch.read_namespaced_job_status("smoke", namespace).status.succeeded or 0) >= 1,
    )
    # Assert
    assert done
    (pod,) = job_pods(core, namespace, "smoke")
    assert pod.spec.node_name == "aumos-cpu-node"
    assert pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0
    assert json.loads(term.message) == {"rows": 42, "ns": namespace}
    conds = {
        c.type: c.status
        for c in batch.read_namespaced_job_status("smoke", namespace).status.conditions
    }
    assert conds.get("Complete") == "True"


def test_failed_job_reports_exit_code(api: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job_manifest("fails", "import sys; sys.exit(3)"))
    wait_for(
        "the Job to fail",
        lambda: (batch.read_namespaced_job_status("fails", namespace).status.failed or 0) >= 1,
    )
    (pod,) = job_pods(core, namespace, "fails")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_deleting_the_owner_collects_the_job_and_its_pod(
    api: client.ApiClient, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    job = job_manifest("owned", "import time; time.sleep(300)")
    job.metadata.owner_references = [
        client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
        )
    ]
    batch.create_namespaced_job(namespace, job)
    wait_for(
        "the pod to run",
        lambda: [p for p in job_pods(core, namespace, "owned") if p.status.phase == "Running"],
    )
    # Run
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    # Assert
    wait_for("the Job to be collected", lambda: not batch.list_namespaced_job(namespace).items)
    wait_for("the pod to be collected", lambda: not job_pods(core, namespace, "owned"))


def test_restricted_namespace_rejects_a_privileged_pod(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name, labels={"pod-security.kubernetes.io/enforce": "restricted"}
            )
        )
    )
    try:
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="priv"),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="c",
                        image="python:3.11",
                        command=["true"],
                        security_context=client.V1SecurityContext(privileged=True),
                    )
                ]
            ),
        )
        with pytest.raises(ApiException) as err:
            core.create_namespaced_pod(name, pod)
        assert err.value.status == 403
        assert "violates PodSecurity" in err.value.body
    finally:
        core.delete_namespace(name)


def test_service_account_without_permissions_is_forbidden(
    api: client.ApiClient, namespace: str, sa_kubeconfig: Callable[..., Path]
) -> None:
    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    sa_api = client.CoreV1Api(
        config.new_client_from_config(config_file=str(sa_kubeconfig(namespace, "nobody")))
    )
    with pytest.raises(ApiException) as err:
        sa_api.list_namespaced_config_map(namespace)
    assert err.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in err.value.body


def test_gpu_pod_is_bound_and_runs(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    gpu = {"nvidia.com/gpu": "1"}
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="gpu"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            node_selector={"nvidia.com/gpu.present": "true"},
            tolerations=[
                client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
            ],
            containers=[
                client.V1Container(
                    name="train",
                    image="aumos/tabular-runner:test",
                    command=["python", "-c", "print('trained')"],
                    resources=client.V1ResourceRequirements(requests=gpu, limits=gpu),
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    done = wait_for(
        "the GPU pod to succeed",
        lambda: core.read_namespaced_pod("gpu", namespace).status.phase in ("Succeeded", "Failed"),
    )
    assert done
    got = core.read_namespaced_pod("gpu", namespace)
    assert got.spec.node_name == "aumos-gpu-node"
    assert got.status.phase == "Succeeded"


def test_unknown_image_fails_like_a_pull_error(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="nope"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="c", image="example.com/unknown:1")],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        "the pod to fail",
        lambda: core.read_namespaced_pod("nope", namespace).status.phase == "Failed",
    )
    waiting = core.read_namespaced_pod("nope", namespace).status.container_statuses[0].state.waiting
    assert waiting.reason == "ErrImagePull"


def test_init_container_then_env_from_secret_and_config_map(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="creds"), string_data={"key": "s3cret"}),
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"mode": "fast"}),
    )
    script = (
        "import os; open('/dev/termination-log', 'w')"
        ".write(os.environ['KEY'] + ',' + os.environ['MODE'] + ',' + open('marker').read())"
    )
    env = [
        client.V1EnvVar(
            name="KEY",
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name="creds", key="key")
            ),
        ),
        client.V1EnvVar(
            name="MODE",
            value_from=client.V1EnvVarSource(
                config_map_key_ref=client.V1ConfigMapKeySelector(name="cfg", key="mode")
            ),
        ),
    ]
    # Containers share the pod's working directory, so the init container can leave a file.
    init = client.V1Container(
        name="init",
        image="python:3.11",
        command=["python", "-c", "open('marker', 'w').write('init-ran')"],
    )
    main = client.V1Container(
        name="main", image="python:3.11", command=["python", "-c", script], env=env
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="withinit"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            init_containers=[init],
            containers=[main],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        "the pod to finish",
        lambda: (
            core.read_namespaced_pod("withinit", namespace).status.phase in ("Succeeded", "Failed")
        ),
    )
    got = core.read_namespaced_pod("withinit", namespace).status
    assert got.phase == "Succeeded"
    assert got.init_container_statuses[0].state.terminated.exit_code == 0
    assert got.container_statuses[0].state.terminated.message == "s3cret,fast,init-ran"


def test_on_failure_restarts_the_container(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    # Fails on the first run, succeeds on the second (the working directory persists).
    script = (
        "import os, sys\nif not os.path.exists('ran'):\n    open('ran', 'w').close(); sys.exit(1)\n"
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="flaky"),
        spec=client.V1PodSpec(
            restart_policy="OnFailure",
            automount_service_account_token=False,
            containers=[
                client.V1Container(name="c", image="python:3.11", command=["python", "-c", script])
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    wait_for(
        "the pod to succeed after a restart",
        lambda: core.read_namespaced_pod("flaky", namespace).status.phase == "Succeeded",
    )
    status = core.read_namespaced_pod("flaky", namespace).status.container_statuses[0]
    assert status.restart_count == 1
    assert status.state.terminated.exit_code == 0


def test_pod_failure_policy_fails_the_job_on_a_reserved_exit_code(
    api: client.ApiClient, namespace: str
) -> None:
    batch = client.BatchV1Api(api)
    job = job_manifest("permanent", "import sys; sys.exit(42)")
    job.spec.backoff_limit = 5
    job.spec.pod_failure_policy = client.V1PodFailurePolicy(
        rules=[
            client.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
                    operator="In", values=[42]
                ),
            )
        ]
    )
    batch.create_namespaced_job(namespace, job)

    def failed_condition() -> Any:
        conds = batch.read_namespaced_job_status("permanent", namespace).status.conditions or []
        return next((c for c in conds if c.type == "Failed" and c.status == "True"), None)

    cond = wait_for("the Job to fail by its pod failure policy", failed_condition)
    assert cond.reason == "PodFailurePolicy"
    assert (batch.read_namespaced_job_status("permanent", namespace).status.failed or 0) == 1


def test_ttl_after_finished_deletes_the_job(api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api)
    job = job_manifest("short-lived", "pass")
    job.spec.ttl_seconds_after_finished = 0
    batch.create_namespaced_job(namespace, job)
    wait_for(
        "the finished Job to be deleted", lambda: not batch.list_namespaced_job(namespace).items
    )
