"""The operator on the real control plane: ``kubectl apply`` of a SynthesisJob ends in data.

What is real: see ``operator_harness`` (apiserver, Job/GC controllers, node-agent pods running
``tabular-runner stage``, SeaweedFS S3, the operator process). The data sets are the real
UCI Adult and Palmer penguins tables shipped in installed packages, uploaded to S3 here.

Jobs that do not depend on each other are applied together and checked one by one, so the
operator works on several at once (as it would on a cluster) and the tier stays short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.operator_harness import (
    REPO,
    Cluster,
    OperatorProcess,
    kubectl_binary,
    penguins_job,
    runner_processes,
    wait_complete,
    wait_for,
    wait_phase,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

minio = pytest.importorskip("minio")


def _example(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"].get("conditions", [])}


def _job_pods(cluster: Cluster, ns: str, uid: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in cluster.stage_pods(ns, uid):
        step = pod.metadata.labels.get("tabular.aumos.io/step", "?")
        counts[step] = counts.get(step, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(cluster: Cluster, tenant: str, operator: OperatorProcess) -> dict[str, dict[str, Any]]:
    """Every independent job of this module, applied at once."""
    jobs = _example(REPO / "examples" / "cluster" / "adult-s3.yaml")
    jobs += [_example(REPO / "examples" / "cluster" / "penguins-resample.yaml")[0]]
    jobs += [
        penguins_job(
            "missing-source",
            source={"uri": "s3://datasets/nope/missing.csv", "secretRef": {"name": "datasets-s3"}},
        ),
        penguins_job("strict-gate", qualityGate={"minFidelity": 0.999}),
        {
            "kind": "SynthesisJob",
            "metadata": {"name": "no-profile"},
            "spec": {
                "source": {"uri": "s3://datasets/penguins/penguins.csv"},
                "profileRef": {"name": "does-not-exist"},
            },
        },
        penguins_job("paused", suspend=True),
        # Names that exist only in another tenant's namespace (created below).
        penguins_job("foreign-profile", generator=None, profileRef={"name": "shared"}),
        penguins_job(
            "foreign-secret",
            source={"uri": "s3://datasets/penguins/penguins.csv", "secretRef": {"name": "shared"}},
        ),
        {
            "kind": "SynthesisJob",
            "metadata": {"name": "foreign-schema"},
            "spec": {"schemaRef": {"name": "shared"}, "generator": {"type": "hma"}},
        },
    ]
    other = cluster.namespace("other")
    cluster.secret(other, "shared", {"accessKey": "a", "secretKey": "b"})
    cluster.create(
        other,
        {
            "kind": "GenerationProfile",
            "metadata": {"name": "shared"},
            "spec": {"generator": {"type": "gaussian_copula"}},
        },
    )
    cluster.create(
        other,
        {
            "kind": "MultiTableSchema",
            "metadata": {"name": "shared"},
            "spec": {
                "tables": [{"name": "t", "source": {"uri": "s3://datasets/penguins/penguins.csv"}}]
            },
        },
    )
    for body in jobs:
        if body["spec"].get("generator", "") is None:
            del body["spec"]["generator"]
    created = {}
    for body in jobs:
        obj = cluster.create(tenant, body)
        created[obj["metadata"]["name"]] = obj
    return created


def test_adult_example_completes_with_outputs_status_and_events(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    s3_client: Any,
) -> None:
    # Run
    job = wait_complete(cluster, tenant, "adult-gc-s3", timeout=600, operator=operator)

    # Assert: status
    status = job["status"]
    assert status["rowsGenerated"] == 10000
    assert status["generator"] == "gaussian_copula"
    assert 0.8 <= status["fidelityScore"] <= 1.0
    assert 0.0 <= status["privacyRisk"] <= 0.2
    assert status["trainingTimeS"] > 0 and status["generationTimeS"] > 0
    assert status["observedGeneration"] == job["metadata"]["generation"]
    assert _conditions(job)["Ready"] == ("True", "Complete")
    assert _conditions(job)["Stalled"][0] == "False"
    uid = job["metadata"]["uid"]
    bucket, prefix = f"aumos-tab-{tenant}", f"tab-jobs/{uid}"
    assert status["output"]["uri"] == f"s3://{bucket}/{prefix}/output.parquet"
    # Assert: one Job and one pod per stage
    assert sorted(j.metadata.name for j in cluster.stage_jobs(tenant, uid)) == [
        "adult-gc-s3-generate",
        "adult-gc-s3-train",
        "adult-gc-s3-validate",
    ]
    assert _job_pods(cluster, tenant, uid) == {"train": 1, "generate": 1, "validate": 1}
    # Assert: the store holds what the status says
    names = {
        o.object_name.rsplit("/", 1)[-1]
        for o in s3_client.list_objects(bucket, prefix + "/", recursive=True)
    }
    assert {"output.parquet", "report.json", "report.html", "model.pkl"} <= names
    report = json.loads(s3_client.get_object(bucket, f"{prefix}/report.json").read())
    assert round(report["fidelityScore"], 4) == status["fidelityScore"]
    assert report["rowsGenerated"] == status["rowsGenerated"]
    # Assert: an Event per transition
    # (each Event is posted right after the status write it describes)
    wanted = {"Queued", "Training", "Generating", "Validating", "Complete"}
    wait_for(
        f"Events {sorted(wanted)}",
        lambda: wanted <= {e.reason for e in cluster.events(tenant, "adult-gc-s3")},
        timeout=30,
    )


def test_kubectl_get_shows_the_columns(
    cluster: Cluster, tenant: str, applied: dict[str, Any], kubeconfig: Path
) -> None:
    wait_phase(cluster, tenant, "adult-gc-s3", ["COMPLETE"], timeout=600)
    out = subprocess.run(
        [
            kubectl_binary(),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            tenant,
            "get",
            "sj",
            "adult-gc-s3",
            "-o",
            "wide",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    header, row = out[0].split(), out[1].split()
    assert header[:8] == [
        "NAME",
        "PHASE",
        "GENERATOR",
        "ROWS",
        "FIDELITY",
        "PRIVACY-RISK",
        "EPSILON",
        "AGE",
    ]
    assert row[:4] == ["adult-gc-s3", "COMPLETE", "gaussian_copula", "10000"]
    assert 0.8 <= float(row[4]) <= 1.0
    assert "complete" in " ".join(row)


def test_missing_source_fails_with_the_runners_message_and_one_pod(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    job = wait_phase(cluster, tenant, "missing-source", ["COMPLETE", "FAILED"], operator=operator)
    assert job["status"]["phase"] == "FAILED"
    assert "spec.source.uri" in job["status"]["errorMessage"]
    assert _conditions(job)["Stalled"] == ("True", "InvalidInput")
    # exit 2 is permanent: no retry, exactly one pod, and no later stage
    assert _job_pods(cluster, tenant, job["metadata"]["uid"]) == {"train": 1}
    assert "Traceback" not in job["status"]["errorMessage"]


def test_gate_failure_fails_with_scores(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    job = wait_phase(cluster, tenant, "strict-gate", ["COMPLETE", "FAILED"], operator=operator)
    status = job["status"]
    assert status["phase"] == "FAILED"
    assert _conditions(job)["Stalled"] == ("True", "GateFailed")
    assert 0 < status["fidelityScore"] < 0.999
    assert "gate" in status["errorMessage"]


def test_missing_profile_fails_naming_the_field(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    job = wait_phase(cluster, tenant, "no-profile", ["FAILED"], timeout=60, operator=operator)
    assert "spec.profileRef.name" in job["status"]["errorMessage"]
    assert _conditions(job)["Stalled"] == ("True", "InvalidSpec")
    assert cluster.stage_jobs(tenant, job["metadata"]["uid"]) == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("foreign-profile", "spec.profileRef.name: GenerationProfile 'shared' not found"),
        ("foreign-schema", "spec.schemaRef.name: MultiTableSchema 'shared' not found"),
        ("foreign-secret", 'secret "shared" not found'),
    ],
    ids=["profile", "schema", "secret"],
)
def test_a_tenant_never_reads_another_namespaces_objects(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    name: str,
    words: str,
) -> None:
    job = wait_phase(cluster, tenant, name, ["COMPLETE", "FAILED"], timeout=120, operator=operator)
    assert job["status"]["phase"] == "FAILED"
    assert words in job["status"]["errorMessage"]
    assert _conditions(job)["Stalled"] == ("True", "InvalidSpec")
    # nothing is left retrying
    wait_for(
        "no stage Job left",
        lambda: cluster.stage_jobs(tenant, job["metadata"]["uid"]) == [],
        timeout=60,
    )


def test_metrics_count_jobs_by_phase(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    import urllib.request

    wait_phase(cluster, tenant, "adult-gc-s3", ["COMPLETE"], timeout=600, operator=operator)
    port = operator.metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("aumos_")
    }
    assert values['aumos_synthesis_jobs{phase="COMPLETE"}'] >= 1
    assert values['aumos_synthesis_jobs{phase="FAILED"}'] >= 1
    assert values["aumos_reconciles_total"] > 0
    assert values['aumos_stage_duration_seconds_count{stage="train"}'] >= 1


def test_from_model_resamples_without_training(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    # Setup: the first job of the example trains
    first = wait_phase(cluster, tenant, "penguins-gc", ["COMPLETE", "FAILED"], operator=operator)
    assert first["status"]["phase"] == "COMPLETE", first["status"].get("errorMessage")

    # Run: the second re-samples its model
    cluster.create(tenant, _example(REPO / "examples" / "cluster" / "penguins-resample.yaml")[1])
    job = wait_phase(
        cluster, tenant, "penguins-gc-again", ["COMPLETE", "FAILED"], operator=operator
    )

    # Assert
    assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")
    assert job["status"]["rowsGenerated"] == 2000
    steps = {
        j.metadata.labels["tabular.aumos.io/step"]
        for j in cluster.stage_jobs(tenant, job["metadata"]["uid"])
    }
    assert steps == {"generate", "validate"}
    assert job["status"]["snapshot"]["spec"]["fromModel"]["uri"].endswith(first["metadata"]["uid"])


def test_from_model_seeds_and_rebalances_without_training(
    cluster: Cluster,
    tenant: str,
    applied: dict[str, Any],
    operator: OperatorProcess,
    s3_client: Any,
) -> None:
    import io

    import pandas as pd

    # Setup: the trained penguins model, and a seed table in S3 beside the source
    first = wait_phase(cluster, tenant, "penguins-gc", ["COMPLETE", "FAILED"], operator=operator)
    assert first["status"]["phase"] == "COMPLETE", first["status"].get("errorMessage")
    seed = pd.DataFrame(
        {"species": ["Gentoo"] * 40 + ["Adelie"] * 20, "island": ["Biscoe"] * 40 + ["Dream"] * 20}
    )
    body = seed.to_csv(index=False).encode()
    s3_client.put_object("datasets", "penguins/seed.csv", io.BytesIO(body), len(body))
    shares = {"Adelie": 0.2, "Chinstrap": 0.3, "Gentoo": 0.5}
    model = {"fromModel": {"jobName": "penguins-gc"}, "generator": {"type": "gaussian_copula"}}
    for name, generation, rows in (
        ("penguins-seeded", {"seed": {"uri": "s3://datasets/penguins/seed.csv"}}, None),
        ("penguins-rebalanced", {"rebalance": {"column": "species", "shares": shares}}, 300),
    ):
        spec = {**model, "generation": generation, "validation": {"attacks": 50}}
        if rows:
            spec["rows"] = rows
        cluster.create(tenant, {"kind": "SynthesisJob", "metadata": {"name": name}, "spec": spec})

    for name in ("penguins-seeded", "penguins-rebalanced"):
        # Run
        job = wait_phase(cluster, tenant, name, ["COMPLETE", "FAILED"], operator=operator)

        # Assert: generate and validate only, and the report says what came out
        assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")
        uid = job["metadata"]["uid"]
        steps = {
            j.metadata.labels["tabular.aumos.io/step"] for j in cluster.stage_jobs(tenant, uid)
        }
        assert steps == {"generate", "validate"}
        key = f"tab-jobs/{uid}/report.json"
        report = json.loads(s3_client.get_object(f"aumos-tab-{tenant}", key).read())
        if name == "penguins-seeded":
            assert job["status"]["rowsGenerated"] == 60
            assert report["generation"]["seed"]["honouredShare"] == 1.0
        else:
            assert job["status"]["rowsGenerated"] == 300
            assert report["generation"]["rebalance"]["achieved"] == shares
            assert "reweighted" in report["qualityReference"]


def test_suspended_job_waits_and_resumes(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    # Setup: created suspended
    wait_for(
        "the paused job to say it is suspended",
        lambda: (
            _conditions(cluster.get(tenant, "paused") or {"status": {}}).get("Reconciling")
            == ("True", "Suspended")
        ),
        timeout=60,
        operator=operator,
    )
    uid = applied["paused"]["metadata"]["uid"]
    time.sleep(3)
    assert cluster.stage_jobs(tenant, uid) == []

    # Run
    cluster.patch(tenant, "paused", {"spec": {"suspend": False}})

    # Assert
    job = wait_phase(cluster, tenant, "paused", ["COMPLETE", "FAILED"], operator=operator)
    assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")


def test_profile_is_snapshotted_at_start(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    # Setup
    cluster.create(
        tenant,
        {
            "kind": "GenerationProfile",
            "metadata": {"name": "fast-gc"},
            "spec": {"generator": {"type": "gaussian_copula"}, "validation": {"attacks": 50}},
        },
    )
    body = penguins_job("with-profile")
    del body["spec"]["generator"]
    body["spec"]["profileRef"] = {"name": "fast-gc"}
    cluster.create(tenant, body)
    wait_phase(
        cluster,
        tenant,
        "with-profile",
        ["TRAINING", "GENERATING", "VALIDATING", "COMPLETE"],
        operator=operator,
    )

    # Run: the profile changes while the job runs
    cluster.custom.patch_namespaced_custom_object(
        "tabular.aumos.io",
        "v1alpha1",
        tenant,
        "generationprofiles",
        "fast-gc",
        {"spec": {"generator": {"type": "tvae", "params": {"epochs": 1}}}},
    )

    # Assert: the job keeps what it snapshotted, and says so
    job = wait_phase(cluster, tenant, "with-profile", ["COMPLETE", "FAILED"], operator=operator)
    assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")
    assert job["status"]["generator"] == "gaussian_copula"
    assert job["status"]["snapshot"]["profile"]["name"] == "fast-gc"
    wait_for(
        "a ProfileChanged event (or the job finished first)",
        lambda: (
            "ProfileChanged" in {e.reason for e in cluster.events(tenant, "with-profile")}
            or job["status"]["phase"] == "COMPLETE"
        ),
        timeout=30,
    )
    profile = wait_for(
        "the profile's status",
        lambda: (
            (cluster.get(tenant, "fast-gc", "generationprofiles") or {})
            .get("status", {})
            .get("usedBy")
        ),
        timeout=60,
    )
    assert profile == 1


def test_delete_during_training_cleans_up_within_30s(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    # Setup: a slow training (CTGAN, many epochs) that is running
    obj = cluster.create(
        tenant, penguins_job("to-delete", generator={"type": "ctgan", "params": {"epochs": 3000}})
    )
    uid = obj["metadata"]["uid"]
    wait_for(
        "its train process", lambda: runner_processes(uid, "train"), timeout=240, operator=operator
    )
    # the epochs show in status while it trains (the runner writes them into the store)
    wait_for(
        "an epoch in status.message",
        lambda: (
            "epoch"
            in ((cluster.get(tenant, "to-delete") or {}).get("status") or {}).get("message", "")
        ),
        timeout=120,
        operator=operator,
    )

    # Run
    started = time.monotonic()
    cluster.delete(tenant, "to-delete")

    # Assert
    wait_for(
        "the SynthesisJob to be gone",
        lambda: cluster.get(tenant, "to-delete") is None,
        timeout=30,
        operator=operator,
    )
    wait_for("its stage Jobs to be gone", lambda: cluster.stage_jobs(tenant, uid) == [], timeout=30)
    wait_for("its pods to be gone", lambda: cluster.stage_pods(tenant, uid) == [], timeout=60)
    wait_for("its processes to end", lambda: runner_processes(uid, "train") == [], timeout=60)
    assert time.monotonic() - started < 90


def test_killed_stage_pod_is_retried_and_completes(
    cluster: Cluster, tenant: str, applied: dict[str, Any], operator: OperatorProcess
) -> None:
    # Setup: a training long enough to be killed mid-way
    obj = cluster.create(
        tenant, penguins_job("killed-once", generator={"type": "ctgan", "params": {"epochs": 40}})
    )
    uid = obj["metadata"]["uid"]
    pids = wait_for(
        "its train process", lambda: runner_processes(uid, "train"), timeout=240, operator=operator
    )

    # Run: SIGKILL, as the OOM killer would
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    # Assert
    job = wait_phase(
        cluster, tenant, "killed-once", ["COMPLETE", "FAILED"], timeout=600, operator=operator
    )
    assert job["status"]["phase"] == "COMPLETE", job["status"].get("errorMessage")
    train = next(
        j for j in cluster.stage_jobs(tenant, uid) if j.metadata.name == "killed-once-train"
    )
    assert train.status.failed == 1 and train.status.succeeded == 1
    assert job["status"].get("retries") == 1
    assert "StageRetried" in {e.reason for e in cluster.events(tenant, "killed-once")}
