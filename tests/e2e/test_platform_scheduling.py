"""The platform's scheduling and health checking are Kubernetes' own, not stand-ins.

Real: kube-scheduler (default profile) places pods on the node agent's two nodes
(``aumos-cpu-node``; ``aumos-gpu-node`` with ``nvidia.com/gpu: 1`` and a NoSchedule taint);
kube-controller-manager's deployment and replicaset controllers turn a Deployment into a pod;
kstatus (sigs.k8s.io/cli-utils, Flux's health checker) judges objects. Not real: the containers
are local processes (tests/platform/node_agent.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.platform import agent_logic

pytestmark = pytest.mark.e2e

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402

from tests.e2e.test_platform_smoke import wait_for  # noqa: E402

CPU_NODE, GPU_NODE = agent_logic.CPU_NODE, agent_logic.GPU_NODE
GPU = {"nvidia.com/gpu": "1"}
GPU_TOLERATION = client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def kstatus(binary: Path, obj: dict[str, Any]) -> dict[str, str]:
    out = subprocess.run(
        [str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30, check=True
    )
    verdict: dict[str, str] = json.loads(out.stdout)
    return verdict


# --------------------------------------------------------------------------- kstatus alone


def widget(generation: int, observed: int, *conditions: tuple[str, str, str]) -> dict[str, Any]:
    """A custom resource as a controller would leave it (kstatus has no rule of its own for it)."""
    return {
        "apiVersion": "batch.aumos.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "ns", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": t, "status": s, "reason": "Test", "message": m} for t, s, m in conditions
            ],
        },
    }


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "generation": 1},
        "spec": {"completions": 1, "parallelism": 1},
        "status": {
            "startTime": "2024-01-01T00:00:00Z",
            "conditions": [{"type": t, "status": s} for t, s in conditions],
        },
    }


@pytest.mark.parametrize(
    ("obj", "status", "in_message"),
    [
        (widget(2, 2, ("Ready", "True", "all good")), "Current", ""),
        (widget(2, 2, ("Ready", "False", "warming up")), "InProgress", "warming up"),
        (widget(3, 3, ("Stalled", "True", "quota exceeded")), "Failed", "quota exceeded"),
        (widget(3, 3, ("Reconciling", "True", "rolling")), "InProgress", "rolling"),
        (widget(3, 2, ("Ready", "True", "stale")), "InProgress", "generation is 3"),
        (job(("Complete", "True")), "Current", ""),
        (job(("Failed", "True")), "Failed", ""),
    ],
    ids=[
        "ready",
        "not-ready",
        "stalled",
        "reconciling",
        "observed-generation-behind",
        "job-complete",
        "job-failed",
    ],
)
def test_kstatus_judges_hand_written_objects(
    kstatus_bin: Path, obj: dict[str, Any], status: str, in_message: str
) -> None:
    got = kstatus(kstatus_bin, obj)
    assert got["status"] == status, got
    assert in_message in got["message"]


def test_kstatus_rejects_what_is_not_an_object(kstatus_bin: Path) -> None:
    out = subprocess.run([str(kstatus_bin)], input="[1, 2]", capture_output=True, text=True)
    assert out.returncode != 0
    assert "decoding the object" in out.stderr


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def nodes(api: client.ApiClient) -> dict[str, client.V1Node]:
    found = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    if not {CPU_NODE, GPU_NODE} <= set(found):
        pytest.skip(f"the cluster has no {CPU_NODE}/{GPU_NODE} (not the local platform)")
    return found


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"sched-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        "the default ServiceAccount", lambda: core.read_namespaced_service_account("default", name)
    )
    yield name
    core.delete_namespace(name)


def bare_pod(
    name: str,
    script: str = "pass",
    *,
    requests: dict[str, str] | None = None,
    tolerations: list[client.V1Toleration] | None = None,
) -> client.V1Pod:
    resources = client.V1ResourceRequirements(requests=requests, limits=requests)
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            tolerations=tolerations,
            containers=[
                client.V1Container(
                    name="c",
                    image="python:3.11",
                    command=["python", "-c", script],
                    resources=resources if requests else None,
                )
            ],
        ),
    )


def scheduled_condition(core: client.CoreV1Api, name: str, namespace: str) -> Any:
    conds = core.read_namespaced_pod(name, namespace).status.conditions or []
    return next((c for c in conds if c.type == "PodScheduled"), None)


def test_both_nodes_are_ready_and_share_this_machine(nodes: dict[str, client.V1Node]) -> None:
    memory = agent_logic.meminfo_total(Path("/proc/meminfo").read_text())
    cpu, gpu = nodes[CPU_NODE], nodes[GPU_NODE]
    for node in (cpu, gpu):
        conds = {c.type: c.status for c in node.status.conditions}
        assert conds["Ready"] == "True"
        assert agent_logic.parse_quantity(node.status.capacity["cpu"]) == os.cpu_count()
        assert agent_logic.parse_quantity(node.status.capacity["memory"]) == memory
    total_cpu = sum(agent_logic.parse_quantity(n.status.allocatable["cpu"]) for n in (cpu, gpu))
    total_mem = sum(agent_logic.parse_quantity(n.status.allocatable["memory"]) for n in (cpu, gpu))
    assert total_cpu <= (os.cpu_count() or 1)
    assert total_mem <= memory
    assert gpu.status.allocatable["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in cpu.status.allocatable
    assert [(t.key, t.value, t.effect) for t in gpu.spec.taints] == [
        ("nvidia.com/gpu", "present", "NoSchedule")
    ]
    assert not cpu.spec.taints
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"


def test_plain_pods_land_on_the_cpu_node_never_on_the_tainted_gpu_node(
    api: client.ApiClient, nodes: dict[str, client.V1Node], namespace: str
) -> None:
    core = client.CoreV1Api(api)
    names = [f"plain-{i}" for i in range(4)]
    for name in names:
        core.create_namespaced_pod(namespace, bare_pod(name))

    def phases() -> list[str]:
        return [core.read_namespaced_pod(n, namespace).status.phase for n in names]

    wait_for("the pods to succeed", lambda: phases() == ["Succeeded"] * len(names))
    placed = {name: core.read_namespaced_pod(name, namespace).spec.node_name for name in names}
    assert placed == dict.fromkeys(names, CPU_NODE)


def test_gpu_pods_take_the_one_gpu_in_turn(
    api: client.ApiClient, nodes: dict[str, client.V1Node], namespace: str
) -> None:
    core = client.CoreV1Api(api)
    first = bare_pod(
        "gpu-a", "import time; time.sleep(300)", requests=GPU, tolerations=[GPU_TOLERATION]
    )
    core.create_namespaced_pod(namespace, first)
    wait_for(
        "the first GPU pod to run",
        lambda: core.read_namespaced_pod("gpu-a", namespace).status.phase == "Running",
    )
    assert core.read_namespaced_pod("gpu-a", namespace).spec.node_name == GPU_NODE
    # Run: a second GPU pod while the only GPU is taken.
    core.create_namespaced_pod(
        namespace, bare_pod("gpu-b", requests=GPU, tolerations=[GPU_TOLERATION])
    )
    cond = wait_for(
        "the scheduler to report the second GPU pod unschedulable",
        lambda: (c := scheduled_condition(core, "gpu-b", namespace)) and c.status == "False" and c,
    )
    # Assert: the scheduler's own verdict, naming both nodes' reasons.
    assert cond.reason == "Unschedulable"
    assert "0/2 nodes are available" in cond.message
    assert "Insufficient nvidia.com/gpu" in cond.message
    assert core.read_namespaced_pod("gpu-b", namespace).spec.node_name is None
    # Run: free the GPU; the scheduler retries the waiting pod on the pod's deletion.
    core.delete_namespaced_pod("gpu-a", namespace, grace_period_seconds=1)
    wait_for(
        "the second GPU pod to succeed once the GPU is free",
        lambda: core.read_namespaced_pod("gpu-b", namespace).status.phase == "Succeeded",
    )
    assert core.read_namespaced_pod("gpu-b", namespace).spec.node_name == GPU_NODE


def test_gpu_request_without_toleration_is_unschedulable(
    api: client.ApiClient, nodes: dict[str, client.V1Node], namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, bare_pod("gpu-untolerated", requests=GPU))
    cond = wait_for(
        "the scheduler's verdict",
        lambda: (
            (c := scheduled_condition(core, "gpu-untolerated", namespace))
            and c.status == "False"
            and c
        ),
    )
    assert cond.reason == "Unschedulable"
    # 1.34 words it without the taint; the GPU node is the only tainted one.
    assert "1 node(s) had untolerated taint" in cond.message
    assert "1 Insufficient nvidia.com/gpu" in cond.message  # the CPU node has none


def test_a_pod_bigger_than_any_node_stays_pending(
    api: client.ApiClient, nodes: dict[str, client.V1Node], namespace: str
) -> None:
    core = client.CoreV1Api(api)
    biggest = max(
        agent_logic.parse_quantity(n.status.allocatable["memory"]) for n in nodes.values()
    )
    too_much = f"{int(biggest) // 2**20 + 1024}Mi"
    core.create_namespaced_pod(
        namespace,
        bare_pod("huge", requests={"memory": too_much}, tolerations=[GPU_TOLERATION]),
    )
    cond = wait_for(
        "the scheduler's verdict",
        lambda: (c := scheduled_condition(core, "huge", namespace)) and c.status == "False" and c,
    )
    assert cond.reason == "Unschedulable"
    assert "0/2 nodes are available: 2 Insufficient memory" in cond.message
    time.sleep(2)  # and it stays so: nothing binds or runs it
    pod = core.read_namespaced_pod("huge", namespace)
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"


def test_deployment_gets_its_pod_and_kstatus_calls_it_current(
    api: client.ApiClient, nodes: dict[str, client.V1Node], namespace: str, kstatus_bin: Path
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "sleeper"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="sleeper"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    automount_service_account_token=False,
                    containers=[
                        client.V1Container(
                            name="c",
                            image="python:3.11",
                            command=["python", "-c", "import time; time.sleep(600)"],
                        )
                    ],
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)

    def verdict() -> dict[str, str]:
        obj = api.sanitize_for_serialization(apps.read_namespaced_deployment("sleeper", namespace))
        return kstatus(kstatus_bin, {"apiVersion": "apps/v1", "kind": "Deployment", **obj})

    first = verdict()
    assert first["status"] == "InProgress", first
    wait_for("kstatus to call the Deployment Current", lambda: verdict()["status"] == "Current")
    pods = core.list_namespaced_pod(namespace, label_selector="app=sleeper").items
    assert [(p.spec.node_name, p.status.phase) for p in pods] == [(CPU_NODE, "Running")]
    owner = pods[0].metadata.owner_references[0]
    assert owner.kind == "ReplicaSet"
    assert apps.read_namespaced_replica_set(owner.name, namespace).status.ready_replicas == 1
