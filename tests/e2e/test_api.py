"""The API on a real kube-apiserver: CRDs, CEL rules, the spec lock, printer columns, chart.

What is real: kube-apiserver and etcd of the test platform (``kubeconfig`` fixture of
``tests/platform/plugin.py``), ``kubectl``, the generated ``crds/`` and the Helm chart. No
operator runs here: status is written by the test through the status subresource, exactly as
the operator would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tabular_runner import crdgen
from tests.unit.test_chart import FULL_VALUES, NO_SCHEMA_KINDS, helm_template
from tests.unit.test_crds import INVALID_CASES, VALID_DP_JOB, VALID_JOB, Invalid

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

pytestmark = pytest.mark.e2e


@dataclass
class Kubectl:
    """``kubectl`` bound to the session's admin kubeconfig."""

    binary: str
    kubeconfig: Path

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc


def _kubectl_binary() -> str:
    try:
        from tests.platform import paths

        candidate = paths.k8s_dir() / "bin" / "kubectl"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - the platform package is part of the repo
        pass
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not found; `make testenv` builds it")
    return found


@pytest.fixture(scope="module")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(_kubectl_binary(), kubeconfig)


@pytest.fixture(scope="module")
def api(kubectl: Kubectl) -> None:
    """Install crds/ (CRDs and the spec-lock policy) and wait until the CRDs are served."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=180s",  # generous: a loaded 2-core machine has taken more than 60 s
        *[f"crd/{kind.crd_name}" for kind in crdgen.KINDS],
    )


def _namespace(kubectl: Kubectl, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}},
    }
    kubectl("create", "-f", "-", stdin=json.dumps(doc))
    return name


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl, api: None) -> Iterator[str]:
    name = _namespace(kubectl, "api")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _apply(
    kubectl: Kubectl, namespace: str, doc: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc), check=False)


def _named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc["metadata"]["name"] = name
    return doc


# ---------------------------------------------------------------------------------------


def test_crds_are_established_with_names_and_category(kubectl: Kubectl, api: None) -> None:
    for kind in crdgen.KINDS:
        # Run
        crd = json.loads(kubectl("get", f"crd/{kind.crd_name}", "-o", "json").stdout)

        # Assert
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
        assert crd["spec"]["names"]["shortNames"] == list(kind.short_names)
        assert crd["spec"]["names"]["categories"] == ["aumos"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_applies(kubectl: Kubectl, namespace: str, path: Path) -> None:
    # Setup
    expected = [
        (d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(path.read_text()) if d
    ]

    # Run
    kubectl("apply", "-n", namespace, "-f", str(path))
    stored = json.loads(kubectl("get", "-n", namespace, "-f", str(path), "-o", "json").stdout)

    # Assert
    items = stored.get("items", [stored])  # one object comes back bare, several as a List
    assert [(i["kind"], i["metadata"]["name"]) for i in items] == expected


def test_category_lists_every_kind(kubectl: Kubectl, namespace: str) -> None:
    # Setup
    for path in EXAMPLES:
        kubectl("apply", "-n", namespace, "-f", str(path))

    # Run
    listed = json.loads(kubectl("get", "aumos", "-n", namespace, "-o", "json").stdout)

    # Assert
    assert {i["kind"] for i in listed["items"]} == {k.kind for k in crdgen.KINDS}


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda c: c.id)
def test_invalid_manifest_is_refused_by_the_apiserver(
    kubectl: Kubectl, namespace: str, case: Invalid
) -> None:
    # Setup
    doc = case.manifest()

    # Run
    proc = _apply(kubectl, namespace, doc)

    # Assert
    assert proc.returncode != 0, f"accepted: {json.dumps(doc)}"
    assert case.message in proc.stderr, proc.stderr


LOCKS = {
    "phase-training": ({"phase": "TRAINING"}, "phase TRAINING"),
    "budget-allocated": (
        {"phase": "QUEUED", "allocationId": "alloc-1"},
        "a privacy budget was allocated",
    ),
}


@pytest.mark.parametrize("lock", LOCKS, ids=list(LOCKS))
def test_spec_is_frozen_once_training_started_except_suspend(
    kubectl: Kubectl, namespace: str, lock: str
) -> None:
    # Setup
    status, why = LOCKS[lock]
    name = f"locked-{lock}"
    assert _apply(kubectl, namespace, _named(VALID_JOB, name)).returncode == 0
    before = kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"rows":200}}',
        check=False,
    )
    kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    # Run: the policy may take a moment to be loaded after crds/ was applied.
    deadline = time.monotonic() + 30
    rows = 300
    while True:
        after = kubectl(
            "patch",
            "sj",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"rows": rows}}),
            check=False,
        )
        if after.returncode != 0 or time.monotonic() > deadline:
            break
        rows += 1
        time.sleep(1)
    suspend = kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
        check=False,
    )

    # Assert
    assert before.returncode == 0, before.stderr  # not started yet: the spec may change
    assert after.returncode != 0, "the spec-lock policy never refused a change"
    assert f"spec.rows cannot change once training has started ({why})" in after.stderr, (
        after.stderr
    )
    assert suspend.returncode == 0, suspend.stderr


def test_printer_columns_through_the_table_api(
    kubectl: Kubectl, namespace: str, kubeconfig: Path
) -> None:
    # Setup
    from kubernetes import config  # type: ignore[import-untyped]

    name = "table-job"
    assert _apply(kubectl, namespace, _named(VALID_DP_JOB, name)).returncode == 0
    status = {
        "phase": "COMPLETE",
        "generator": "aim",  # the operator writes what ran (auto and profiles resolved)
        "stage": "export",
        "progress": 1.0,
        "rowsGenerated": 1000,
        "fidelityScore": 0.91,
        "privacyRisk": 0.03,
        "epsilonSpent": 1.0,
    }
    kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    client = config.new_client_from_config(config_file=str(kubeconfig))

    # Run
    # Raw response: the Table is not a type the generated client knows how to decode.
    response = client.call_api(
        f"/apis/tabular.aumos.io/v1alpha1/namespaces/{namespace}/synthesisjobs/{name}",
        "GET",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        _return_http_data_only=True,
        _preload_content=False,
    )
    table = json.loads(response.data)
    client.close()

    # Assert
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"]]
    assert columns[:8] == [
        "Name",
        "Phase",
        "Generator",
        "Rows",
        "Fidelity",
        "Privacy-Risk",
        "Epsilon",
        "Age",
    ]
    cells = dict(zip(columns, table["rows"][0]["cells"], strict=True))
    assert (cells["Name"], cells["Phase"], cells["Generator"]) == (name, "COMPLETE", "aim")
    assert (cells["Rows"], cells["Fidelity"], cells["Privacy-Risk"], cells["Epsilon"]) == (
        1000,
        0.91,
        0.03,
        1,
    )
    assert (cells["Stage"], cells["Progress"]) == ("export", 1)


def test_kopf_progress_and_conditions_survive_pruning(kubectl: Kubectl, namespace: str) -> None:
    # Setup
    name = "kopf-status"
    assert _apply(kubectl, namespace, _named(VALID_JOB, name)).returncode == 0
    status = {
        "kopf": {
            "progress": {"handlers/create": {"started": "2026-01-01T00:00:00Z", "retries": 1}}
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Training",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
            {
                "type": "Reconciling",
                "status": "True",
                "reason": "Training",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
        "observedGeneration": 1,
    }

    # Run
    kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    stored = json.loads(kubectl("get", "sj", name, "-n", namespace, "-o", "json").stdout)["status"]
    duplicate = kubectl(
        "patch",
        "sj",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps(
            [{"op": "add", "path": "/status/conditions/-", "value": status["conditions"][0]}]
        ),
        check=False,
    )

    # Assert
    assert stored["kopf"] == status["kopf"]
    assert [c["type"] for c in stored["conditions"]] == ["Ready", "Reconciling"]
    assert duplicate.returncode != 0 and "Duplicate value" in duplicate.stderr


def test_chart_applies_with_server_dry_run(kubectl: Kubectl, api: None) -> None:
    # Setup: namespaces enforcing the "restricted" Pod Security Standard
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    release = _namespace(kubectl, "aumos-system", restricted)
    tenants = [_namespace(kubectl, "tenant", restricted) for _ in range(2)]
    try:
        rendered = helm_template(
            [FULL_VALUES],
            namespace=release,
            crds=False,
            sets=(
                f"runner.serviceAccount.namespaces={{{','.join(tenants)}}}",
                f"operator.watchNamespaces={{{','.join(tenants)}}}",
            ),
        )
        docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] not in NO_SCHEMA_KINDS]

        # Run
        proc = kubectl(
            "apply",
            "--dry-run=server",
            "-f",
            "-",
            stdin="\n---\n".join(yaml.safe_dump(d) for d in docs),
            check=False,
        )

        # Assert
        assert proc.returncode == 0, proc.stderr
        assert "would violate PodSecurity" not in proc.stderr, proc.stderr
        assert proc.stdout.count("(server dry run)") == len(docs)
    finally:
        for ns in (release, *tenants):
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
