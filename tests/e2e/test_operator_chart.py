"""The chart as a user installs it: helm, the operator as its Deployment's pod, the example.

``tests.platform.deploy.install`` (what ``make deploy-local`` runs) installs the chart with
helm into ``aumos-system``; the Deployment and ReplicaSet controllers make the operator pod,
the real scheduler binds it, the node agent runs it (``python -m kopf run … -m
tabular_operator.handlers`` from the chart, with a ServiceAccount token bound to the pod, so
the chart's ClusterRole is what it may do). Then ``kubectl apply -f`` of the UCI Adult cluster
example in a tenant namespace must end COMPLETE with the output and report in S3.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator_harness import (
    REPO,
    Cluster,
    built_image_id,
    kubectl_binary,
    wait_complete,
    wait_for,
)
from tests.platform import deploy, paths

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, kubeconfig: Path, s3_server: Any, datasets: dict[str, str], helm_bin: Path
) -> Iterator[str]:
    tenant = f"chart-{uuid.uuid4().hex[:6]}"
    deploy.install(deploy.Target(kubeconfig, s3_server), [tenant], timeout=300)
    yield tenant
    subprocess.run(
        [
            str(helm_bin),
            "uninstall",
            deploy.RELEASE,
            "--namespace",
            deploy.OPERATOR_NAMESPACE,
            "--kubeconfig",
            str(kubeconfig),
            "--wait",
            "--timeout",
            "120s",
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_operator_pod_from_the_chart_runs_the_adult_example(
    installed: str, cluster: Cluster, kubeconfig: Path, s3_client: Any, testenv: Any
) -> None:
    tenant = installed
    # Setup: the operator is the chart's pod, not a process of this test
    pods = cluster.core.list_namespaced_pod(deploy.OPERATOR_NAMESPACE).items
    operator = [p for p in pods if p.metadata.owner_references and p.status.phase == "Running"]
    assert len(operator) == 1, [(p.metadata.name, p.status.phase) for p in pods]
    assert operator[0].metadata.owner_references[0].kind == "ReplicaSet"

    # Run
    subprocess.run(
        [
            kubectl_binary(),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            tenant,
            "apply",
            "-f",
            str(REPO / "examples" / "cluster" / "adult-s3.yaml"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )

    # Assert
    job = wait_complete(cluster, tenant, "adult-gc-s3", timeout=900)
    status = job["status"]
    assert status["rowsGenerated"] == 10000 and status["fidelityScore"] >= 0.8
    prefix = f"tab-jobs/{job['metadata']['uid']}/"
    names = {
        o.object_name[len(prefix) :]
        for o in s3_client.list_objects(f"aumos-tab-{tenant}", prefix, recursive=True)
    }
    assert {"output.parquet", "report.json", "report.html", "model.pkl"} <= names
    # The stage pods ran as the chart's runner ServiceAccount, with no token mounted.
    runner_sa = {
        p.spec.service_account_name for p in cluster.stage_pods(tenant, job["metadata"]["uid"])
    }
    assert len(runner_sa) == 1 and next(iter(runner_sa)).endswith("-runner")
    if paths.image_mode():
        # make test-images: the operator and every stage ran inside the built images.
        ran = {
            c.image_id
            for p in [*cluster.stage_pods(tenant, job["metadata"]["uid"]), operator[0]]
            for c in cluster.core.read_namespaced_pod(
                p.metadata.name, p.metadata.namespace
            ).status.container_statuses
        }
        assert ran == {built_image_id("operator"), built_image_id("core")}
    wait_for(
        "the Complete event",
        lambda: "Complete" in {e.reason for e in cluster.events(tenant, "adult-gc-s3")},
        timeout=30,
    )
    # Its logs are JSON, and a job's lines name the job (namespace, name, uid).
    pod = operator[0].metadata
    log = (
        Path(testenv.state)
        / "agent"
        / "pods"
        / f"{pod.namespace}_{pod.name}_{pod.uid[:8]}"  # the node agent's pod folder
        / "operator.log"
    )
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    about_job = [r for r in lines if "adult-gc-s3-train" in r.get("message", "")]
    assert about_job, "no log line about the train Job"
    assert all(
        r["object"]["uid"] == job["metadata"]["uid"] and r["object"]["namespace"] == tenant
        for r in about_job
    )
